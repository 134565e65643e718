"""`fex edit` on onnxruntime (a `fex export` file) against the torch backend: frames/s on the same clip, in one run.

Inputs and runs as benchmarks/edit.py makes them: a 512x512, 30 fps H.264 clip with audio (4 s by default)
and 8 photos (a second affect), ingested with one worker; FExGAN-Meta runs of one training step on it (speed does not depend on the weights)
with the demo's narrow widths at 64 and 128 px and the reference widths at 128 px.

    export   `fex export` of the run: tracing, ONNX translation, the check against torch (seconds, file size)
    edit     `fextrain.edit.edit` (as `fex edit` runs it), one target, --from neutral: decode, detect/track,
             alignment, one generator pass per face (batch 16), paste-back, H.264 encode; once with the run
             (torch) and once with its .onnx file (onnxruntime), each twice in turns, the faster kept
    model    the generator pass alone on as many faces as the clip has frames (batch 16), per backend, in
             turns, the fastest of 3 kept

Both backends get the same thread count (--threads, default 1: the machine's other work then matters least).
It prints frames/s, CPU ms per frame, the onnx/torch ratio and the largest pixel difference between the two
backends' output frames. Run it alone:

    flock /tmp/fex-bench.lock .venv/bin/python benchmarks/export.py [--seconds 4] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edit import DEMO_ARCH, make_clip, make_photos, make_run, timed  # noqa: E402  (benchmarks/edit.py)
from fexdata.ingest import IngestOptions, Source, ingest  # noqa: E402
from fexdata.ingest.video import iter_frames  # noqa: E402
from fexdata.manifest.build import BuildOptions, build_manifest  # noqa: E402
from fextrain.edit import EditOptions, edit  # noqa: E402
from fextrain.edit.model import BatchModel, load_model  # noqa: E402
from fextrain.export import export_onnx  # noqa: E402


def model_passes(models: dict[str, Path], faces: int, batch: int = 16, turns: int = 3) -> dict[str, tuple[float, float]]:
    """{backend: (wall, CPU) seconds} of the generator alone on `faces` uint8 crops, through the edit pipeline's
    BatchModel; the backends take turns, and each keeps its fastest of `turns` (other work on the machine
    only slows a turn down)."""
    runners = {b: BatchModel(load_model(m, "cpu"), batch) for b, m in models.items()}
    size, k = next(iter(runners.values())).editor.size, len(next(iter(runners.values())).editor.affects)
    crops = np.random.default_rng(0).integers(0, 256, (faces, size, size, 3), dtype=np.uint8)
    vec = np.zeros((faces, k), np.float32)
    vec[:, 3] = 1
    best: dict[str, tuple[float, float]] = {}
    for runner in runners.values():
        runner.edit(crops[:batch], vec[:batch], vec[:batch])   # warm-up (onnxruntime plans its first run)
    for _ in range(turns):
        for backend, runner in runners.items():
            _, wall, cpu = timed(lambda: runner.edit(crops, vec, vec))
            if backend not in best or wall < best[backend][0]:
                best[backend] = (wall, cpu)
    return best


def frames_of(video: Path) -> np.ndarray:
    return np.stack([f.image for f in iter_frames(video)]).astype(np.int16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="fex-bench-export-"))
    quiet = dict(progress=False, log=lambda _: None)
    try:
        clip = make_clip(work / "studio" / "cleo" / "surprise.mp4", args.seconds)
        frames = int(args.seconds * 30)
        photos = make_photos(work / "photos" / "cleo" / "joy", 8)   # a second affect to train on
        ingest([Source((work / "studio").resolve(), str(work / "studio"), "studio")], work / "ing",
               IngestOptions(sizes=(128,)), workers=1, **quiet)
        ingest([Source(photos.parents[1].resolve(), str(photos.parents[1]), "folder")], work / "ing-photos",
               IngestOptions(sizes=(128,)), workers=1, **quiet)
        manifest = work / "manifest.parquet"
        build_manifest([work / "ing", work / "ing-photos"], manifest, BuildOptions(split="none"))
        print(f"inputs: {frames}-frame 512x512 30 fps clip with audio; {args.threads} thread(s) per backend; "
              f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f} before the runs")
        rows = []
        for size, arch, tag in ((64, DEMO_ARCH, "demo arch 64 px"), (128, DEMO_ARCH, "demo arch 128 px"),
                                (128, {}, "reference arch 128 px")):
            run = make_run(work, manifest, size, arch, f"run-{size}-{len(arch)}")
            summary, wall, _ = timed(lambda: export_onnx(run, run / "generator.onnx", log=lambda _: None))
            print(f"{tag}: exported in {wall:.1f} s, {summary['bytes'] / 1e6:.1f} MB, max abs diff to torch "
                  f"{summary['max_abs_diff']:.1g}")
            rates: dict[str, tuple[float, float]] = {}
            for turn in range(2):
                for backend, model in (("torch", run), ("onnx", run / "generator.onnx")):
                    out = work / f"edit-{size}-{len(arch)}-{backend}"
                    shutil.rmtree(out, ignore_errors=True)
                    _, wall, cpu = timed(lambda: edit(model, [clip], out, EditOptions(to=("joy",), source="neutral",
                                                                                      device="cpu"), **quiet))
                    if backend not in rates or frames / wall > rates[backend][0]:
                        rates[backend] = (frames / wall, 1000 * cpu / frames)
            diff = np.abs(frames_of(work / f"edit-{size}-{len(arch)}-torch" / "surprise" / "joy.mp4")
                          - frames_of(work / f"edit-{size}-{len(arch)}-onnx" / "surprise" / "joy.mp4")).max()
            passes = model_passes({"torch": run, "onnx": run / "generator.onnx"}, frames)
            for backend in ("torch", "onnx"):
                rows.append((f"edit clip, {tag}, {backend}", *rates[backend]))
            for backend, (wall, cpu) in passes.items():
                rows.append((f"model pass alone, {tag}, {backend}", frames / wall, 1000 * cpu / frames))
            print(f"{tag}: onnx/torch frames/s: edit {rates['onnx'][0] / rates['torch'][0]:.2f}, model pass "
                  f"{passes['torch'][0] / passes['onnx'][0]:.2f}; largest output difference {diff} levels")
        width = max(len(r[0]) for r in rows)
        for label, rate, ms in rows:
            print(f"{label:<{width}}  {rate:7.1f} frames/s  {ms:7.1f} CPU ms each")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
