"""`fex ingest --executor ray` against the local process pool, and a projection to many machines.

Input: `--clips` copies of one generated studio-length clip (512x512, 60 fps, 35 s by default, made as in
benchmarks/ingest.py; one unit of work each), the same workers / Ray CPUs, in alternating rounds. Two Ray
rows: a Ray already running (as on a cluster: the steady-state task overhead; its workers at
`--ray-niceness`, 0 by default like the pool's, Ray's own default being 15) and a local Ray started for
the run (`fex ingest --executor ray` on one machine: Ray's start-up included). Then the per-core rate
projected onto the studio corpus (162K frames) and 10x and 100x it on N 16-core machines (docs/scale.md).

    .venv/bin/python benchmarks/scale.py [--seconds 35] [--clips 2] [--rounds 2] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import make_clip  # noqa: E402  (benchmarks/ingest.py)

from fexdata.ingest import IngestOptions, Source, ingest  # noqa: E402


def fex_timed(root: Path, out: Path, workers: int, executor: str) -> tuple[int, float]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = ingest([Source(root.resolve(), str(root), "studio")], out, IngestOptions(sizes=(256,)),
                     workers=workers, progress=False, log=lambda _: None, executor=executor)
    return summary["frames"], time.perf_counter() - started


def compare_executors(work: Path, seconds: float, clips: int, workers: int, rounds: int, niceness: int) -> None:
    import statistics

    import ray

    root = work / "studio"
    t0 = time.perf_counter()
    clip = make_clip(work / "clip.mp4", seconds)
    for k in range(clips):  # identical bytes, distinct items: every unit costs the same
        dest = root / f"char{k // 7}" / f"{('anger', 'disgust', 'fear', 'joy', 'neutral', 'sadness', 'surprise')[k % 7]}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, dest)
    print(f"input: {clips} x {seconds:g} s clips, 512x512, 60 fps (generated in {time.perf_counter() - t0:.1f} s); "
          f"{workers} workers / Ray CPUs, running Ray's workers at nice {niceness}; machine: {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    local, warm = [], []
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level="WARNING",
             object_store_memory=128 << 20, _system_config={"worker_niceness": niceness})
    ray_start = time.perf_counter() - t0
    try:
        for r in range(rounds):  # alternate, so drifting load from other work hits both alike
            n, t = fex_timed(root, work / "out-local", workers, "local")
            local.append(n / t)
            n, t = fex_timed(root, work / "out-ray", workers, "ray")
            warm.append(n / t)
            print(f"round {r + 1}: local pool {local[-1]:.1f} frames/s, ray (running) {warm[-1]:.1f} frames/s "
                  f"({n} frames each)")
    finally:
        ray.shutdown()
    n, t = fex_timed(root, work / "out-ray-cold", workers, "ray")
    cold = n / t
    base, steady = statistics.median(local), statistics.median(warm)
    print(f"local pool ({workers} processes), baseline:      {base:7.1f} frames/s (median of {rounds})")
    print(f"ray, Ray already running ({workers} CPUs):        {steady:7.1f} frames/s  ratio {steady / base:.3f} "
          f"(overhead {100 * (1 - steady / base):+.1f}%; target < 15%)")
    print(f"ray, local Ray started for the run:       {cold:7.1f} frames/s  ratio {cold / base:.3f} "
          f"(Ray start-up {ray_start:.1f} s of {t:.1f} s)")

    project(steady / workers)


def project(per_worker: float, cores: int = 16) -> None:
    """Wall time of the studio corpus (70 clips, 162K frames) and 10x and 100x it on N machines of `cores`
    cores, one worker per core: a unit is one clip, so units run in waves of N x cores, and more machines
    than clips buy nothing."""
    import math

    frames_per_clip = 162_000 / 70
    print(f"\nprojection at {per_worker:.1f} frames/s per worker (one per core), {frames_per_clip:.0f}-frame clips:")
    machines = (1, 4, 16, 64)
    print("  frames       clips  " + "  ".join(f"{m:>3} x {cores} cores" for m in machines))
    for scale in (1, 10, 100):
        units = 70 * scale
        cells = []
        for m in machines:
            seconds = math.ceil(units / (m * cores)) * frames_per_clip / per_worker
            cells.append(f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min")
        print(f"  {162_000 * scale:>10,}  {units:>6}  " + "  ".join(f"{c:>14}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=35.0, help="clip length (60 fps)")
    ap.add_argument("--clips", type=int, default=2, help="clips (units of work)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating local/ray rounds")
    ap.add_argument("--workers", type=int, default=None, help="pool workers and Ray CPUs (default: all cores)")
    ap.add_argument("--ray-niceness", type=int, default=0,
                    help="nice level of the running Ray's workers (Ray's own default is 15)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fex-bench-scale-"))
    try:
        compare_executors(work, args.seconds, args.clips, args.workers or len(os.sched_getaffinity(0)), args.rounds,
                          args.ray_niceness)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
