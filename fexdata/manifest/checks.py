"""Checks shared by `fex manifest-info` and `fex build-manifest` (which runs them before writing).

Problems (non-zero exit): missing crop files, unsafe or duplicate image paths, leakage (an identity
in two splits under `--split identity`, an identity in two folds, a time block shared by two
splits or overlapping another split's block under `--split frame`), indices that disagree with the
metadata. Warnings: an affect absent from a split, an empty split that fractions asked for.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fexdata.manifest.balance import cell_table
from fexdata.manifest.splits import SPLIT_NAMES, frame_axis
from fexdata.paths import existing_files, unsafe_paths

MAX_LISTED = 10  # how many offending names a message lists before "and N more"


@dataclass
class CheckResult:
    table: pd.DataFrame                     # identity x affect counts (+ total)
    split_affect: pd.DataFrame              # split x affect counts (+ total)
    split_sizes: dict[str, int]
    fold_sizes: dict[int, int]
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"split_sizes": self.split_sizes, "fold_sizes": {str(k): v for k, v in self.fold_sizes.items()},
                "missing_files": len(self.missing), "problems": self.problems, "warnings": self.warnings,
                "table": {i: {k: int(v) for k, v in row.items()} for i, row in self.table.iterrows()}}


def _listing(names: list[str]) -> str:
    head = ", ".join(map(str, names[:MAX_LISTED]))
    return head + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def codes(values: pd.Series, order: list[str] | tuple[str, ...]) -> np.ndarray:
    """Position of each value in `order` (-1 when absent), vectorised."""
    return pd.Categorical(values, categories=list(order)).codes.astype(np.int64)


def check_manifest(df: pd.DataFrame, meta: dict[str, Any], root: str | os.PathLike | None,
                   check_files: bool = True) -> CheckResult:
    """Run every check on a manifest frame; `root` is the manifest's folder (for file checks)."""
    affects = tuple(meta.get("affects", []))
    split_mode = (meta.get("split") or {}).get("mode")
    table = cell_table(df, affects)
    split_affect = pd.crosstab(df["split"], df["affect"]).reindex(
        index=[s for s in SPLIT_NAMES if s in set(df["split"].unique())], columns=list(affects), fill_value=0)
    split_affect["total"] = split_affect.sum(axis=1)
    split_sizes = {s: int((df["split"] == s).sum()) for s in SPLIT_NAMES}
    folds = df["fold"].dropna() if "fold" in df else pd.Series([], dtype="Int32")
    fold_sizes = {int(k): int(v) for k, v in folds.value_counts().sort_index().items()}
    res = CheckResult(table, split_affect, split_sizes, fold_sizes)

    bad_split = sorted(set(df["split"].unique().tolist()) - set(SPLIT_NAMES))
    if bad_split:
        res.problems.append(f"unknown split names {_listing(bad_split)}; expected {', '.join(SPLIT_NAMES)}")
    unsafe = unsafe_paths(df["image"])
    if unsafe.any():
        res.problems.append(f"{int(unsafe.sum())} image paths leave the manifest's folder: "
                            f"{_listing(df.loc[unsafe, 'image'].tolist())}")
    dup = df["image"].duplicated(keep=False)
    if dup.any():
        res.problems.append(f"{int(dup.sum())} rows share an image path: "
                            f"{_listing(sorted(set(df.loc[dup, 'image'])))}")
    if affects:
        wrong = df["affect_index"].to_numpy() != codes(df["affect"], affects)
        if wrong.any():
            res.problems.append(f"{int(wrong.sum())} rows have an affect_index that disagrees with fex.affects "
                                f"(or an affect not in it)")
    identities = meta.get("identities")
    if identities:
        wrong = df["identity_index"].to_numpy() != codes(df["identity"], identities)
        if wrong.any():
            res.problems.append(f"{int(wrong.sum())} rows have an identity_index that disagrees with fex.identities")
    if "crop_size" in df and df["crop_size"].nunique() > 1:
        res.problems.append(f"mixed crop sizes {sorted(df['crop_size'].unique().tolist())}; a manifest holds one size")

    if check_files and root is not None and not unsafe.any():
        present = existing_files(df["image"], Path(root))
        res.missing = df.loc[~present, "image"].tolist()
        if res.missing:
            res.problems.append(f"{len(res.missing)} crop files are missing: {_listing(res.missing)}; "
                                f"re-run `fex ingest` to restore them or rebuild with --drop-missing")

    res.problems += _leakage(df, split_mode)

    fractions = (meta.get("split") or {}).get("fractions")
    for s, f in zip(SPLIT_NAMES, fractions or ()):
        if f and split_sizes[s] == 0:
            res.warnings.append(f"split {s} is empty although its fraction is {f:g}")
    for s in split_affect.index:
        present = split_affect.loc[s]
        missing = [a for a in affects if present[a] == 0 and table[a].sum() > 0]
        if missing:
            res.warnings.append(f"split {s} has no rows of {', '.join(missing)}")
    return res


def _leakage(df: pd.DataFrame, split_mode: str | None) -> list[str]:
    problems = []
    if split_mode == "identity":
        n_splits = df.groupby("identity", observed=True)["split"].nunique()
        leaked = n_splits[n_splits > 1].index.tolist()
        if leaked:
            problems.append(f"leakage: {len(leaked)} identities appear in more than one split "
                            f"under --split identity: {_listing(leaked)}")
    if "fold" in df and df["fold"].notna().any():
        f = df[df["fold"].notna()]
        n_folds = f.groupby("identity", observed=True)["fold"].nunique()
        leaked = n_folds[n_folds > 1].index.tolist()
        if leaked:
            problems.append(f"leakage: {len(leaked)} identities appear in more than one fold: {_listing(leaked)}")
    if split_mode == "frame" and "block" in df:
        v = df[df["block"].notna() & df["frame"].notna()].copy()
        if len(v):
            v["_t"] = frame_axis(v)
            keys = ["ingest", "source", "item", "block"]
            shared = v.groupby(keys, observed=True)["split"].nunique()
            shared = shared[shared > 1]
            if len(shared):
                names = [f"{k[2]} block {k[3]}" for k in shared.index]
                problems.append(f"leakage: {len(shared)} time blocks hold frames of two splits: {_listing(names)}")
            blocks = (v.groupby(keys, observed=True)
                      .agg(start=("_t", "min"), end=("_t", "max"), split=("split", "first"))
                      .reset_index().sort_values(["ingest", "source", "item", "start", "end"], kind="stable"))
            # Within an item, a block must start after every earlier-starting block of another split ends.
            overlaps = []
            ends: dict[tuple, dict[str, float]] = defaultdict(dict)
            for row in blocks.itertuples(index=False):  # one step per block, not per frame
                key = (row.ingest, row.source, row.item)
                for other_split, end in ends[key].items():
                    if other_split != row.split and row.start <= end:
                        overlaps.append(f"{row.item} block {row.block}")
                        break
                ends[key][row.split] = max(ends[key].get(row.split, -np.inf), row.end)
            if overlaps:
                problems.append(f"leakage: {len(overlaps)} time blocks overlap a block of another split: "
                                f"{_listing(overlaps)}")
    return problems
