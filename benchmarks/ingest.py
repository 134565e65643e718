"""End-to-end ingest throughput on a studio clip, against the naive pipeline, in one run.

Input: a generated 512x512, 60 fps MetaHuman-style clip (`fexdata.sample`: a character whose head sways
and whose expression ramps up), 20 s long by default (FExGAN-Meta's studio clips are ~35 s), H.264.
Model loading (~0.7 s) is part of the timed run, so very short clips read lower: on 6 s, 130 frames/s.

    fex      `fexdata.ingest.ingest` as `fex ingest` runs it: ffmpeg decode, dlib HOG detection then
             landmark tracking with region re-detection, FFHQ alignment smoothed over time, 256 px PNG
             crops, Parquet records. Timed from the call to the summary (model loading included).
    naive    the baseline the issue names: every frame decoded (same ffmpeg path) and detected from
             scratch at full resolution with HOG upsample 1, landmarks, FFHQ alignment, 256 px PNG written.

    .venv/bin/python benchmarks/ingest.py [--seconds 20] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from fexdata.ingest.align import crop, ffhq_alignment  # noqa: E402
from fexdata.ingest.faces import DlibLandmarker, Detector  # noqa: E402
from fexdata.ingest import IngestOptions, Source, ingest  # noqa: E402
from fexdata.sample import sample_face, write_clip  # noqa: E402
from fexdata.ingest.video import iter_frames  # noqa: E402


def make_clip(path: Path, seconds: float, fps: int = 60, size: int = 512) -> Path:
    n = int(seconds * fps)
    frames = (sample_face(3, "surprise", size, intensity=0.2 + 0.8 * min(1.0, i / (0.6 * n)), seed=i + 1,
                          time=2.5 * i / fps)  # 2.5x the studio head speed: the face keeps moving
              for i in range(n))
    return write_clip(path, frames, fps)


def naive(clip: Path, out: Path, limit: int | None = None) -> tuple[int, float]:
    started = time.perf_counter()
    detector, landmarker = Detector("hog"), DlibLandmarker()
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for frame in iter_frames(clip):
        if limit is not None and n >= limit:
            break
        found = detector.detect(frame.image, upsample=1)  # full resolution, RGB, from scratch
        n += 1
        if not found:
            continue
        box = max(found, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[0]
        gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        lm = landmarker(frame.image, gray, box)
        (img, _), = crop(frame.image, ffhq_alignment(lm), (256,)).values()
        cv2.imwrite(str(out / f"{frame.index:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return n, time.perf_counter() - started


def fex(root: Path, out: Path, workers: int | None) -> tuple[int, float, dict]:
    started = time.perf_counter()
    summary = ingest([Source(root.resolve(), str(root), "studio")], out, IngestOptions(sizes=(256,)),
                     workers=workers, progress=False, log=lambda _: None)
    return summary["frames"], time.perf_counter() - started, summary


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its finished children (ffmpeg, pool workers):
    unlike wall time, it does not depend on what else the machine is running."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="clip length (60 fps)")
    ap.add_argument("--workers", type=int, default=None, help="fex workers (default: all cores)")
    ap.add_argument("--naive-frames", type=int, default=None, help="time the baseline on the first N frames only")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fex-bench-ingest-"))
    try:
        root = work / "studio"
        t0 = time.perf_counter()
        clip = make_clip(root / "cleo" / "surprise.mp4", args.seconds)
        print(f"input: {clip.name}, 512x512, 60 fps, {args.seconds:g} s "
              f"(generated in {time.perf_counter() - t0:.1f} s); machine: {os.cpu_count()} cores")

        load = os.getloadavg()[0]
        c0 = cpu_seconds()
        n_fex, t_fex, summary = fex(root, work / "out", args.workers)
        c1 = cpu_seconds()
        n_naive, t_naive = naive(clip, work / "naive", args.naive_frames)
        c2 = cpu_seconds()
        fps_fex, fps_naive = n_fex / t_fex, n_naive / t_naive
        tracker = summary.get("run", {}).get("tracker", {})
        print(f"load average before the runs: {load:.1f} (wall-clock rates shrink when other work shares the cores)")
        print(f"naive  (decode + HOG upsample 1 every frame + align + PNG): {n_naive} frames in {t_naive:.2f} s"
              f" = {fps_naive:.1f} frames/s, {1000 * (c2 - c1) / n_naive:.1f} CPU ms/frame")
        print(f"fex    (decode + track/re-detect + smoothed align + PNG + Parquet): {n_fex} frames in {t_fex:.2f} s"
              f" = {fps_fex:.1f} frames/s, {1000 * (c1 - c0) / n_fex:.1f} CPU ms/frame  (tracker: {tracker})")
        print(f"ratio fex / naive: {fps_fex / fps_naive:.1f}x wall-clock, "
              f"{((c2 - c1) / n_naive) / ((c1 - c0) / n_fex):.1f}x CPU time   (target >= 5x and >= 150 frames/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
