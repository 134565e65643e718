"""Each evaluation metric on inputs with known answers: judge, scores, Fréchet, dlib identity, D table."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fexdata.affects import AFFECTS
from fextrain.evaluate.sections.discriminator import discriminator_scores
from fextrain.evaluate.frechet import (
    InceptionFeatures,
    InceptionWeightsError,
    frechet_distance,
    frechet_entry,
)
from fextrain.evaluate.judge import JudgeSettings, data_fingerprint, load_judge, load_or_train_judge, train_judge
from fextrain.evaluate.scores import classification_report, confusion_matrix

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def toy_set(n_per_class: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Seven visibly separable classes: a bright bar at a class-specific position on noisy grey."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(AFFECTS)), n_per_class)
    images = rng.integers(60, 120, size=(len(labels), size, size, 3), dtype=np.uint8)
    band = size // len(AFFECTS)
    for i, k in enumerate(labels):
        images[i, k * band : (k + 1) * band, 4:-4] = 230
    return images, labels


FAST_JUDGE = JudgeSettings(size=32, width=8, epochs=6, min_steps=0, batch_size=32, lr=5e-3)


def test_judge_learns_a_separable_toy_set_and_caches(tmp_path):
    x_train, y_train = toy_set(24, seed=0)
    x_test, y_test = toy_set(10, seed=1)
    judge, reused = load_or_train_judge(tmp_path, x_train, y_train, AFFECTS, FAST_JUDGE, progress=False)
    assert not reused
    acc = (judge.predict(x_test) == y_test).mean()
    assert acc >= 0.9, acc
    feats = judge.features(x_test)
    assert feats.shape == (len(x_test), judge.net.feature_dim) and np.isfinite(feats).all()
    # Same data and settings: the cached judge comes back with identical predictions.
    again, reused = load_or_train_judge(tmp_path, x_train, y_train, AFFECTS, FAST_JUDGE, progress=False)
    assert reused
    assert (again.predict(x_test) == judge.predict(x_test)).all()
    # Other labels, one changed pixel, another affect order or other settings: the cache is stale.
    key = lambda x, y, affects=AFFECTS, settings=FAST_JUDGE: data_fingerprint(x, y, affects, settings)  # noqa: E731
    touched = x_train.copy()
    touched[5, 3, 3, 1] ^= 1
    stale = [key(x_train, np.roll(y_train, 1)), key(touched, y_train), key(x_train, y_train, AFFECTS[::-1]),
             key(x_train, y_train, settings=replace(FAST_JUDGE, epochs=7))]
    assert len(set(stale)) == 4 and all(load_judge(tmp_path, fingerprint=f) is None for f in stale)
    assert load_judge(tmp_path, fingerprint=key(x_train, y_train)) is not None
    _, reused = load_or_train_judge(tmp_path, x_train, np.roll(y_train, 1), AFFECTS, FAST_JUDGE, progress=False)
    assert not reused


def test_judge_reads_generator_style_tensors_like_uint8():
    x, y = toy_set(4, seed=2)
    judge = train_judge(x, y, AFFECTS, JudgeSettings(size=32, width=8, epochs=1, min_steps=0), progress=False)
    as_tensor = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.allclose(judge.logits(x), judge.logits(as_tensor), atol=1e-4)


def test_scores_and_confusion():
    truth = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    m = confusion_matrix(pred, truth, 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    rep = classification_report(pred, truth, ("a", "b", "c"))
    assert rep["correct"] == 4 and rep["count"] == 6 and rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["per_affect"]["c"]["accuracy"] == pytest.approx(2 / 3)
    empty = classification_report(np.array([], int), np.array([], int), ("a",))
    assert empty["accuracy"] is None and empty["count"] == 0


def test_frechet_of_a_set_with_itself_is_zero_and_grows_with_mean_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # Shifting every vector by s along one axis adds exactly s^2 (covariance unchanged).
    for s in (0.5, 1.0, 3.0):
        shifted = a.copy()
        shifted[:, 0] += s
        assert frechet_distance(a, shifted) == pytest.approx(s**2, rel=1e-6)
    # Known closed form for isotropic Gaussians: tr(S1 + S2 - 2 sqrt(S1 S2)) = D (s1 - s2)^2 for stds.
    b = rng.normal(size=(20000, 4))
    assert frechet_distance(b, 2 * b) == pytest.approx(4 * 1.0 * (2 - 1) ** 2, rel=0.05)


def test_frechet_handles_fewer_samples_than_dims_and_reports_counts():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 128)), rng.normal(size=(7, 128))
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0
    entry = frechet_entry("judge", a, b, real_split="test")
    assert entry["real_count"] == 5 and entry["generated_count"] == 7 and entry["dims"] == 128
    assert frechet_entry("dlib", a[:1], b, "test")["value"] is None


def test_inception_fid_needs_a_real_torchscript_file(tmp_path):
    with pytest.raises(InceptionWeightsError, match="not found"):
        InceptionFeatures(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(InceptionWeightsError, match="neither a TorchScript module nor a state dict"):
        InceptionFeatures(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InceptionWeightsError, match="not an Inception-v3 state dict"):
        InceptionFeatures(wrong)

    class Pool(torch.nn.Module):  # a stand-in feature extractor saved the way users would save one
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    path = tmp_path / "pool.pt"
    torch.jit.save(torch.jit.script(Pool()), str(path))
    feats = InceptionFeatures(path)(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert feats.shape == (3, 12)


def test_inception_state_dict_loads_into_the_fid_network(tmp_path):
    from fextrain.evaluate.inception import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}  # as saved from DataParallel
    state["fc.weight"] = torch.zeros(1008, 2048)  # classifier weights in the file are ignored
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    feats = InceptionFeatures(path)(images)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    with torch.no_grad():
        direct = net(torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False))
    assert np.allclose(feats, direct.double().numpy(), atol=1e-4)


def test_discriminator_scores_count_real_and_fake_separately():
    s = discriminator_scores(
        real_logits=np.array([2.0, -1.0, 3.0]),
        real_affect_logits=np.eye(3)[[0, 1, 1]],
        real_affects=np.array([0, 1, 2]),
        fake_logits=np.array([-2.0, -0.5]),
        fake_affect_logits=np.eye(3)[[2, 2]],
        fake_targets=np.array([2, 0]),
    )
    assert s["real"]["binary"]["accuracy"] == pytest.approx(2 / 3)
    assert s["real"]["multi"]["accuracy"] == pytest.approx(2 / 3)
    assert s["fake"]["binary"]["accuracy"] == 1.0 and s["fake"]["binary"]["count"] == 2
    assert s["fake"]["multi"]["accuracy"] == 0.5


@pytest.fixture(scope="module")
def describer():
    from fextrain.evaluate.identity import FaceDescriber

    return FaceDescriber()


def test_identity_distance_zero_for_same_image_larger_for_another_person(describer):
    from skimage.data import lfw_subset

    from fexdata.sample import sample_face
    from fextrain.evaluate.identity import SAME_PERSON_THRESHOLD, descriptor_distance

    face = sample_face(0, "neutral", size=128)
    # A real, different person: the first face of scikit-image's bundled LFW subset (25x25 grey).
    other = (np.repeat(lfw_subset()[0][..., None], 3, axis=2) * 255).round().astype(np.uint8)
    blank = np.full_like(face, 127)
    got = describer.describe(np.stack([face, face]))
    assert got.found.all()
    assert descriptor_distance(got.vectors[0], got.vectors[1]) == pytest.approx(0.0, abs=1e-9)
    other_d = describer.describe(other[None])
    assert other_d.found.all()
    assert descriptor_distance(got.vectors[0], other_d.vectors[0]) > SAME_PERSON_THRESHOLD
    # No face in a flat grey image: reported as not found, with a NaN row rather than an exception.
    none = describer.describe(blank[None])
    assert not none.found[0] and np.isnan(none.vectors[0]).all()


def test_identity_report_counts_missing_faces_per_affect():
    from fextrain.evaluate.identity import Descriptors, identity_report

    src = Descriptors(np.zeros((4, 128)), np.array([True, True, True, False]))
    gen_vecs = np.zeros((4, 128))
    gen_vecs[1, 0] = 0.9  # one edit drifts past the 0.6 threshold
    gen_vecs[2] = np.nan
    gen = Descriptors(gen_vecs, np.array([True, True, False, True]))
    rep = identity_report(src, gen, np.array([0, 1, 1, 0]), ("anger", "joy"))
    assert rep["pairs"] == 4 and rep["measured"] == 2
    assert rep["generated_face_not_found"] == 1 and rep["source_face_not_found"] == 1
    assert rep["share_under_threshold"] == 0.5 and rep["under_threshold"] == 1
    assert rep["per_affect"]["joy"]["mean_distance"] == pytest.approx(0.9)
    assert rep["per_affect"]["joy"]["generated_face_not_found"] == 1
    assert rep["per_affect"]["anger"]["source_face_not_found"] == 1
