"""Manifest build time for 100,000 and 1,000,000 synthetic ingest records, against bare Parquet I/O.

The records look like a studio capture: identities x 7 affects, one 60 fps clip per cell, every
record column including 136 landmark floats. Baseline, measured in the same run: reading the
records with pandas and writing them back to Parquet (the I/O any build must do). The build runs
landmark checks, 2-frame thinning, weight balancing, the identity split with 10 folds and the
checks, or the frame split; crop files do not exist here, so the file check is off in the builds
and timed separately on real (empty) files.

    .venv/bin/python benchmarks/manifest.py [--sizes 100000,1000000] [--file-check 100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _manifest_fixtures import template_landmarks  # noqa: E402
from fexdata.affects import AFFECTS  # noqa: E402
from fexdata.manifest import build_manifest  # noqa: E402
from fexdata.manifest.build import BuildOptions  # noqa: E402
from fexdata.paths import existing_files  # noqa: E402


def write_records(root: Path, n: int, frames_per_clip: int = 2000) -> None:
    """n synthetic records in one part file, built column-wise (no per-row Python)."""
    clips = max(70, n // frames_per_clip)  # at least 10 identities, clips of <= 2000 frames (33 s)
    clip = np.arange(n) % clips
    frame = np.arange(n) // clips
    ident = clip // len(AFFECTS)
    affect = np.array(AFFECTS)[clip % len(AFFECTS)]
    ident_name = np.char.add("studio:c", ident.astype(str))
    item = np.char.add(np.char.add(np.char.add("c", ident.astype(str)), "/"), np.char.add(affect, ".mp4"))
    image = np.char.add(np.char.add("crops/128/studio/", np.char.replace(item, ".mp4", "_f")),
                        np.char.add(np.char.zfill(frame.astype(str), 6), ".png"))
    rng = np.random.default_rng(0)
    lm = (template_landmarks(60, 50, 130, 130).ravel()[None, :]
          + rng.normal(0, 0.5, (n, 136))).astype(np.float32)
    s = 128 / 130
    transform = np.tile(np.array([s, 0, -60 * s, 0, s, -50 * s]), (n, 1))
    table = pa.table({
        "image": image, "crop_size": np.full(n, 128, np.int32), "source": np.full(n, "studio"),
        "source_path": item, "item": item, "frame": frame.astype(np.int64), "time": frame / 60.0,
        "identity": ident_name, "affect": affect, "affect_raw": affect,
        "intensity": np.full(n, np.nan), "det_score": rng.normal(1.5, 0.3, n),
        "face_count": np.ones(n, np.int32), "sharpness": rng.normal(150, 30, n),
        "landmarks": pa.FixedSizeListArray.from_arrays(pa.array(lm.ravel()), 136).cast(pa.list_(pa.float32())),
        "transform": pa.FixedSizeListArray.from_arrays(pa.array(transform.ravel()), 6).cast(pa.list_(pa.float64())),
        "align": np.full(n, "ffhq"), "detector": np.full(n, "hog"),
        "frame_width": np.full(n, 256.0), "frame_height": np.full(n, 256.0),
    })
    (root / "records").mkdir(parents=True)
    pq.write_table(table, root / "records" / "part-0000.parquet")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--file-check", type=int, default=100000, help="files for the missing-file check timing")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; times in seconds; baseline = pandas read_parquet + to_parquet of the records")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_records(root / "ingest", n)
            base = timed(lambda: pd.read_parquet(root / "ingest" / "records").to_parquet(root / "copy.parquet"))
            common = dict(landmark_check=True, min_gap="2f", balance="weight", seed=0, check_files=False)
            t_id = timed(lambda: build_manifest([root / "ingest"], root / "id.parquet",
                                                BuildOptions(split="identity", folds=10, **common)))
            t_fr = timed(lambda: build_manifest([root / "ingest"], root / "fr.parquet",
                                                BuildOptions(split="frame", **common)))
            rows = pq.read_metadata(root / "id.parquet").num_rows
            print(f"{n:>9} records -> {rows} rows | baseline {base:6.2f} | identity split + 10 folds {t_id:6.2f} "
                  f"({t_id / base:4.1f}x baseline, {n / t_id:9.0f} records/s) | frame split {t_fr:6.2f} "
                  f"({t_fr / base:4.1f}x) | target < 60 s: {'met' if max(t_id, t_fr) < 60 else 'NOT met'}")
    if args.file_check:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            names = [f"crops/{i // 2000:04d}/{i:07d}.png" for i in range(args.file_check)]
            for d in sorted({os.path.dirname(p) for p in names}):
                (root / d).mkdir(parents=True)
            for p in names:
                (root / p).touch()
            paths = pd.Series(names)
            t_scan = timed(lambda: existing_files(paths, root))
            t_stat = timed(lambda: [os.path.isfile(root / p) for p in names])
            print(f"missing-file check, {args.file_check} files: one listing per folder {t_scan:.2f}s vs "
                  f"one stat per file {t_stat:.2f}s ({t_stat / t_scan:.1f}x)")


if __name__ == "__main__":
    main()
