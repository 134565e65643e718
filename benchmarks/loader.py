"""Pairs per second at 128x128: packed cache vs decoding the PNGs, same DataLoader settings, one run.

Builds a temporary ingest folder of 128 px PNG crops rendered by fexdata.sample (synthetic studio
characters), a manifest over it, then times `PairDataset(...).loader(batch_size, num_workers)`
twice: over `FaceDataset(packed=False)` (baseline: cv2 decodes two PNGs per pair) and over the
packed cache. The cache build is timed separately (it is paid once per manifest).

    .venv/bin/python benchmarks/loader.py [--crops 4000] [--workers 2] [--batch 32] [--pairs 20000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fexdata.affects import AFFECTS  # noqa: E402
from fexdata.dataset import FaceDataset, PairDataset  # noqa: E402
from fexdata.manifest import build_manifest  # noqa: E402
from fexdata.manifest.build import BuildOptions  # noqa: E402
from fexdata.sample import sample_face  # noqa: E402

SIZE = 128


def make_ingest(root: Path, crops: int, identities: int = 4) -> None:
    """`crops` PNGs of real-looking faces in the ingest layout, plus a records Parquet."""
    per_cell = max(1, crops // (identities * len(AFFECTS)))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(identities):
        for affect in AFFECTS:
            faces = [sample_face(i, affect, size=SIZE, intensity=k / 7) for k in range(8)]
            folder = root / "crops" / str(SIZE) / "studio" / f"c{i}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(per_cell):
                # a little sensor noise so every PNG is distinct and compresses like a real crop
                img = np.clip(faces[f % 8].astype(np.int16) + rng.integers(-3, 4, faces[0].shape), 0, 255)
                rel = f"crops/{SIZE}/studio/c{i}/{affect}_f{f:06d}.png"
                cv2.imwrite(str(root / rel), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))
                rows.append({"image": rel, "crop_size": SIZE, "source": "studio", "source_path": f"c{i}/{affect}.mp4",
                             "item": f"c{i}/{affect}.mp4", "frame": f, "time": f / 60, "identity": f"studio:c{i}",
                             "affect": affect, "affect_raw": affect})
    (root / "records").mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df["frame"] = df["frame"].astype("Int64")
    df.to_parquet(root / "records" / "part-0000.parquet", index=False)


def pairs_per_second(ds: FaceDataset, pairs: int, batch: int, workers: int) -> float:
    loader = PairDataset(ds, length=pairs, seed=0).loader(batch_size=batch, num_workers=workers)
    it = iter(loader)
    next(it)  # start the workers before the clock
    t0 = time.perf_counter()
    n = 0
    for b in it:
        n += b["source"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=4000)
    ap.add_argument("--workers", default="0,2", help="DataLoader worker counts to compare, comma-separated")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=20000, help="pairs timed from the cache")
    ap.add_argument("--png-pairs", type=int, default=3000, help="pairs timed from PNGs (slower)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = root / "manifest.parquet"
        t0 = time.perf_counter()
        make_ingest(root / "ingest", args.crops)
        build_manifest([root / "ingest"], manifest, BuildOptions(split="none", landmark_check=False))
        print(f"fixture: {args.crops} crops at {SIZE}px written in {time.perf_counter() - t0:.1f}s; "
              f"{os.cpu_count()} CPUs, batch {args.batch}")
        t0 = time.perf_counter()
        packed = FaceDataset(manifest, split="train", size=SIZE, progress=False)
        build_s = time.perf_counter() - t0
        print(f"cache build (once per manifest): {len(packed)} crops in {build_s:.2f}s = "
              f"{len(packed) / build_s:.0f} crops/s, {packed.images.nbytes / 2**20:.0f} MiB")
        t0 = time.perf_counter()
        FaceDataset(manifest, split="train", size=SIZE, progress=False)
        print(f"cache reopen (hash manifest + map): {time.perf_counter() - t0:.3f}s")
        png = FaceDataset(manifest, split="train", size=SIZE, packed=False)
        for workers in (int(w) for w in args.workers.split(",")):
            base = pairs_per_second(png, args.png_pairs, args.batch, workers)
            fast = pairs_per_second(packed, args.pairs, args.batch, workers)
            print(f"workers={workers}: baseline decode PNGs {base:7.0f} pairs/s | packed cache {fast:7.0f} pairs/s | "
                  f"ratio {fast / base:5.1f}x | target >= 5000 pairs/s: {'met' if fast >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
