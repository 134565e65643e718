"""`fex edit` end to end with real dlib, ffmpeg and a real tiny trained run (its crop recipe carried from a
real `fex ingest` through the manifest): photos, videos with audio, bad inputs, resume, a killed run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from _edit_fixtures import build_run, canvas_photo, clip_with_audio, fex_edit
from _ingest_fixtures import bomb_png, face_clip, no_face_image, truncate

from cli.main import main as fex
from fexdata.images import read_rgb, write_png
from fexdata.ingest import records as R
from fexdata.ingest.video import iter_frames, probe
from fextrain.edit.paste import sharpness_ratio


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")


def crop_quad_mask(shape: tuple[int, int], transform: list[float], size: int) -> np.ndarray:
    """Frame pixels that map inside the model crop (the only place an edit may touch)."""
    m = np.asarray(transform, np.float64).reshape(2, 3)
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[-1, -1], [size + 1, -1], [size + 1, size + 1], [-1, size + 1]], np.float64)
    quad = corners @ inv[:, :2].T + inv[:, 2]
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)
    return mask.astype(bool)


def test_photo_in_a_larger_canvas(run, tmp_path):
    photo = write_png(tmp_path / "in" / "me.png", canvas_photo())
    out = tmp_path / "out"
    result = fex_edit(str(run), str(photo), "--to", "joy", "--to", "0.5*surprise", "--out", str(out), "--crops")
    src = read_rgb(photo)
    edits = pd.read_parquet(out / "edits.parquet")
    assert sorted(edits["target"]) == ["0.5xsurprise", "joy"]
    assert set(edits["output"]) == {"me/joy.png", "me/0.5xsurprise.png"}
    for row in edits.itertuples():
        got = read_rgb(out / row.output)
        assert got.shape == src.shape                      # the full frame, same size
        inside = crop_quad_mask(src.shape[:2], row.transform, 64)
        assert np.array_equal(got[~inside], src[~inside])  # nothing outside the face crop moved
        assert (got[inside] != src[inside]).any()          # and the face was edited
        assert row.source_by == "discriminator" and 0 < row.source_confidence <= 1
        assert row.detector == "hog" and row.face == 0 and pd.isna(row.frame)
        # the full-resolution sharpness of the face box, output over input, is the written PNG's
        assert row.sharpness == sharpness_ratio(src, got, tuple(row.box)) and 0 < row.sharpness < 1
    assert (f"median {edits['sharpness'].median():.2f}, {(edits['sharpness'] < 0.8).mean():.0%} of 2 faces below 0.8"
            in result.output)
    joy = edits[edits["target"] == "joy"].iloc[0]
    assert list(joy["target_vector"]) == [0, 0, 0, 1, 0, 0, 0]
    assert (out / "me" / "grid.png").is_file()
    grid = read_rgb(out / "me" / "grid.png")
    assert grid.shape[0] == 256 + 22 and grid.shape[1] > 3 * 200  # one row: source + 2 targets, around the face
    assert {p.name for p in (out / "me" / "crops").iterdir()} == {"face0_source.png", "face0_joy.png",
                                                                  "face0_0.5xsurprise.png"}
    meta = json.loads((out / "edit.json").read_text())
    assert meta["status"] == "finished" and meta["recipe"]["align"] == "ffhq" and meta["recipe"]["crop_size"] == 128


def test_every_face_of_a_group_photo(run, tmp_path):
    left, right = canvas_photo(1, "joy", border=40, size=256), canvas_photo(2, "anger", border=40, size=224)
    group = np.zeros((max(left.shape[0], right.shape[0]), left.shape[1] + right.shape[1], 3), np.uint8)
    group[:left.shape[0], :left.shape[1]] = left
    group[:right.shape[0], left.shape[1]:] = right
    photo = write_png(tmp_path / "group.png", group)
    out = tmp_path / "out"
    fex_edit(str(run), str(photo), "--to", "surprise", "--out", str(out), "--faces", "all")
    edits = pd.read_parquet(out / "edits.parquet")
    assert edits["face"].tolist() == [0, 1]
    assert edits.iloc[0]["box"][0] < left.shape[1] <= edits.iloc[1]["box"][0]   # the larger face first
    got = read_rgb(out / "group" / "surprise.png")
    faces = [crop_quad_mask(group.shape[:2], row.transform, 64) for row in edits.itertuples()]
    assert all((got[inside] != group[inside]).any() for inside in faces)   # both faces edited
    untouched = ~(faces[0] | faces[1])
    assert np.array_equal(got[untouched], group[untouched])


def test_video_keeps_frames_rate_duration_and_audio(run, tmp_path):
    clip = clip_with_audio(tmp_path / "take.mp4", frames=24, fps=12.0, faceless=(10, 11))
    out = tmp_path / "out"
    result = fex_edit(str(run), str(clip), "--to", "sadness", "--out", str(out), "--from", "neutral")
    src, dst = probe(clip), probe(out / "take" / "sadness.mp4")
    assert dst.audio == "aac" and src.audio == "aac"
    assert (dst.width, dst.height, dst.rate, dst.codec) == (src.width, src.height, src.rate, "h264")
    assert abs(dst.duration - src.duration) < 0.05
    a = [f.image for f in iter_frames(clip)]
    b = [f.image for f in iter_frames(out / "take" / "sadness.mp4")]
    assert len(a) == len(b) == 24
    edits = pd.read_parquet(out / "edits.parquet")
    edited = set(edits["frame"].tolist())
    assert edited == set(range(24)) - {10, 11}             # faces edited where found, and only there
    assert (edits["source_by"] == "given").all() and (edits["source_affect"] == "neutral").all()
    diff = [np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in zip(a, b)]
    assert max(diff[10], diff[11]) < 1.5                    # faceless frames pass through (re-encoded)
    assert min(diff[i] for i in edited) > 2 * max(diff[10], diff[11])
    assert "22 with a face edited, 2 without a face" in result.output
    assert edits["sharpness"].between(0, 1.5).all() and "of 22 faces below 0.8" in result.output
    # A new target later: one more pass for it alone; the grid shows the earlier output too (read back).
    one_tile = read_rgb(out / "take" / "grid.png").shape[1] / 2
    result = fex_edit(str(run), str(clip), "--to", "sadness,joy", "--out", str(out), "--from", "neutral")
    assert "into 1 outputs" in result.output
    assert read_rgb(out / "take" / "grid.png").shape[1] == pytest.approx(3 * one_tile, abs=3)


def test_video_start_end_limits_the_edit(run, tmp_path):
    clip = clip_with_audio(tmp_path / "take.mp4", frames=24, fps=12.0)
    out = tmp_path / "out"
    fex_edit(str(run), str(clip), "--to", "joy", "--out", str(out), "--start", "0.5", "--end", "1.25")
    edits = pd.read_parquet(out / "edits.parquet")
    assert sorted(edits["frame"].tolist()) == list(range(6, 15))  # 0.5 s <= frame/12 < 1.25 s
    assert len(list(iter_frames(out / "take" / "joy.mp4"))) == 24


def test_schedule_changes_the_target_over_time(run, tmp_path):
    clip = clip_with_audio(tmp_path / "take.mp4", frames=24, fps=12.0)
    sheet = tmp_path / "plan.csv"
    sheet.write_text("affect,start,end,intensity\njoy,0,1,1\nanger,1.5,2,0.5\n")
    out = tmp_path / "out"
    fex_edit(str(run), str(clip), "--to", str(sheet), "--out", str(out))
    edits = pd.read_parquet(out / "edits.parquet").sort_values("frame")
    assert (out / "take" / "schedule-plan.mp4").is_file()
    joy = edits[edits["frame"] < 12]
    anger = edits[edits["frame"] >= 18]
    assert joy["frame"].tolist() == list(range(12)) and anger["frame"].tolist() == list(range(18, 24))
    assert all(list(v) == [0, 0, 0, 1, 0, 0, 0] for v in joy["target_vector"])
    assert all(list(v) == [0.5, 0, 0, 0, 0, 0, 0] for v in anger["target_vector"])


def test_bad_inputs_are_rejected_and_good_ones_edited(run, tmp_path):
    inputs = tmp_path / "inputs"
    write_png(inputs / "good.png", canvas_photo(affect="sadness"))
    (inputs / "garbage.png").write_bytes(b"this is not a png at all" * 10)
    (inputs / "bomb.png").write_bytes(bomb_png())
    write_png(inputs / "noface.png", no_face_image(256))
    good_clip = clip_with_audio(inputs / "clips" / "good.mp4", frames=12)
    truncate(face_clip(tmp_path / "whole.mp4", frames=40), inputs / "clips" / "cut.mp4", 0.5)
    out = tmp_path / "out"
    args = (str(run), str(inputs), "--to", "joy", "--out", str(out))
    result = fex_edit(*args, "--strict", code=1)
    assert "--strict: 4 inputs were rejected" in result.output
    rejects = pd.read_parquet(out / "rejects").set_index("source_path")
    assert rejects.loc[str(inputs / "garbage.png"), "category"] == R.BAD_IMAGE
    assert "not an image" in rejects.loc[str(inputs / "garbage.png"), "reason"]
    assert "decompression bomb" in rejects.loc[str(inputs / "bomb.png"), "reason"]
    assert rejects.loc[str(inputs / "noface.png"), "category"] == R.NO_FACE
    assert rejects.loc[str(inputs / "clips" / "cut.mp4"), "category"] in (R.TRUNCATED_VIDEO, R.BAD_VIDEO)
    assert "truncated" in rejects.loc[str(inputs / "clips" / "cut.mp4"), "reason"]
    assert len(rejects) == 4
    edits = pd.read_parquet(out / "edits.parquet")
    assert set(edits["output"]) == {"inputs/good/joy.png", "inputs/clips/good/joy.mp4"}
    assert good_clip.is_file() and not (out / "inputs" / "clips" / "cut").exists()
    assert not list(out.rglob("*.tmp"))
    # Without --strict the same run exits 0, and re-running skips what is done.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("joy.*")}
    result = fex_edit(*args)
    assert "2 inputs already done" in result.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("joy.*")} == before
    assert len(pd.read_parquet(out / "edits.parquet")) == len(edits)


def test_csv_input_list_gives_source_affects(run, tmp_path):
    write_png(tmp_path / "a.png", canvas_photo(affect="joy"))
    write_png(tmp_path / "b.png", canvas_photo(affect="anger"))
    (tmp_path / "list.csv").write_text("path,affect\na.png,happy\nb.png,angry\nmissing.png,joy\nc.png,grumpy\n")
    out = tmp_path / "out"
    fex_edit(str(run), str(tmp_path / "list.csv"), "--to", "neutral", "--out", str(out))
    edits = pd.read_parquet(out / "edits.parquet").set_index("input")
    assert edits.loc["a.png", "source_affect"] == "joy" and edits.loc["b.png", "source_affect"] == "anger"
    assert (edits["source_by"] == "csv").all()
    rejects = pd.read_parquet(out / "rejects").set_index("source_path")
    assert rejects.loc["missing.png", "reason"] == "file does not exist"
    assert "unknown affect label 'grumpy'" in rejects.loc["c.png", "reason"]


def test_intensity_sweep_and_all(run, tmp_path):
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    fex_edit(str(run), str(photo), "--to", "all", "--intensity", "0.5,1", "--out", str(out))
    names = sorted(p.stem for p in (out / "me").glob("*.png") if p.stem != "grid")
    assert len(names) == 14 and "joy@0.5" in names and "surprise@1" in names
    edits = pd.read_parquet(out / "edits.parquet").set_index("target")
    assert list(edits.loc["joy@0.5", "target_vector"]) == [0, 0, 0, 0.5, 0, 0, 0]


def test_unknown_recipe_is_a_clear_error_and_can_be_stated(tmp_path):
    from _train_fixtures import tiny_config, write_tiny_manifest
    from fextrain.train import train

    manifest = write_tiny_manifest(tmp_path / "data")   # crops written by hand: no ingest, no recipe
    run = tmp_path / "run"
    train(tiny_config(manifest, run, steps=1), progress=False, log=lambda msg: None)
    photo = write_png(tmp_path / "me.png", canvas_photo())
    result = CliRunner().invoke(fex, ["edit", str(run), str(photo), "--to", "joy", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "does not say how its training faces were cropped" in result.output and "hint: state how" in result.output
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(tmp_path / "o"), "--align", "ffhq", "--crop-size", "64")
    assert read_rgb(tmp_path / "o" / "me" / "joy.png").shape == read_rgb(photo).shape


def test_other_settings_in_the_same_out_are_refused(run, tmp_path):
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out))
    result = CliRunner().invoke(fex, ["edit", str(run), str(photo), "--to", "joy", "--out", str(out), "--color-match"])
    assert result.exit_code == 2 and "made with other settings" in result.output
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out), "--color-match", "--overwrite")
    assert len(pd.read_parquet(out / "edits.parquet")) == 1


def test_killed_run_leaves_no_half_written_file_and_resumes(run, tmp_path):
    clip = clip_with_audio(tmp_path / "in" / "long.mp4", frames=48, fps=12.0)
    write_png(tmp_path / "in" / "a.png", canvas_photo())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cli.main", "edit", str(run), str(tmp_path / "in"), "--to", "joy,anger",
           "--out", str(out), "--quiet", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "in" / "long").glob(".*video.tmp")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # Whatever was there when it died is whole: PNGs decode, no mp4 without its audio, no part without its output.
    for png in out.rglob("*.png"):
        assert read_rgb(png).size
    assert not list(out.rglob("*.mp4"))
    fex_edit(*cmd[4:8], "--out", str(out))
    assert not list(out.rglob("*.tmp"))
    for name in ("joy", "anger"):
        assert len(list(iter_frames(out / "in" / "long" / f"{name}.mp4"))) == 48
    outputs = set(pd.read_parquet(out / "edits.parquet")["output"])
    assert outputs == {f"in/{i}/{t}" for i, t in (("long", "joy.mp4"), ("long", "anger.mp4"), ("a", "joy.png"),
                                                  ("a", "anger.png"))}
    # Nothing else is left: no temp file, no part of an output that is not there, no duplicate rows.
    left = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {p for p in left if not p.startswith(".parts/")} == outputs | {
        "in/long/grid.png", "in/a/grid.png", "edits.parquet", "edit.json", ".edit.lock"}
    assert len([p for p in left if p.startswith(".parts/")]) == len(outputs)
    assert len(pd.read_parquet(out / "edits.parquet")) == 48 * 2 + 2


def test_the_run_carries_the_manifests_crop_recipe(run):
    """The recipe travels ingest -> manifest -> run config, so the run still knows it if the manifest moves."""
    from fexdata.ingest.recipe import read_recipe

    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] is not None and config["recipe"] == read_recipe(config["manifest"])
    assert config["recipe"]["align"] == "ffhq" and config["recipe"]["crop_size"] == 128
