"""Ingest throughput against the naive pipelines, in one run, with a per-stage CPU breakdown.

Inputs, all generated from the bundled public-domain face (`fexdata.sample`), nothing downloaded:
* studio: a 512x512, 60 fps MetaHuman-style clip (a character whose head sways and whose expression
  ramps up), 20 s by default (FExGAN-Meta's studio clips are ~35 s), H.264;
* short: several 3 s clips of the same kind (one unit of work each), and one 3 s clip through the
  `fex ingest` command line as a user runs it (imports and model loading included);
* stills: JAFFE-, KDEF- and CK+-like folders (256x256 gray TIFF, 562x762 colour JPEG, 640x490 gray
  PNG, the face filling about the share of the frame it fills in those datasets).

Pipelines:
    fex          `fexdata.ingest.ingest` as `fex ingest` runs it (default workers).
    naive video  every frame decoded (same ffmpeg path) and detected from scratch at full resolution with
                 HOG upsample 1 (on the gray frame, through fex's Detector), landmarks, FFHQ alignment,
                 256 px PNG written by OpenCV: the baseline of the ratios (the same since the first figures).
    naive stock  the same, detecting as a first script would: dlib's stock `get_frontal_face_detector()`
                 (built in the run, 0.5 s) on the RGB frame; timed on the first 300 frames, for reference.
    naive still  each image read, HOG upsample 1 at full resolution, landmarks, FFHQ alignment, PNG.

Rates are CPU time per frame (all threads and child processes: ffmpeg, pool workers) and frames/s of
wall time. Neither is steady on a shared host: here the same code ran 2x slower in one minute than in
the next (other tenants' load, which the guest cannot see, changes the speed of every instruction). So
fex and the naive pipeline run in turn, `--rounds` times: fex on the whole input, then the naive
pipeline on the next part of it; each round's ratio compares runs seconds apart, and the median round
is the figure (the pooled ratio and the rounds' range are printed beside it). The breakdown comes from a
second, instrumented in-process run of the same input (thread CPU time per stage, exclusive of the
stages nested inside; ffmpeg's CPU from its child-process accounting); "other" is the process's CPU
that no stage accounts for (Python glue, the interpreter, allocator, thread hand-offs).

    .venv/bin/python benchmarks/ingest.py [--seconds 20] [--short-clips 6] [--stills 210] [--naive-frames N]
                                          [--rounds 6]
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing.forkserver
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fexdata.images import read_rgb  # noqa: E402
from fexdata.ingest import align as A, faces as F, records as R, run as RUN, video as V, worker as W  # noqa: E402
from fexdata.ingest.align import crop, ffhq_alignment  # noqa: E402
from fexdata.ingest.faces import DlibLandmarker, Detector  # noqa: E402
from fexdata.ingest.plan import IngestOptions, Source  # noqa: E402
from fexdata.ingest.video import iter_frames  # noqa: E402
from fexdata.sample import sample_face, write_clip  # noqa: E402
from fexdata.threads import available_cores  # noqa: E402


# -- inputs ------------------------------------------------------------------------------------------------

def make_clip(path: Path, seconds: float, fps: int = 60, size: int = 512, identity: int = 3) -> Path:
    n = int(seconds * fps)
    frames = (sample_face(identity, "surprise", size, intensity=0.2 + 0.8 * min(1.0, i / (0.6 * n)), seed=i + 1,
                          time=2.5 * i / fps)  # 2.5x the studio head speed: the face keeps moving
              for i in range(n))
    return write_clip(path, frames, fps)


STILL_KINDS = {  # name: (canvas w, h, face image side, gray, extension)
    "jaffe-like": (256, 256, 256, True, ".tiff"),
    "kdef-like": (562, 762, 520, False, ".jpg"),
    "ckplus-like": (640, 490, 470, True, ".png"),
}


def make_stills(root: Path, n: int) -> list[Path]:
    """n stills in a `folder` layout (ROOT/<identity>/<affect>/<name>), the three kinds in turn."""
    affects = ("anger", "joy", "surprise", "sadness", "neutral")
    paths = []
    for i in range(n):
        kind = list(STILL_KINDS)[i % 3]
        w, h, side, gray, ext = STILL_KINDS[kind]
        face = sample_face(i % 10, affects[i % len(affects)], side, intensity=0.8, seed=i + 1, time=0.2 * i)
        canvas = np.full((h, w, 3), 90, np.uint8)
        y, x = (h - side) // 2, (w - side) // 2
        canvas[y:y + side, x:x + side] = face
        img = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY) if gray else cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        path = root / f"p{i % 10}" / affects[i % len(affects)] / f"{kind}_{i:03d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


# -- measuring ---------------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its reaped descendants (ffmpeg, pool workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def children_seconds() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def reap_pool_workers() -> None:
    """Pool workers are children of multiprocessing's fork server, not of this process: stop the fork
    server so that it, and with it the CPU time of the workers it reaped, is accounted to us."""
    stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)  # private; used by CPython's tests
    if stop is not None:
        stop()


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) of fn(), which returns its frame count."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    n = fn()
    reap_pool_workers()
    return n, time.perf_counter() - t0, cpu_seconds() - c0


class StageClock:
    """Thread CPU time per named stage, exclusive of the stages nested inside it."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._local = threading.local()
        self._undo: list[tuple[object, str, object]] = []

    def patch(self, owner: object, attr: str, stage: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:  # a stage this version of the pipeline does not have
            return
        self._undo.append((owner, attr, owner.__dict__[attr] if isinstance(owner, type) else fn))

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            stack = self._local.__dict__.setdefault("stack", [])
            t0 = time.thread_time()
            stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                inner = stack.pop()
                dt = time.thread_time() - t0
                self.cpu[stage] += dt - inner
                self.calls[stage] += 1
                if stack:
                    stack[-1] += dt

        setattr(owner, attr, wrapped)

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def fex_stages(clock: StageClock) -> None:
    clock.patch(RUN, "ingest", "scan, plan, summary")
    clock.patch(W.UnitProcessor, "__init__", "load models")
    clock.patch(W.UnitProcessor, "run", "unit bookkeeping")
    clock.patch(V, "_read_exact", "decode (pipe read)")
    clock.patch(W.UnitProcessor, "_track_one", "track (glue, gray)")
    clock.patch(F.FaceTracker, "update", "track (glue, gray)")
    clock.patch(F.Detector, "detect", "detect (HOG)")
    clock.patch(F, "_resize", "detect (HOG)")
    clock.patch(F.DlibLandmarker, "__call__", "landmarks")
    clock.patch(W, "alignment_for", "align + smooth")
    clock.patch(A.Smoother, "push", "align + smooth")
    clock.patch(A.Smoother, "flush", "align + smooth")
    clock.patch(W, "crop", "warp")
    clock.patch(W, "sharpness", "sharpness")
    clock.patch(W._UnitWriter, "emit", "records (rows)")
    clock.patch(W.UnitProcessor, "_write_png", "PNG write (file)")
    clock.patch(W, "encode_png", "PNG encode")
    clock.patch(R, "write_part", "records (Parquet)")
    clock.patch(W, "read_rgb", "read image")


def naive_stages(clock: StageClock) -> None:
    clock.patch(sys.modules[__name__], "naive_load", "load models")
    clock.patch(V, "_read_exact", "decode (pipe read)")
    clock.patch(sys.modules[__name__], "naive_detect", "detect (HOG)")
    clock.patch(DlibLandmarker, "__call__", "landmarks")
    clock.patch(sys.modules[__name__], "naive_align", "align + smooth")
    clock.patch(sys.modules[__name__], "crop", "warp")
    clock.patch(sys.modules[__name__], "naive_png", "PNG encode + write")
    clock.patch(sys.modules[__name__], "read_rgb", "read image")


def breakdown(run: Callable[[], int], install: Callable[[StageClock], None]) -> tuple[int, dict[str, float]]:
    """ms of CPU per frame for each stage of one instrumented run."""
    clock = StageClock()
    install(clock)
    try:
        c0, k0 = cpu_seconds(), children_seconds()
        n = run()
        c1, k1 = cpu_seconds(), children_seconds()
    finally:
        clock.restore()
    stages = dict(clock.cpu)
    if k1 > k0:
        stages["decode (ffmpeg process)"] = k1 - k0
    stages["other"] = (c1 - c0) - sum(stages.values())
    return n, {k: 1000 * v / max(n, 1) for k, v in stages.items()}


def print_breakdown(title: str, per_frame: dict[str, dict[str, float]]) -> None:
    names = sorted({k for d in per_frame.values() for k in d}, key=lambda k: (k == "other", -max(
        d.get(k, 0.0) for d in per_frame.values())))
    cols = list(per_frame)
    print(f"\n{title} (CPU ms per frame)")
    print(f"  {'stage':26s}" + "".join(f"{c:>12s}" for c in cols))
    for k in names:
        print(f"  {k:26s}" + "".join(f"{per_frame[c].get(k, 0.0):12.2f}" for c in cols))
    print(f"  {'total':26s}" + "".join(f"{sum(per_frame[c].values()):12.2f}" for c in cols))


# -- pipelines -----------------------------------------------------------------------------------------------

def naive_align(landmarks: np.ndarray):
    return ffhq_alignment(landmarks)


def naive_png(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


_NAIVE_MODELS: dict[str, object] = {}


def naive_detect(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes at upsample 1, from scratch. The stock call runs HOG over RGB (each pixel's strongest
    channel gradient: 70 against 58 ms on a 512² frame here, alone)."""
    detector = _NAIVE_MODELS["detector"]
    if isinstance(detector, Detector):
        return [box for box, _ in detector.detect(image, upsample=1)]
    return [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in detector(image, 1)]


def naive_one(image: np.ndarray, dest: Path) -> bool:
    found = naive_detect(image)  # full resolution, from scratch
    if not found:
        return False
    box = max(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    lm = _NAIVE_MODELS["landmarker"](image, gray, box)
    (img, _), = crop(image, naive_align(lm), (256,)).values()
    naive_png(dest, img)
    return True


def naive_load(stock: bool = False) -> None:
    import dlib

    _NAIVE_MODELS.update(detector=dlib.get_frontal_face_detector() if stock else Detector("hog"),
                         landmarker=DlibLandmarker())


def naive_video(clip: Path, out: Path, limit: int | None = None, stock: bool = False, first: int = 0) -> int:
    """The naive pipeline on `limit` frames (all by default) from frame `first` on."""
    naive_load(stock)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    info = V.probe(clip)
    for frame in iter_frames(clip, start=float(first / info.rate) if first else None, info=info):
        if limit is not None and n >= limit:
            break
        naive_one(frame.image, out / f"{frame.index:06d}.png")
        n += 1
    return n


def naive_stills(paths: list[Path], out: Path) -> int:
    naive_load()
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        naive_one(read_rgb(path), out / f"{i:06d}.png")
    return len(paths)


def alternate(rounds: int, fex_once: Callable[[int], int], naive_part: Callable[[int], int],
              unit: str = "frames") -> float:
    """fex on the whole input and the naive pipeline on its k-th part, in turn, `rounds` times.

    This host's speed drifts by 2x within minutes (other tenants), so pipelines timed one after the
    other can be compared in different weather; each round compares runs a few seconds apart, and the
    median round's ratio is the figure. Returns fex's CPU seconds per item, pooled over the rounds.
    """
    totals = {"fex": [0, 0.0, 0.0], "naive": [0, 0.0, 0.0]}   # items, wall, CPU
    ratios = []
    print(f"  {'round':>5s} {'fex CPU ms':>12s} {'naive CPU ms':>14s} {'ratio':>7s}   (per {unit[:-1]})")
    for k in range(rounds):
        runs = {"fex": timed(lambda: fex_once(k)), "naive": timed(lambda: naive_part(k))}
        for name, (n, wall, cpu) in runs.items():
            totals[name] = [t + v for t, v in zip(totals[name], (n, wall, cpu))]
        fex_ms, naive_ms = (1000 * runs[x][2] / runs[x][0] for x in ("fex", "naive"))
        ratios.append(naive_ms / fex_ms)
        print(f"  {k + 1:5d} {fex_ms:12.2f} {naive_ms:14.2f} {ratios[-1]:6.1f}x")
    fps_fex, cpu_fex = row(f"fex ingest, {rounds} runs of the whole input", *totals["fex"], unit=unit)
    fps_naive, cpu_naive = row(f"naive, one part per round ({rounds} parts)", *totals["naive"], unit=unit)
    print(f"  ratio fex / naive in CPU time per {unit[:-1]}: {statistics.median(ratios):.1f}x the median round "
          f"({min(ratios):.1f}-{max(ratios):.1f}x), {cpu_naive / cpu_fex:.1f}x pooled; "
          f"{fps_fex / fps_naive:.1f}x in wall-clock {unit}/s")
    return cpu_fex


def parts(n: int, rounds: int) -> list[tuple[int, int]]:
    """[first, stop) of `rounds` near-equal parts of n items (fewer when n < rounds)."""
    bounds = sorted({round(k * n / rounds) for k in range(rounds + 1)})
    return list(zip(bounds, bounds[1:]))


def fex_run(root: Path, out: Path, layout: str, workers: int | None = None) -> int:
    """`fex ingest` into a new folder (a run into a folder just deleted pays ext4's search past the
    recently freed inodes: up to ~1 ms per crop in a profile)."""
    assert not out.exists(), out
    summary = RUN.ingest([Source(root.resolve(), str(root), layout)], out, IngestOptions(sizes=(256,)),
                     workers=workers, progress=False, log=lambda _: None)
    return summary["frames"]


def fex_cli(root: Path, out: Path) -> int:
    """`fex ingest` as a user runs it: a fresh interpreter, so imports and model loading count."""
    subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(root), "--out", str(out), "-q"], check=True,
                   cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    return R.read_table(out / R.RECORDS_DIR, ["frame"]).num_rows


def row(name: str, n: int, wall: float, cpu: float, unit: str = "frames") -> tuple[float, float]:
    print(f"  {name:58s} {n:6d} {unit} {n / wall:8.1f} {unit}/s {1000 * cpu / n:8.2f} CPU ms/{unit[:-1]}")
    return n / wall, cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="studio clip length (60 fps)")
    ap.add_argument("--naive-frames", type=int, default=None, help="time the naive video baseline on N frames only")
    ap.add_argument("--short-clips", type=int, default=6, help="3 s clips in the short-clip row (0: skip)")
    ap.add_argument("--stills", type=int, default=210, help="stills in the still-image rows (0: skip)")
    ap.add_argument("--workers", type=int, default=None, help="fex workers (default: all cores)")
    ap.add_argument("--rounds", type=int, default=6,
                    help="fex / naive runs in turn per input (the median round's ratio is the figure)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fex-bench-ingest-"))
    try:
        t0 = time.perf_counter()
        clip = make_clip(work / "studio" / "cleo" / "surprise.mp4", args.seconds)
        for i in range(args.short_clips):
            make_clip(work / "short" / f"c{i}" / "surprise.mp4", 3.0, identity=i % 10)
        if args.short_clips:
            make_clip(work / "one" / "cleo" / "joy.mp4", 3.0)
        stills = make_stills(work / "stills", args.stills)
        print(f"inputs generated in {time.perf_counter() - t0:.1f} s; {available_cores()} cores available; "
              f"load average {os.getloadavg()[0]:.1f} (other work shares the cores: compare CPU ms, and ratios)")

        frames = int(args.seconds * 60)
        split = parts(min(args.naive_frames or frames, frames), args.rounds)
        print(f"\nstudio clip: {clip.name}, 512x512, 60 fps, {args.seconds:g} s; fex on the whole clip and the naive "
              f"pipeline (HOG upsample 1 on every frame) on 1/{len(split)} of its frames, in turn "
              "(target >= 20x CPU)")
        cpu_fex = alternate(len(split), lambda k: fex_run(work / "studio", work / f"out{k}", "studio", args.workers),
                            lambda k: naive_video(clip, work / f"naive{k}", split[k][1] - split[k][0],
                                                  first=split[k][0]))
        _, cpu_stock = row("naive stock (dlib's own detector on RGB; first 300 frames)",
                           *timed(lambda: naive_video(clip, work / "naive-stock", 300, stock=True)))
        print(f"  ratio fex / naive stock: {cpu_stock / cpu_fex:.1f}x in CPU time per frame (reference only)")
        per = {"fex": breakdown(lambda: fex_run(work / "studio", work / "out-prof", "studio", 1), fex_stages)[1],
               "naive": breakdown(lambda: naive_video(clip, work / "naive-prof", min(args.naive_frames or 300, 300)),
                                  naive_stages)[1]}
        print_breakdown("studio clip, per stage (instrumented runs; naive on its first 300 frames)", per)

        if args.short_clips:
            print(f"\nshort clips: 3 s each, 512x512, 60 fps")
            row(f"fex ingest, {args.short_clips} clips (one unit each)",
                *timed(lambda: fex_run(work / "short", work / "out-short", "studio", args.workers)))
            row("fex ingest, one clip, in a running program", *timed(lambda: fex_run(work / "one", work / "out-one",
                                                                                    "studio", args.workers)))
            row("`fex ingest` command, one clip (imports + models + work)",
                *timed(lambda: fex_cli(work / "one", work / "out-cli")))

        if args.stills:
            split = parts(len(stills), args.rounds)
            print(f"\nstills: {args.stills} images, JAFFE-, KDEF- and CK+-like in turn; fex on all of them and the "
                  f"naive pipeline (HOG upsample 1, full resolution) on 1/{len(split)} of them, in turn")
            alternate(len(split), lambda k: fex_run(work / "stills", work / f"out-stills{k}", "folder", args.workers),
                      lambda k: naive_stills(stills[slice(*split[k])], work / f"naive-stills{k}"), unit="images")
            per = {"fex": breakdown(lambda: fex_run(work / "stills", work / "out-stills-prof", "folder", 1),
                                    fex_stages)[1],
                   "naive": breakdown(lambda: naive_stills(stills, work / "naive-stills-prof"), naive_stages)[1]}
            print_breakdown("stills, per stage (instrumented runs)", per)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
