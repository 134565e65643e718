"""The padded share of crops, summarised per source (printed by `fex ingest` and `fex build-manifest`).

A record's `pad_share` is the fraction of its crop that lay outside the source frame and was padded
(fexdata.ingest.align.pad_share). A dataset of tightly framed faces can be half padding; the summary
shows that before anyone trains on it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def pad_summary(df: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """{source: {crops, padded (crops with any padding), median, p90, max}} over the rows that know it."""
    if "pad_share" not in df or "source" not in df:
        return {}
    out: dict[str, dict[str, float | int]] = {}
    known = df[df["pad_share"].notna()]
    for source, share in known.groupby("source", sort=True)["pad_share"]:
        v = share.to_numpy(np.float64)
        out[str(source)] = {"crops": int(len(v)), "padded": int((v > 0).sum()),
                            "median": round(float(np.median(v)), 4), "p90": round(float(np.quantile(v, 0.9)), 4),
                            "max": round(float(v.max()), 4)}
    return out


def format_pad_summary(summary: dict[str, dict[str, float | int]]) -> list[str]:
    """One line per source, e.g. `  studio: 120 of 140 crops padded, padded share median 0.31, p90 0.38, max 0.41`."""
    return [f"  {source}: {s['padded']} of {s['crops']} crops padded, padded share median {s['median']:.2f}, "
            f"p90 {s['p90']:.2f}, max {s['max']:.2f}" for source, s in summary.items()]
