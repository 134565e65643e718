"""`fex edit` on the real benchmark's original photos of people the run never saw, at full resolution (issue 23).

    python benchmarks/edit_photos.py RUN [--real-cache ~/.cache/fex/real-faces] [--per-source 8] [--paste auto]

Takes up to --per-source test-split photos per source of `manifest-identity.parquet` (benchmarks/REAL_FACES.md;
the original files under CACHE/raw, one per identity), lists them with their labelled
affect in a CSV (so the source affect is known, not estimated), runs `fex edit RUN CSV --to all`, and prints
what a user sees at full resolution:

* sharpness: the face box's Laplacian variance in the output over the input's (edits.parquet), median and the
  share below 0.8;
* faces found: share of photos edited (dlib found the face again in the original photo);
* gray in, gray out: mean and max channel spread added to the face region of grayscale photos, in levels;
* speed: faces x targets edited per second (the whole command, one thread).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fexdata.images import read_rgb
from real_faces import DEFAULT_CACHE  # benchmarks/real_faces.py (this folder is on sys.path)


def pick(cache: Path, per_source: int) -> pd.DataFrame:
    """Test photos (path, affect), up to `per_source` per benchmark source, one per identity."""
    df = pd.read_parquet(cache / "manifest-identity.parquet", columns=["source_path", "identity", "affect", "split"])
    selection = pd.read_csv(cache / "selection.csv")  # benchmarks/real_faces.py: where each file was put
    df = df[df["split"] == "test"].merge(selection[["source", "path"]], left_on="source_path", right_on="path")
    df = df[df["source"] != "ckplus"]  # CK+48's 48 px files are face crops, not photos
    first = df.sort_values(["source", "identity", "source_path"]).groupby("identity").head(1)
    first = first.groupby("source").head(per_source).reset_index(drop=True)
    first["file"] = [str(cache / "raw" / s / p) for s, p in zip(first["source"], first["path"])]
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--real-cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--per-source", type=int, default=8)
    ap.add_argument("--paste", default="auto", choices=["auto", "warp", "crop"])
    ap.add_argument("--out", type=Path, default=None, help="default RUN/edit-photos-PASTE")
    args = ap.parse_args()
    out = args.out or args.run / f"edit-photos-{args.paste}"
    chosen = pick(args.real_cache, args.per_source)
    shutil.rmtree(out / "edits", ignore_errors=True)  # timed from scratch (fex edit would skip finished outputs)
    out.mkdir(parents=True, exist_ok=True)
    listing = out / "inputs.csv"
    with listing.open("w", newline="") as f:
        csv.writer(f).writerows(zip(chosen["file"], chosen["affect"]))

    from cli.main import main as fex

    started = time.perf_counter()
    fex.main(["edit", str(args.run), str(listing), "--to", "all", "--paste", args.paste, "--out", str(out / "edits"),
              "--quiet", "--threads", "1"], standalone_mode=False, prog_name="fex")
    seconds = time.perf_counter() - started
    edits = pd.read_parquet(out / "edits" / "edits.parquet")
    sharp = edits["sharpness"].dropna()
    added = []
    for row in edits.itertuples():
        source = read_rgb(Path(row.input))
        if np.ptp(source.astype(int), axis=2).max() > 2:
            continue  # a colour photo
        edited = read_rgb(out / "edits" / row.output)
        x0, y0, x1, y1 = (int(round(v)) for v in row.box)
        face = edited[max(0, y0):y1, max(0, x0):x1].astype(int)
        added.append(float(np.ptp(face, axis=2).mean()))
    result = {"run": str(args.run), "paste": args.paste, "photos": len(chosen),
              "sources": chosen["source"].value_counts().to_dict(),
              "edited_photos": int(edits["input"].nunique()), "edits": len(edits),
              "faces_found": edits["input"].nunique() / len(chosen),
              "sharpness_median": float(sharp.median()), "sharpness_below_0.8": float((sharp < 0.8).mean()),
              "gray_edits": len(added), "gray_added_chroma_mean": float(np.mean(added)) if added else None,
              "gray_added_chroma_max": float(np.max(added)) if added else None,
              "seconds": seconds, "edits_per_s": len(edits) / seconds}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
