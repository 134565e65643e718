"""warp-refine's known answers: the warp moves pixels where the flow says, a gray face stays gray, the landmark
term is zero exactly when the flow carries the target's landmarks onto the source's, landmarks follow the
augmentation, and `fex edit` warps the full-resolution face (sharp) instead of pasting an upsampled crop."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from _edit_fixtures import build_run, canvas_photo, clip_with_audio, fex_edit
from fexdata.images import read_rgb
from fextrain.augment import AugmentConfig, augment_pairs, move_points, random_affines
from fextrain.edit.paste import paste, paste_warp
from fextrain.models import build_model, one_hot
from fextrain.models.warp_refine import landmark_terms, luminance, refine, warp

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _model(size: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("warp-refine", size=size, num_affects=7, widths=[4, 8, 8, 16], d_widths=[8, 16, 32]).eval()


def _texture(n: int = 2, size: int = 64, gray: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1 if gray else 3, size // 4, size // 4, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    return x.expand(-1, 3, -1, -1).contiguous() if gray else x


def test_an_untrained_generator_is_the_identity_warp_with_almost_no_residual():
    x = _texture()
    with torch.no_grad():
        flow, log_ratio, mask, _ = _model().generator(x, one_hot(torch.tensor([4, 4]), 7), one_hot(torch.tensor([3, 0]), 7))
    assert flow.abs().max() == 0 and log_ratio.abs().max() == 0  # no prior: nothing relit
    assert float(mask.max()) < 0.1
    assert torch.allclose(warp(x, flow), x, atol=1e-5)  # the identity grid samples pixel centres exactly


def test_a_constant_flow_moves_the_image_by_that_many_pixels():
    x, size = _texture(1), 64
    flow = torch.zeros(1, 2, size, size)
    flow[:, 0] = 3 * 2 / size  # 3 pixels to the right: output p takes the source at p + 3
    moved = warp(x, flow)
    assert torch.allclose(moved[..., :, :-3], x[..., :, 3:], atol=1e-5)


def test_a_gray_face_comes_back_gray_and_a_colour_face_keeps_its_chroma():
    model = _model(seed=3)
    with torch.no_grad():  # random, non-trivial flow and residual
        model.generator.to_flow.weight.normal_(0, 0.05)
        model.generator.to_refine.bias.fill_(0.0)
        gray, colour = _texture(2, gray=True), _texture(2)
        src, tgt = one_hot(torch.tensor([4, 4]), 7), one_hot(torch.tensor([3, 6]), 7)
        out = model.edit(gray, src, tgt)
        assert (out - gray).abs().max() > 0.01  # it did edit
        assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)
        flow, _, mask, luma = model.generator(colour, src, tgt)
        warped = warp(colour, flow)
        refined = refine(warped, mask, luma)
        # the residual changes the three channels alike: channel differences are the warped source's
        assert torch.allclose(refined[:, 0] - refined[:, 1], warped[:, 0] - warped[:, 1], atol=1e-5)
        assert torch.allclose(luminance(refined), luminance(warped) + mask * (luma - luminance(warped)), atol=1e-5)
        # what fex edit applies at full resolution is the same edit: the warp plus the luminance change
        edit, flow_f, change = model.warp_fields(colour, src, tgt)
        assert torch.allclose(warp(colour, flow_f) + change, refined, atol=1e-5)
        assert torch.equal(edit, model.edit(colour, src, tgt))


def test_the_landmark_term_is_zero_when_the_flow_carries_target_landmarks_onto_the_sources():
    size = 64
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 68, 2, generator=g) * 1.2 - 0.6
    source = target + torch.tensor([0.05, -0.02])
    flow = torch.zeros(2, 2, size, size)
    flow[:, 0], flow[:, 1] = 0.05, -0.02
    assert float(landmark_terms(flow, source, target)[0]) < 1e-4
    assert float(landmark_terms(torch.zeros_like(flow), source, target)[0]) == pytest.approx(
        float(torch.tensor([0.05, -0.02]).norm() * 32), rel=1e-4)
    source[0, 0, 0] = float("nan")  # a face without landmarks is left out, not averaged in
    assert float(landmark_terms(flow, source, target)[0]) < 1e-4


def test_the_motion_shortfall_counts_only_motion_missing_whatever_its_direction():
    size, shift = 64, torch.tensor([0.05, -0.02])
    target = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    source = target + shift
    pixels = float(shift.norm() * 32)

    def shortfall(dx: float, dy: float) -> float:
        flow = torch.zeros(2, 2, size, size)
        flow[:, 0], flow[:, 1] = dx, dy
        return float(landmark_terms(flow, source, target)[1])
    assert shortfall(0.05, -0.02) < 1e-4                           # the person's whole motion
    assert shortfall(0.0, 0.0) == pytest.approx(pixels, rel=1e-4)   # none of it: a copy
    assert shortfall(0.025, -0.01) == pytest.approx(pixels / 2, rel=1e-4)
    assert shortfall(0.10, -0.04) < 1e-4                            # more than the person: no shortfall
    assert shortfall(-0.02, -0.05) < 1e-4                           # as long, another way: the error's job


def test_landmarks_follow_the_augmentation_of_their_image():
    size, n = 64, 6
    cfg = AugmentConfig(jitter=0.12, flip=True)
    points = torch.tensor([[[-0.4, -0.3]], [[0.35, 0.1]], [[0.0, 0.5]], [[-0.2, 0.2]], [[0.3, -0.4]], [[0.1, 0.1]]])
    images = torch.full((n, 3, size, size), -1.0)
    for i, (x, y) in enumerate(points[:, 0].tolist()):  # a bright 2x2 dot centred on each point
        cx, cy = (x + 1) * size / 2 - 0.5, (y + 1) * size / 2 - 0.5
        images[i, :, int(cy):int(cy) + 2, int(cx):int(cx) + 2] = 1.0
        points[i, 0] = torch.tensor([(int(cx) + 1) / size * 2 - 1, (int(cy) + 1) / size * 2 - 1])
    theta = random_affines(n, cfg, "cpu", torch.Generator().manual_seed(5))
    out, _ = augment_pairs(images, None, cfg, theta=theta)
    moved = move_points(points, theta)
    for i in range(n):
        ys, xs = torch.nonzero(out[i, 0] > 0, as_tuple=True)
        w = out[i, 0][ys, xs] + 1
        centre = torch.stack([((xs + 0.5) * w).sum() / w.sum(), ((ys + 0.5) * w).sum() / w.sum()]) / size * 2 - 1
        assert torch.allclose(centre, moved[i, 0], atol=1.0 / size), (i, centre, moved[i, 0])


def _frame_and_fields(flow_px: float, size: int = 64, scale: float = 4.0):
    """A textured 384 px frame, a crop transform frame -> crop at 1/scale, a full mask and constant fields."""
    rng = np.random.default_rng(0)
    frame = cv2.resize(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), (384, 384), interpolation=cv2.INTER_CUBIC)
    m = np.array([[1 / scale, 0, -32 / scale], [0, 1 / scale, -32 / scale]], np.float64)  # crop covers 32..288
    mask = np.zeros((size, size), np.float32)
    mask[8:56, 8:56] = 1.0
    fields = np.zeros((size, size, 3), np.float32)
    fields[..., 0] = flow_px * 2 / size
    return frame, m, mask, fields


def test_paste_warp_with_no_flow_and_no_residual_leaves_the_frame_as_it_was():
    frame, m, mask, fields = _frame_and_fields(0.0)
    out = frame.copy()
    paste_warp(out, fields, m, mask)
    assert np.abs(out.astype(int) - frame.astype(int)).max() <= 1


def test_paste_warp_moves_the_full_resolution_face_and_keeps_its_detail():
    frame, m, mask, fields = _frame_and_fields(2.0)  # 2 crop pixels = 8 frame pixels
    out = frame.copy()
    paste_warp(out, fields, m, mask)
    inside = (slice(80, 240), slice(80, 240))  # mask 1 there: crop 12..52
    shifted = frame[80:240, 88:248]
    assert np.abs(out[inside].astype(int) - shifted.astype(int)).max() <= 1
    # The same edit as a 64 px crop pasted back is much softer than the input; the warp is not.
    crop = cv2.warpAffine(frame, m, (64, 64), flags=cv2.INTER_AREA)
    moved_crop = np.roll(crop, -2, axis=1)
    soft = frame.copy()
    paste(soft, moved_crop, m, mask)

    def detail(img):
        return cv2.Laplacian(cv2.cvtColor(img[inside], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert detail(out) > 0.9 * detail(frame)
    assert detail(soft) < 0.5 * detail(frame)


@pytest.fixture(scope="module")
def warp_run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline", model="warp-refine", steps=6)


def test_fex_edit_warps_the_full_resolution_face_by_default(warp_run: Path, tmp_path: Path):
    photo = tmp_path / "face.png"
    shape = canvas_photo().shape  # grain 2 px across: detail a 64 px crop of this face cannot carry
    grain = cv2.resize(np.random.default_rng(0).normal(0, 12, (shape[0] // 2, shape[1] // 2, 3)), shape[1::-1])
    cv2.imwrite(str(photo), cv2.cvtColor(np.clip(canvas_photo() + grain, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    fex_edit(str(warp_run), str(photo), "--to", "joy", "--out", str(tmp_path / "warp"))
    fex_edit(str(warp_run), str(photo), "--to", "joy", "--paste", "crop", "--out", str(tmp_path / "crop"))
    settings = json.loads((tmp_path / "warp" / "edit.json").read_text())["settings"]
    assert settings["warp"] is True
    assert json.loads((tmp_path / "crop" / "edit.json").read_text())["settings"]["warp"] is False
    warped, cropped = read_rgb(tmp_path / "warp" / "face" / "joy.png"), read_rgb(tmp_path / "crop" / "face" / "joy.png")
    source = read_rgb(photo)
    face = (slice(200, 330), slice(190, 320))  # eyes to mouth of the sample face (canvas_photo: 96..416)

    def detail(img):
        return cv2.Laplacian(cv2.cvtColor(img[face], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert detail(warped) > 0.9 * detail(source)
    assert detail(cropped) < 0.75 * detail(source)  # measured 0.62 (0.96 warped)


def test_a_video_is_warped_at_full_resolution_too(warp_run: Path, tmp_path: Path):
    clip = clip_with_audio(tmp_path / "take.mp4", frames=8)
    fex_edit(str(warp_run), str(clip), "--to", "joy", "--out", str(tmp_path / "out"))
    edits = pd.read_parquet(tmp_path / "out" / "edits.parquet")
    assert len(edits) == 8 and (tmp_path / "out" / edits["output"].iloc[0]).is_file()
    # the face box keeps the input's detail: measured 0.90 (--paste crop: 0.34, a 64 px crop in a 192 px face)
    assert edits["sharpness"].min() > 0.85


def test_paste_warp_is_refused_for_a_model_that_paints(tmp_path_factory, tmp_path: Path):
    run = build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.cvtColor(canvas_photo(), cv2.COLOR_RGB2BGR))
    result = fex_edit(str(run), str(photo), "--to", "joy", "--paste", "warp", "--out", str(tmp_path / "o"), code=2)
    assert "error: --paste warp" in result.output and "hint:" in result.output


def test_the_per_track_average_restarts_at_a_cut_and_after_a_gap():
    from fextrain.edit.video import _Average

    avg = _Average(0.5)
    one, zero = np.ones(2), np.zeros(2)
    assert avg("a", 0, False, zero).tolist() == [0, 0]
    assert avg("a", 1, False, one).tolist() == [0.5, 0.5]
    assert avg("a", 2, False, one).tolist() == [0.75, 0.75]
    assert avg("b", 3, False, one).tolist() == [1, 1]          # another face or target: its own average
    assert avg("a", 3, True, zero).tolist() == [0, 0]          # a cut: no smoothing across it
    assert avg("a", 5, False, one).tolist() == [1, 1]          # frame 4 had no face: a fresh start


def test_a_model_that_jitters_from_frame_to_frame_does_not_flicker_in_the_video(warp_run: Path, tmp_path: Path,
                                                                                 monkeypatch):
    """Alignment noise makes a model's answer to the same face move from frame to frame; pasted back, that is a
    flicker inside the face. Here the model's flow gets a random shift per frame (1.6 px of its 64 px crop): the
    per-track average of the fields must bring the face's warping error well down (measured 13.8 -> 7.7), the
    more so the lower `--steady` weighs the newest frame."""
    from fextrain.edit import model as edit_model
    from fextrain.evaluate.temporal import warping_error
    from fexdata.ingest.video import iter_frames

    clip = clip_with_audio(tmp_path / "take.mp4", frames=16)
    forward = edit_model.BatchModel.edit_with_fields

    def face_error(out: Path, steady: str) -> float:
        rng = np.random.default_rng(0)

        def jittery(self, crops, source, target):
            edited, fields = forward(self, crops, source, target)
            fields[..., :2] += rng.normal(0, 0.05, (len(fields), 1, 1, 2)).astype(np.float32)
            return edited, fields
        monkeypatch.setattr(edit_model.BatchModel, "edit_with_fields", jittery)
        fex_edit(str(warp_run), str(clip), "--to", "joy", "--from", "neutral", "--steady", steady, "--out", str(out))
        edits = pd.read_parquet(out / "edits.parquet").sort_values("frame")
        frames = lambda path: [f.image for f in iter_frames(path)]  # noqa: E731
        return warping_error(frames(clip), frames(out / edits["output"].iloc[0]),
                             region=[tuple(b) for b in edits["box"]])["ratio"]

    raw = face_error(tmp_path / "raw", "1")   # no averaging
    steady = face_error(tmp_path / "steady", "0.5")
    steadier = face_error(tmp_path / "steadier", "0.25")
    assert steadier < steady < 0.8 * raw, (steadier, steady, raw)  # weight 0.5 leaves 0.58 of the jitter
    # the weight decides the pixels: the same folder refuses another one
    result = fex_edit(str(warp_run), str(clip), "--to", "joy", "--from", "neutral", "--steady", "0.3",
                      "--out", str(tmp_path / "steady"), code=2)
    assert "holds edits made with other settings" in result.output, result.output


def test_film_conditioning_starts_as_the_plain_generator_and_keeps_its_weight_names():
    plain = _model()
    torch.manual_seed(0)
    film = build_model("warp-refine", size=64, num_affects=7, widths=[4, 8, 8, 16], d_widths=[8, 16, 32],
                       condition="film").eval()
    keys, film_keys = set(plain.generator.state_dict()), set(film.generator.state_dict())
    assert keys < film_keys and all(".film." in k for k in film_keys - keys)  # saved runs keep loading
    film.generator.load_state_dict(plain.generator.state_dict(), strict=False)
    x, s, t = _texture(), one_hot(torch.tensor([4, 4]), 7), one_hot(torch.tensor([3, 6]), 7)
    with torch.no_grad():
        for a, b in zip(plain.generator(x, s, t), film.generator(x, s, t)):
            assert torch.allclose(a, b, atol=1e-6)  # FiLM starts as the identity


def test_film_and_the_motion_term_train(tmp_path: Path):
    from _train_fixtures import TINY_ARCHS, tiny_config, write_tiny_manifest
    from fextrain.train import train

    cfg = tiny_config(write_tiny_manifest(tmp_path / "data"), tmp_path / "run", "warp-refine", steps=60, batch=8,
                      lr=1e-3, log_every=10, arch={**TINY_ARCHS["warp-refine"], "condition": "film"},
                      loss={"lambda_motion": 1.0})
    train(cfg, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["arch"]["condition"] == "film"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rec = [r["g_l1"] for r in rows if "g_l1" in r]
    assert (rec[-1] + rec[-2]) / 2 < 0.75 * rec[0], rec
    assert all(np.isfinite(r["g_motion"]) for r in rows if "g_motion" in r)
