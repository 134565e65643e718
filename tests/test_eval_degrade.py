"""Known answers of the judge's degradations and of the sharpness and collapse measures."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fexdata.affects import AFFECTS
from fextrain.evaluate.degrade import blur_uint8, degrade, gaussian_blur
from fextrain.evaluate.judge import JudgeSettings, train_judge
from fextrain.evaluate.sections.collapse import mean_pairwise_distance
from fextrain.evaluate.sections.sharpness import equivalent_sigma
from fextrain.pixels import laplacian_variance


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _photo(size: int = 64) -> np.ndarray:
    """A real photo (scikit-image's astronaut, public domain), shrunk to a square of `size`."""
    from skimage.data import astronaut

    return cv2.resize(astronaut()[:400, 100:500], (size, size), interpolation=cv2.INTER_AREA)


def test_gaussian_blur_is_the_gaussian():
    delta = torch.zeros(1, 1, 15, 15)
    delta[0, 0, 7, 7] = 1.0
    out = gaussian_blur(delta, 1.0)[0, 0]
    taps = torch.exp(-0.5 * torch.arange(-3, 4, dtype=torch.float32) ** 2)
    expected = torch.outer(taps, taps) / taps.sum() ** 2
    assert torch.allclose(out[4:11, 4:11], expected, atol=1e-6) and out.sum() == pytest.approx(1.0, abs=1e-5)
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(gaussian_blur(x, 0.0), x)  # sigma 0 leaves images as they are
    # Per-image sigmas: image 1 blurred, image 0 untouched, in one call.
    mixed = gaussian_blur(x[:2], torch.tensor([0.0, 1.5]))
    assert torch.equal(mixed[0], x[0]) and torch.allclose(mixed[1], gaussian_blur(x[1:2], 1.5)[0])
    # The same filter as OpenCV's (reflect-101 border), up to rounding to uint8.
    img = _photo()
    ours = blur_uint8(img[None], 1.0)[0].astype(int)
    theirs = cv2.GaussianBlur(img, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_degrade_is_seeded_in_range_and_touches_most_images():
    x = torch.from_numpy(np.repeat(_photo()[None], 256, 0)).permute(0, 3, 1, 2).float() / 127.5 - 1
    a = degrade(x.clone(), torch.Generator().manual_seed(0))
    b = degrade(x.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    untouched = (a == x).flatten(1).all(1).float().mean().item()
    # Each of five degradations is skipped with probability 0.5, 0.75, 0.75, 0.5 and 0.75: ~10% stay clean.
    assert 0.04 < untouched < 0.2
    # Blur and resampling take detail away: the batch is softer on average, never sharper than the input
    # by more than noise and JPEG add.
    as_uint8 = ((a + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert laplacian_variance(as_uint8).mean() < laplacian_variance(_photo()[None])[0]


def test_laplacian_variance_and_the_blur_curve():
    img = _photo()
    lv = laplacian_variance(np.stack([img, img, np.full_like(img, 90)]))
    assert lv[0] == lv[1] > 0 and lv[2] == 0  # a flat image has no detail at all
    grey = img.astype(np.float64) @ [0.299, 0.587, 0.114]  # BT.601 luma, unrounded
    assert lv[0] == pytest.approx(cv2.Laplacian(grey, cv2.CV_64F)[1:-1, 1:-1].var(), rel=1e-3)
    ratios = [laplacian_variance(blur_uint8(img[None], s))[0] / lv[0] for s in (0.5, 1.0, 2.0)]
    assert 1 > ratios[0] > ratios[1] > ratios[2] > 0
    reference = {0.5: 0.6, 1.0: 0.2, 2.0: 0.05}
    assert equivalent_sigma(1.2, reference) == 0.0
    assert equivalent_sigma(0.6, reference) == pytest.approx(0.5)
    assert equivalent_sigma(0.4, reference) == pytest.approx(0.75)
    assert equivalent_sigma(0.01, reference) is None  # blurrier than the strongest reference


def test_pairwise_distance_known_answers():
    black, white = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)
    assert mean_pairwise_distance(np.stack([black, white])) == pytest.approx(1.0)
    assert mean_pairwise_distance(np.stack([black, white, black])) == pytest.approx(2 / 3)
    assert mean_pairwise_distance(np.stack([white] * 5)) == 0.0
    assert mean_pairwise_distance(black[None]) is None


def test_a_degradation_trained_judge_still_classifies_blurred_faces():
    rng = np.random.default_rng(0)

    def toy(n: int) -> tuple[np.ndarray, np.ndarray]:  # one bright bar per class on a noisy background
        labels = np.repeat(np.arange(len(AFFECTS)), n)
        images = np.clip(rng.normal(110, 40, size=(len(labels), 32, 32, 3)), 0, 255).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 4 * k : 4 * k + 4, 4:-4] = 230
        return images, labels

    (x_train, y_train), (x_test, y_test) = toy(24), toy(10)
    judge = train_judge(x_train, y_train, AFFECTS, JudgeSettings(size=32, width=8, epochs=8, min_steps=0,
                                                                  batch_size=32, lr=5e-3), progress=False)
    for sigma in (0.0, 1.0, 2.0):
        faces = blur_uint8(x_test, sigma) if sigma else x_test
        assert (judge.predict(faces) == y_test).mean() >= 0.9, sigma
