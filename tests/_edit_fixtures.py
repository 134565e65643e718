"""A real tiny pipeline for the `fex edit` tests: sample stills -> `fex ingest` (dlib, FFHQ alignment) ->
`fex build-manifest` -> a few CPU training steps, so the run carries a real crop recipe. Built once per
test session (reused from the session's temp folder by every edit test module)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np

from _train_fixtures import tiny_config

from fexdata.ingest import IngestOptions, ingest, resolve_sources
from fexdata.ingest.video import ffmpeg_exe
from fexdata.manifest.build import BuildOptions, build_manifest
from fexdata.sample import CHARACTERS, sample_face, write_clip, write_image_tree

TRAIN_IDENTITIES = 3
HELD_OUT_IDENTITY = 5      # never trained on: its faces test --from auto


def build_run(root: Path, model: str = "fexgan", steps: int = 4) -> Path:
    """root/run, trained `steps` steps on the ingested sample stills; reused when already there."""
    run = root / f"run-{model}"
    marker = run / "done.json"
    if marker.is_file():
        return run
    manifest = build_data(root)
    from fextrain.train import train

    cfg = tiny_config(manifest, run, steps=steps, model=model, batch=4)
    train(cfg, progress=False, log=lambda msg: None)
    marker.write_text(json.dumps({"steps": steps}))
    return run


def build_data(root: Path) -> Path:
    manifest = root / "data" / "manifest.parquet"
    if manifest.is_file():
        return manifest
    stills = write_image_tree(root / "data" / "stills", identities=TRAIN_IDENTITIES, per_affect=2, size=256)
    ingest(resolve_sources([stills]), root / "data" / "ingest", IngestOptions(sizes=(128,)), workers=1,
           progress=False, log=lambda msg: None)
    build_manifest(root / "data" / "ingest", manifest, BuildOptions(split="none"))
    return manifest


def canvas_photo(identity: int = HELD_OUT_IDENTITY, affect: str = "joy", border: int = 96, size: int = 320) -> np.ndarray:
    """A sample face in a larger, non-square canvas with a textured border (the face is not the frame)."""
    face = sample_face(identity, affect, size=size, seed=3)
    h, w = size + 2 * border, size + 3 * border
    rng = np.random.default_rng(identity)
    canvas = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    canvas[border:border + size, border:border + size] = face
    return canvas


def clip_with_audio(path: Path, frames: int = 24, fps: float = 12.0, identity: int = 1, size: int = 192,
                    faceless: tuple[int, ...] = ()) -> Path:
    """An H.264 clip of a moving sample face with a sine-wave AAC audio track (ffmpeg's lavfi source);
    frames listed in `faceless` show no face."""
    blank = np.full((size, size, 3), 90, np.uint8)
    imgs = [blank if i in faceless else sample_face(identity, "neutral", size, seed=i + 1, time=i / fps)
            for i in range(frames)]
    video = write_clip(path.with_name(path.stem + "-noaudio.mp4"), imgs, fps)
    seconds = frames / fps
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-f", "lavfi", "-t", f"{seconds}",
                    "-i", "sine=frequency=440:sample_rate=44100", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-shortest", str(path)], check=True)
    video.unlink()
    return path


def fex_edit(*args: str, code: int = 0):
    """`fex edit ARGS --quiet --threads 1` in this process; fails the test unless it exits with `code`."""
    from click.testing import CliRunner

    from cli.main import main as fex

    result = CliRunner().invoke(fex, ["edit", *args, "--quiet", "--threads", "1"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


__all__ = ["CHARACTERS", "build_run", "canvas_photo", "clip_with_audio", "fex_edit"]
