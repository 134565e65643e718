"""End-to-end `fex edit` throughput on a clip and on photos, as a ratio to `fex ingest` on the same inputs.

Inputs (generated, `fexdata.sample`): a 512x512, 30 fps H.264 clip with an AAC sine audio track, the face
moving and its expression ramping (10 s by default), and 24 photos (a sample face in a 704x512 frame).
Models: the demo's FExGAN-Meta architecture (narrow widths) at 64 and 128 px, and the reference widths at
128 px, each a run of one training step on the ingest of the clip and photos (speed does not depend on the weights;
the run carries their crop recipe, so edit frames faces exactly as ingest did).

    ingest   `fexdata.ingest.ingest` (as `fex ingest` runs it) with one worker and with all cores: decode,
             detect/track, smoothed FFHQ alignment, 128 px PNG crops, Parquet records.
    edit     `fextrain.edit.edit` (as `fex edit` runs it), one target: decode, detect/track, smoothed
             alignment, the model's crop, one generator pass per face (batch 16), feathered paste-back into
             the full frame, H.264 encode at the source rate, audio copied, Parquet rows.
    model    the generator pass alone on the same number of faces (batch 16), to split edit's cost.

Every figure is a wall-clock rate plus CPU time per frame (this process and its children: ffmpeg, workers),
which depends less on what else the machine runs. Run it alone:

    flock /tmp/fex-bench.lock .venv/bin/python benchmarks/edit.py [--seconds 10] [--photos 24]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fexdata.images import write_png  # noqa: E402
from fexdata.ingest import IngestOptions, Source, ingest  # noqa: E402
from fexdata.ingest.video import ffmpeg_exe  # noqa: E402
from fexdata.manifest.build import BuildOptions, build_manifest  # noqa: E402
from fexdata.sample import sample_face, write_clip  # noqa: E402
from fextrain.config import TrainConfig  # noqa: E402
from fextrain.edit import EditOptions, edit  # noqa: E402
from fextrain.models import load_editor  # noqa: E402
from fextrain.train import train  # noqa: E402

DEMO_ARCH = {"base_width": 32, "max_width": 128, "bottleneck": 64, "latent_dim": 64, "d_widths": [32, 64, 128]}


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, cpu_seconds() - c0


def make_clip(path: Path, seconds: float, fps: int = 30, size: int = 512) -> Path:
    n = int(seconds * fps)
    frames = (sample_face(3, "surprise", size, intensity=0.2 + 0.8 * min(1.0, i / (0.6 * n)), seed=i + 1,
                          time=2.5 * i / fps) for i in range(n))
    silent = write_clip(path.with_name("silent.mp4"), frames, fps)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-t", f"{seconds}",
                    "-i", "sine=frequency=440:sample_rate=44100", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-shortest", str(path)], check=True)
    silent.unlink()
    return path


def make_photos(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        canvas = np.full((512, 704, 3), (190, 200, 210), np.uint8)
        x = int(rng.integers(0, 704 - 448))
        canvas[32:480, x:x + 448] = sample_face(i % 6, ("joy", "anger", "neutral", "fear")[i % 4], 448, seed=i + 1)
        write_png(folder / f"p{i:03d}.png", canvas)
    return folder


def make_run(work: Path, manifest: Path, size: int, arch: dict, name: str) -> Path:
    run = work / name
    cfg = TrainConfig(manifest=str(manifest), out=str(run), size=size, steps=1, batch=4, device="cpu", log_every=1,
                      ckpt_every=100, sample_every=0, num_samples=2, arch=dict(arch),
                      cache_dir=str(work / "cache"))
    train(cfg, progress=False, log=lambda _: None)
    return run


def model_pass(run: Path, faces: int, batch: int = 16) -> tuple[float, float]:
    editor = load_editor(run)
    x = torch.rand(batch, 3, editor.size, editor.size) * 2 - 1
    vec = torch.zeros(batch, len(editor.affects))
    vec[:, 3] = 1

    def go():
        with torch.inference_mode():
            for _ in range(0, faces, batch):
                editor.edit(x, vec, vec)
    _, wall, cpu = timed(go)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--photos", type=int, default=24)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    work = Path(tempfile.mkdtemp(prefix="fex-bench-edit-"))
    quiet = dict(progress=False, log=lambda _: None)
    try:
        clip = make_clip(work / "studio" / "cleo" / "surprise.mp4", args.seconds)
        photos = make_photos(work / "photos" / "cleo" / "joy", args.photos)
        frames = int(args.seconds * 30)
        print(f"inputs: {frames}-frame 512x512 30 fps clip with audio; {args.photos} photos 704x512; "
              f"{cores} cores, load average {os.getloadavg()[0]:.1f} before the runs (other work shares them)")
        opts = IngestOptions(sizes=(128,))
        results = {}
        for label, workers in (("ingest clip, 1 worker", 1), (f"ingest clip, {cores} workers", cores)):
            shutil.rmtree(work / "ing", ignore_errors=True)
            _, wall, cpu = timed(lambda: ingest([Source((work / "studio").resolve(), str(work / "studio"), "studio")], work / "ing",
                                                opts, workers=workers, **quiet))
            results[label] = (frames / wall, 1000 * cpu / frames)
        for label, workers in (("ingest photos, 1 worker", 1),):
            _, wall, cpu = timed(lambda: ingest([Source((work / "photos").resolve(), str(work / "photos"), "folder")],
                                                work / "ing-photos", opts, workers=workers, **quiet))
            results[label] = (args.photos / wall, 1000 * cpu / args.photos)
        manifest = work / "manifest.parquet"
        # two affects to train on
        build_manifest([work / "ing", work / "ing-photos"], manifest, BuildOptions(split="none"))
        for size, arch, tag in ((64, DEMO_ARCH, "demo arch 64 px"), (128, DEMO_ARCH, "demo arch 128 px"),
                                (128, {}, "reference arch 128 px")):
            run = make_run(work, manifest, size, arch, f"run-{size}-{len(arch)}")
            for what, inputs, n in (("clip", [clip], frames), ("photos", [photos], args.photos)):
                out = work / f"edit-{tag}-{what}".replace(" ", "_")
                _, wall, cpu = timed(lambda: edit(run, inputs, out, EditOptions(to=("joy",), source="neutral"),
                                                  **quiet))
                results[f"edit {what}, {tag}"] = (n / wall, 1000 * cpu / n)
            wall, cpu = model_pass(run, frames)
            results[f"model pass alone, {tag}"] = (frames / wall, 1000 * cpu / frames)
        width = max(map(len, results))
        for label, (rate, ms) in results.items():
            unit = "photos/s" if "photos" in label else "frames/s"
            print(f"{label:<{width}}  {rate:7.1f} {unit:<8}  {ms:7.1f} CPU ms each")
        base_clip = results["ingest clip, 1 worker"][0]
        base_photo = results["ingest photos, 1 worker"][0]
        for tag in ("demo arch 64 px", "demo arch 128 px", "reference arch 128 px"):
            print(f"ratio edit/ingest (1 worker), {tag}: clip {results[f'edit clip, {tag}'][0] / base_clip:.2f}, "
                  f"photos {results[f'edit photos, {tag}'][0] / base_photo:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
