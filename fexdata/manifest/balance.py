"""Balancing identity x affect cells: `cap` (drop rows evenly) or `weight` (sampling weights).

* cap: every identity x affect cell keeps at most `cap` rows (default: the median non-empty cell).
  Which rows survive is deterministic and needs no seed: the cell's rows are ordered by
  (ingest, item, time, frame, image) and the kept ones are evenly spaced in that order, so a video
  keeps frames evenly spread in time and several clips of one cell keep proportional shares.
* weight: per split, cell masses are fitted by iterative proportional fitting so that every
  identity and every affect have equal total probability (exactly, whenever the pattern of empty
  cells allows it); a row's weight is its cell's mass over the cell's size, scaled to mean 1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fexdata.errors import ManifestError

BALANCE_MODES = ("cap", "weight", "none")
SORT_IN_CELL = ["identity", "affect", "ingest", "item", "time", "frame", "image"]


def cell_table(df: pd.DataFrame, affects: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """Identity x affect row counts, affects in index order, identities sorted, with totals."""
    table = pd.crosstab(df["identity"], df["affect"]) if len(df) else pd.DataFrame()
    table = table.reindex(columns=list(affects), fill_value=0).sort_index()
    table.index.name, table.columns.name = "identity", None
    table["total"] = table.sum(axis=1)
    return table.astype(np.int64)


def median_cell(df: pd.DataFrame) -> int:
    sizes = df.groupby(["identity", "affect"], observed=True).size()
    return max(1, int(np.median(sizes.to_numpy()))) if len(sizes) else 1


def cap_cells(df: pd.DataFrame, cap: int | None = None) -> tuple[pd.DataFrame, int]:
    """Keep at most `cap` rows per identity x affect cell, evenly spaced -> (kept rows, cap used)."""
    if cap is None:
        cap = median_cell(df)
    if cap < 1:
        raise ManifestError(f"--cap {cap}: must be at least 1", hint="pass a positive cap, or leave --cap out for the median cell")
    ordered = df.sort_values([c for c in SORT_IN_CELL if c in df], kind="stable", na_position="last")
    grouped = ordered.groupby(["identity", "affect"], sort=False, observed=True)
    rank = grouped.cumcount().to_numpy(np.int64)
    n = grouped["identity"].transform("size").to_numpy(np.int64)
    # Bresenham-style selection: exactly `cap` of the n ranks, evenly spaced, when n > cap.
    keep = (n <= cap) | ((rank + 1) * cap // np.maximum(n, 1) > rank * cap // np.maximum(n, 1))
    return ordered[keep], int(cap)


def ipf_cell_masses(counts: np.ndarray, iterations: int = 500, tol: float = 1e-12) -> np.ndarray:
    """Masses on the non-empty cells of `counts` (I x A) with row sums 1/I' and column sums 1/A'.

    I', A' count the identities and affects present. Iterative proportional fitting from a uniform
    start; when the empty cells make exact equality impossible it stops at the closest fit.
    """
    support = counts > 0
    rows, cols = support.any(axis=1), support.any(axis=0)
    m = support.astype(np.float64)
    if not support.any():
        return m
    row_target = np.where(rows, 1.0 / rows.sum(), 0.0)
    col_target = np.where(cols, 1.0 / cols.sum(), 0.0)
    for _ in range(iterations):
        rs = m.sum(axis=1)
        m *= np.divide(row_target, rs, out=np.zeros_like(rs), where=rs > 0)[:, None]
        cs = m.sum(axis=0)
        m *= np.divide(col_target, cs, out=np.zeros_like(cs), where=cs > 0)[None, :]
        if np.abs(m.sum(axis=1) - row_target).max() < tol:
            break
    return m


def balance_weights(df: pd.DataFrame, by: str = "split") -> np.ndarray:
    """Per-row sampling weights (mean 1 within each `by` group) equalising identities and affects."""
    weights = np.ones(len(df))
    if not len(df):
        return weights
    groups = df[by].to_numpy() if by in df else np.zeros(len(df))
    ident_codes, ident_names = pd.factorize(df["identity"], sort=True)
    aff_codes, aff_names = pd.factorize(df["affect"], sort=True)
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        i, a = ident_codes[sel], aff_codes[sel]
        counts = np.zeros((len(ident_names), len(aff_names)))
        np.add.at(counts, (i, a), 1)
        masses = ipf_cell_masses(counts)
        w = masses[i, a] / counts[i, a]
        weights[sel] = w * (sel.sum() / w.sum())
    return weights
