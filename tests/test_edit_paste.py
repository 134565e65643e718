"""Paste-back's known answer: a real photo in a larger canvas, found and aligned with real dlib, edited by a
copy generator (output = input crop) and pasted back, must come back as the input: same size, every pixel
outside the mask bit-identical, and inside the mask equal within resampling error."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from fexdata.ingest.recipe import CropRecipe
from fextrain.edit.context import EditContext
from fextrain.edit.faces import make_finder, still_faces
from fextrain.edit.model import BatchModel
from fextrain.edit.paste import face_mask, match_colour, paste, sharpness_ratio
from fextrain.edit.source import SourceAffects

AFFECTS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


class CopyEditor:
    """A generator that returns its input: the known answer for the inverse transform and the blend."""
    affects, size, device, has_discriminator = AFFECTS, 256, "cpu", False

    def edit(self, x, source_vec, target_vec):
        return x

    def classify(self, x):
        return None


def astronaut_canvas(border: int = 80) -> np.ndarray:
    photo = skimage.data.astronaut()  # 512 x 512, public domain
    h, w = photo.shape[:2]
    canvas = np.zeros((h + 2 * border, w + 3 * border, 3), np.uint8)
    canvas[..., 1] = 120
    canvas[border:border + h, 2 * border:2 * border + w] = photo
    return canvas


def pasted(frame: np.ndarray, size: int, recipe: CropRecipe, shift: float = 0.0, keep_detail: bool = False,
           brighten: int = 0):
    finder = make_finder(recipe)
    faces = still_faces(frame, finder, recipe, size)
    assert len(faces) == 1
    face = faces[0]
    ctx = EditContext(Path("."), recipe, finder, BatchModel(CopyEditor()), None, AFFECTS, size)  # type: ignore[arg-type]
    generated = ctx.model.edit(face.image[None], np.zeros((1, 7), np.float32), np.zeros((1, 7), np.float32))[0]
    generated = np.clip(generated.astype(np.int16) + brighten, 0, 255).astype(np.uint8)
    out = frame.copy()
    m = face.transform.copy()
    m[0, 2] += shift
    mask = face_mask(face.landmarks, size)
    (y0, x0), alpha = paste(out, generated, m, mask, face.image if keep_detail else None)
    full = np.zeros(frame.shape[:2], np.float32)
    full[y0:y0 + alpha.shape[0], x0:x0 + alpha.shape[1]] = alpha
    return out, full, face


@pytest.mark.parametrize("align", ["ffhq", "bbox"])
def test_copy_generator_gives_back_the_input(align):
    frame = astronaut_canvas()
    recipe = CropRecipe(align=align, sizes=(256,), crop_size=256)
    out, mask, face = pasted(frame, 256, recipe)
    assert out.shape == frame.shape and out.dtype == np.uint8
    outside = mask == 0
    assert outside.mean() > 0.8                     # the face is a small part of the canvas
    assert np.array_equal(out[outside], frame[outside])  # bit-identical outside the mask
    inside = mask > 0
    assert inside.sum() > 5000                      # and the mask covers a real face
    err = np.abs(out.astype(np.int16) - frame.astype(np.int16))[inside]
    assert err.mean() < 2.0 and np.percentile(err, 99) < 16, (err.mean(), np.percentile(err, 99))
    # The mask sits on the face: its centre of mass is inside the detector box.
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = face.box
    assert x0 < np.average(xs, weights=mask[ys, xs]) < x1 and y0 < np.average(ys, weights=mask[ys, xs]) < y1


def test_a_wrong_inverse_transform_is_caught():
    # The same check fails when the transform is off by a few crop pixels: the known answer has teeth.
    frame = astronaut_canvas()
    out, mask, _ = pasted(frame, 256, CropRecipe(sizes=(256,), crop_size=256), shift=4.0)
    err = np.abs(out.astype(np.int16) - frame.astype(np.int16))[mask > 0.5]
    assert err.mean() > 4.0


def test_model_sized_crop_of_a_larger_ingest_crop_pastes_back():
    # The usual case: ingest made 256 px crops, the model works at 64 px; the transform composes both.
    frame = astronaut_canvas()
    out, mask, _ = pasted(frame, 64, CropRecipe(sizes=(128, 256), crop_size=128))
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    blurred = cv2.GaussianBlur(frame, (0, 0), 3.0)  # a 64 px face holds less detail: compare coarse content
    err = np.abs(cv2.GaussianBlur(out, (0, 0), 3.0).astype(np.int16) - blurred.astype(np.int16))[mask > 0.5]
    assert err.mean() < 4.0


def test_keep_detail_adds_only_the_generators_change():
    frame = astronaut_canvas()
    recipe = CropRecipe(sizes=(128,), crop_size=128)
    out, mask, _ = pasted(frame, 64, recipe, keep_detail=True)
    assert np.array_equal(out, frame)                    # a copy generator changes nothing at all
    out, mask, _ = pasted(frame, 64, recipe, keep_detail=True, brighten=20)
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    core = mask > 0.99
    diff = out.astype(np.int16)[core] - frame.astype(np.int16)[core]
    assert 17 <= diff.mean() <= 21                      # the change arrives (less where the input was near white)
    # ... and the input's fine detail stays: the Laplacian energy of the face is unchanged, unlike a plain paste.
    plain, _, _ = pasted(frame, 64, recipe, brighten=20)
    lap = lambda img: cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F)[core].var()  # noqa: E731
    assert lap(out) > 0.8 * lap(frame) > 2 * lap(plain)


def test_sharpness_of_the_face_box_at_full_resolution():
    """A copy that changes nothing scores 1.0 exactly; pasting a blurred face lowers the ratio, and so, less, does
    the resampling of a plain paste (a 64 px model's face carries less detail than a 256 px one's)."""
    frame = astronaut_canvas()
    recipe = CropRecipe(sizes=(256,), crop_size=256)
    unchanged, _, face = pasted(frame, 64, CropRecipe(sizes=(128,), crop_size=128), keep_detail=True)
    assert np.array_equal(unchanged, frame) and sharpness_ratio(frame, unchanged, face.box) == 1.0
    copy_256, _, face = pasted(frame, 256, recipe)
    copy_64, _, _ = pasted(frame, 64, CropRecipe(sizes=(128,), crop_size=128))
    blurred = frame.copy()
    paste(blurred, cv2.GaussianBlur(face.image, (0, 0), 3.0), face.transform, face_mask(face.landmarks, 256))
    ratios = [sharpness_ratio(frame, out, face.box) for out in (copy_256, copy_64, blurred)]
    assert 1.0 > ratios[0] > ratios[1] > ratios[2] > 0, ratios
    assert ratios[2] < 0.5 * ratios[0]
    # The box is clipped to the frame; a box with no room for a 3 x 3 Laplacian is not measured.
    h, w = frame.shape[:2]
    assert sharpness_ratio(frame, blurred, (-50, -50, w + 50, h + 50)) == sharpness_ratio(frame, blurred, (0, 0, w, h))
    assert np.isnan(sharpness_ratio(frame, blurred, (10, 10, 12, 40)))


def test_mask_is_feathered_and_zero_at_the_crop_edge():
    lm = _square_face_landmarks(64)
    mask = face_mask(lm, 64)
    assert mask.max() == pytest.approx(1.0, abs=1e-3)
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 50          # a soft edge, not a hard cut-out
    whole = face_mask(np.full((68, 2), np.nan), 64)             # a fallback face: the crop square, feathered
    assert whole[32, 32] == pytest.approx(1.0, abs=1e-3) and whole[0, 0] == 0


def test_colour_match_moves_the_mean_colour_only_under_the_mask():
    rng = np.random.default_rng(0)
    src = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    gen = np.clip(src.astype(np.int16) + [30, -20, 10], 0, 255).astype(np.uint8)
    mask = face_mask(_square_face_landmarks(64), 64)
    fixed = match_colour(gen, src, mask)
    w = mask > 0.5
    before = np.abs(gen[w].mean(0) - src[w].mean(0)).max()
    after = np.abs(fixed[w].mean(0) - src[w].mean(0)).max()
    assert before > 9 and after < 3


def _square_face_landmarks(size: int) -> np.ndarray:
    """68 points placed like an aligned face in a `size` crop (jaw, brows, eyes, nose, mouth)."""
    s = size / 64.0
    jaw = [(14 + 36 * t, 30 + 22 * np.sin(np.pi * t)) for t in np.linspace(0, 1, 17)]
    brows = [(16 + 3 * i, 24) for i in range(5)] + [(36 + 3 * i, 24) for i in range(5)]
    nose = [(32, 28 + 2 * i) for i in range(4)] + [(28 + 2 * i, 37) for i in range(5)]
    eyes = [(20 + 2 * i, 29) for i in range(6)] + [(38 + 2 * i, 29) for i in range(6)]
    mouth = [(24 + i * 16 / 11, 44) for i in range(12)] + [(26 + i * 12 / 7, 45) for i in range(8)]
    return np.array(jaw + brows + nose + eyes + mouth, np.float32) * s


def test_sources_given_are_one_hot_and_confidence_nan():
    src = SourceAffects("joy", AFFECTS, BatchModel(CopyEditor()))
    got = src.decide(np.zeros((2, 8, 8, 3), np.uint8))
    assert got.names == ["joy", "joy"] and got.by == "given" and np.isnan(got.confidence).all()
    assert got.vectors.tolist() == [[0, 0, 0, 1, 0, 0, 0]] * 2
