"""Train/val/test splits and cross-validation folds.

* `identity`: subject-independent (ExprGAN, DE-GAN): each identity lies in exactly one split.
  Fractions count identities. Identities are placed rarest affect first, so every affect reaches
  every split whenever enough identities show it; the rest follow a seeded permutation.
* `frame`: within identities (FExGAN-Meta's 70/30). Each video item is cut into `blocks` equal
  time blocks and whole blocks go to splits, so neighbouring frames stay together; frames of a
  block that begin within `guard` of the previous block of another split are dropped, leaving a
  gap between splits. Stills are assigned one by one within each identity x affect cell.
* folds: identities spread over K folds (DE-GAN's subject-disjoint 10-fold), balancing rows.
Everything is a function of the rows and the seed only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fexdata.errors import ManifestError
from fexdata.manifest.filters import Gap

SPLIT_MODES = ("identity", "frame", "none")
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = {"identity": (0.8, 0.1, 0.1), "frame": (0.7, 0.0, 0.3), "none": (1.0, 0.0, 0.0)}
GUARD_MAX_SHARE = 0.25  # the guard never takes more than this share of a block


def parse_fractions(spec: str | tuple[float, ...] | list[float] | None, mode: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> train, val, test; two numbers mean train, test. Must sum to 1."""
    if spec is None or spec == "":
        return DEFAULT_FRACTIONS[mode]
    try:
        parts = [float(p) for p in (spec.split(",") if isinstance(spec, str) else spec)]
    except ValueError:
        raise ManifestError(f"--fractions {spec!r} are not numbers",
                            hint="give numbers like 0.8,0.1,0.1 (train,val,test) or 0.7,0.3 (train,test)") from None
    if len(parts) == 2:
        parts = [parts[0], 0.0, parts[1]]
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6 or parts[0] <= 0:
        raise ManifestError(f"--fractions {spec!r}: need 2 or 3 non-negative numbers summing to 1 "
                            f"with a positive train share", hint="e.g. --fractions 0.8,0.1,0.1 or 0.7,0.3")
    return (parts[0], parts[1], parts[2])


def _allocate(n: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """Split counts n (per group) into (len(n), 3) integers by largest remainder.

    Every split with a positive fraction gets at least one unit when the group has enough units.
    """
    f = np.asarray(fractions)
    raw = n[:, None] * f[None, :]
    out = np.floor(raw).astype(np.int64)
    left = n - out.sum(axis=1)
    # hand the leftovers to the largest remainders (ties: train, val, test order)
    order = np.argsort(-(raw - out) + np.arange(3) * 1e-9, axis=1, kind="stable")
    for r in range(3):
        col = order[:, r]
        give = left > r
        out[np.arange(len(n))[give], col[give]] += 1
    positive = f > 0
    for s in np.flatnonzero(positive):
        short = (out[:, s] == 0) & (n >= positive.sum())
        if short.any():
            donor = np.argmax(out[short], axis=1)  # take one unit from the largest share
            out[np.flatnonzero(short), donor] -= 1
            out[short, s] += 1
    return out


def _ranked_assign(group: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Assign each unit a split index: a seeded random order within its group, cut by _allocate."""
    n_units = len(group)
    if n_units == 0:
        return np.zeros(0, np.int8)
    key = rng.random(n_units)
    order = np.lexsort((key, group))
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n_units])
    rank_sorted = np.arange(n_units) - np.repeat(starts, sizes)
    alloc = _allocate(sizes, fractions)
    c1 = np.repeat(alloc[:, 0], sizes)
    c2 = c1 + np.repeat(alloc[:, 1], sizes)
    split_sorted = np.where(rank_sorted < c1, 0, np.where(rank_sorted < c2, 1, 2)).astype(np.int8)
    out = np.empty(n_units, np.int8)
    out[order] = split_sorted
    return out


def split_by_identity(df: pd.DataFrame, fractions: tuple[float, float, float], seed: int,
                      affects: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Subject-independent split -> (split name per row, warnings)."""
    idents = np.array(sorted(df["identity"].unique()))
    n = len(idents)
    positive = [s for s, f in zip(SPLIT_NAMES, fractions) if f > 0]
    if n < len(positive):
        raise ManifestError(
            f"--split identity with {'/'.join(positive)} needs at least {len(positive)} identities; the data "
            f"has {n} ({', '.join(idents)})", hint="use --split frame, or fewer splits (e.g. --fractions 0.8,0.2)")
    quota = {s: (int(round(f * n)) if f > 0 else 0) for s, f in zip(SPLIT_NAMES, fractions)}
    for s in positive:
        quota[s] = max(quota[s], 1)
    quota["train"] = n - quota["val"] - quota["test"]
    while quota["train"] < 1:  # rounding took too many for val/test: give back from the larger
        s = "val" if quota["val"] >= quota["test"] and quota["val"] > 1 else "test"
        quota[s] -= 1
        quota["train"] += 1
    rng = np.random.default_rng(seed)
    perm_rank = {ident: r for r, ident in enumerate(idents[rng.permutation(n)])}
    has = pd.crosstab(df["identity"], df["affect"]).reindex(index=idents, columns=list(affects), fill_value=0) > 0
    holders = {a: sorted(has.index[has[a]], key=perm_rank.get) for a in affects}
    assigned: dict[str, str] = {}
    left = dict(quota)
    # rarest affect first: its few holders are spread over the splits before common affects use them up
    for a in sorted(affects, key=lambda a: (len(holders[a]), affects.index(a))):
        for s in SPLIT_NAMES:
            if left[s] <= 0 or any(assigned.get(i) == s for i in holders[a]):
                continue
            free = [i for i in holders[a] if i not in assigned]
            if not free:
                break
            assigned[free[0]] = s
            left[s] -= 1
    for ident in sorted(idents, key=perm_rank.get):
        if ident in assigned:
            continue
        s = next(s for s in ("test", "val", "train") if left[s] > 0)
        assigned[ident] = s
        left[s] -= 1
    names = sorted(assigned)
    split = np.array([assigned[i] for i in names], dtype=object)[
        pd.Categorical(df["identity"], categories=names).codes]
    warnings = []
    for s in positive:
        present = set(df.loc[split == s, "affect"].unique().tolist())
        missing = [a for a in affects if a not in present and has[a].any()]
        if missing:
            warnings.append(f"split {s} has no {', '.join(missing)}: too few identities show "
                            f"{'it' if len(missing) == 1 else 'them'}")
    return split, warnings


def frame_axis(df: pd.DataFrame) -> np.ndarray:
    """Time in seconds, or the frame number where a video has no timestamps (NaN for stills)."""
    t = df["time"].to_numpy(np.float64, na_value=np.nan)
    f = df["frame"].to_numpy(np.float64, na_value=np.nan)
    return np.where(np.isnan(t), f, t)


def split_by_frame(df: pd.DataFrame, fractions: tuple[float, float, float], seed: int, blocks: int,
                   guard: Gap | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Within-identity split -> (split per row, block per row (-1 for stills), keep mask, warnings).

    Rows with keep=False fall inside a guard gap and are to be dropped.
    """
    if blocks < 1:
        raise ManifestError(f"--blocks {blocks}: must be at least 1", hint="e.g. --blocks 10")
    rng_blocks, rng_stills = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    n = len(df)
    split = np.zeros(n, np.int8)
    block = np.full(n, -1, np.int64)
    keep = np.ones(n, bool)
    video = df["frame"].notna().to_numpy()
    t = frame_axis(df)
    if video.any():
        v = df[video]
        item = v.groupby(["ingest", "source", "item"], sort=True, observed=True).ngroup().to_numpy()
        tv = t[video]
        tmin = pd.Series(tv).groupby(item).transform("min").to_numpy()
        tmax = pd.Series(tv).groupby(item).transform("max").to_numpy()
        span = tmax - tmin
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(span > 0, np.floor((tv - tmin) / np.where(span > 0, span, 1) * blocks), 0)
        b = np.minimum(b, blocks - 1).astype(np.int64)
        # one unit per non-empty (item, block); blocks of an item are shuffled and cut by the fractions
        unit_key = item * blocks + b
        units, unit_of_row = np.unique(unit_key, return_inverse=True)
        unit_split = _ranked_assign(units // blocks, fractions, rng_blocks)
        split[video] = unit_split[unit_of_row]
        block[video] = b
        if guard is not None:
            keep[video] = _guard_mask(item, b, tv if guard.unit == "s" else
                                      df.loc[video, "frame"].to_numpy(np.float64), split[video],
                                      guard.value, span / blocks if guard.unit == "s" else None)
    stills = ~video
    if stills.any():
        cell = df[stills].groupby(["identity", "affect"], sort=True, observed=True).ngroup().to_numpy()
        split[stills] = _ranked_assign(cell, fractions, rng_stills)
    return np.array(SPLIT_NAMES, dtype=object)[split], block, keep, []


def _guard_mask(item: np.ndarray, block: np.ndarray, t: np.ndarray, split: np.ndarray, guard: float,
                block_len: np.ndarray | None) -> np.ndarray:
    """False for frames closer than the guard to the last frame of the previous block of another split.

    The guard is capped at GUARD_MAX_SHARE of the block length, so short clips keep most frames.
    """
    frame = pd.DataFrame({"item": item, "block": block, "t": t, "split": split})
    per_block = frame.groupby(["item", "block"], sort=True).agg(start=("t", "min"), end=("t", "max"),
                                                               split=("split", "first")).reset_index()
    same_item = per_block["item"].eq(per_block["item"].shift())
    prev_end = per_block["end"].shift().where(same_item)
    prev_split = per_block["split"].shift().where(same_item)
    per_block["guard_until"] = np.where(prev_split.notna() & (prev_split != per_block["split"]),
                                        prev_end, -np.inf)
    lookup = frame.merge(per_block[["item", "block", "guard_until"]], on=["item", "block"], how="left")
    g = np.full(len(t), guard)
    if block_len is not None:
        g = np.minimum(g, GUARD_MAX_SHARE * block_len)
    return ~(t - lookup["guard_until"].to_numpy() < g - 1e-9)


def assign_folds(df: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Identity-disjoint folds 0..k-1 balancing row counts (largest identities placed first)."""
    sizes = df.groupby("identity", sort=True).size()
    if k < 2:
        raise ManifestError(f"--folds {k}: must be at least 2", hint="pass --folds 0 for no folds, or 2 or more")
    if k > len(sizes):
        raise ManifestError(f"--folds {k} needs at least {k} identities; the data has {len(sizes)}",
                            hint=f"use --folds {len(sizes)} or fewer")
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(len(sizes))
    order = np.lexsort((tiebreak, -sizes.to_numpy()))
    load = np.zeros(k, np.int64)
    fold_of: dict[str, int] = {}
    for i in order:  # one step per identity, not per row
        f = int(np.argmin(load))
        fold_of[sizes.index[i]] = f
        load[f] += sizes.iloc[i]
    names = sorted(fold_of)
    return np.array([fold_of[i] for i in names], np.int32)[pd.Categorical(df["identity"], categories=names).codes]
