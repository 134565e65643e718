"""Quality filters for manifest building; every dropped row is counted under one reason.

Filters run in a fixed order and a row is counted under the first reason that removes it:
affect not selected, detector score, sharpness, face count, padded share, the three landmark sanity checks, and
last the thinning of near-duplicate consecutive video frames (`--min-gap`), so thinning chooses
among frames that passed everything else. All of it is vectorised over the whole record table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fexdata.affects import parse_affects
from fexdata.errors import ManifestError
from fexdata.ingest.records import N_LANDMARKS

# Reason labels, in the order they are applied (also the row order of the build report).
R_AFFECT = "affect not selected"
R_SCORE = "detector score below --min-score"
R_SHARP = "sharpness below --min-sharpness"
R_FACES = "more faces than --max-faces"
R_PAD = "padded share above --max-pad"
R_LM_OUTSIDE = "landmarks outside the frame"
R_LM_EYES = "landmarks: implausible eye distance"
R_LM_ORDER = "landmarks: eyes not above mouth"
R_GAP = "closer than --min-gap to a kept frame"
REASONS = (R_AFFECT, R_SCORE, R_SHARP, R_FACES, R_PAD, R_LM_OUTSIDE, R_LM_EYES, R_LM_ORDER, R_GAP)

# Landmark sanity bounds, as fractions: generous, they catch fits that collapsed or flipped, not
# unusual faces. Inter-ocular distance is compared with the jaw width (points 0..16).
OUTSIDE_TOLERANCE = 0.02      # of the frame's larger side
EYE_RATIO = (0.15, 0.8)       # inter-ocular distance / jaw width
MOUTH_BELOW_EYES = 0.3        # mouth centre at least this many inter-ocular distances below the eye line


@dataclass(frozen=True)
class Gap:
    """A minimum spacing between kept video frames: `value` seconds (unit 's') or frames (unit 'f')."""
    value: float
    unit: str

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"


_GAP_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?|f|frames?)?\s*$", re.IGNORECASE)


def parse_gap(spec: str | float | int | Gap | None, option: str = "--min-gap") -> Gap | None:
    """'0.5s', '0.5', '10f', '10 frames' -> Gap; None, '' or 0 -> None (off)."""
    if spec is None or isinstance(spec, Gap):
        return spec
    m = _GAP_RE.match(str(spec))
    if not m:
        raise ManifestError(f"{option} {spec!r} is not a time gap", hint="give seconds like 0.5s or frames like 10f")
    value = float(m.group(1))
    unit = "f" if (m.group(2) or "s").lower().startswith("f") else "s"
    return Gap(value, unit) if value > 0 else None


@dataclass(frozen=True, kw_only=True)
class FilterOptions:
    """The filters' choices, read and checked on construction: `affects` ('joy,AN', 'all', names, or None for the
    canonical seven) becomes the canonical tuple, `min_gap` ('0.5s', '10f') a Gap or None."""
    affects: tuple[str, ...] | str | None = None
    min_score: float | None = None
    min_sharpness: float | None = None
    max_faces: int | None = None
    max_pad: float | None = None
    landmark_check: bool = True
    min_gap: Gap | str | float | None = None

    def __post_init__(self) -> None:
        spec = ",".join(self.affects) if isinstance(self.affects, (tuple, list)) else self.affects
        object.__setattr__(self, "affects", parse_affects(spec))  # frozen: normalised once, here
        object.__setattr__(self, "min_gap", parse_gap(self.min_gap))
        if self.max_pad is not None and not 0 <= self.max_pad <= 1:
            raise ManifestError(f"--max-pad {self.max_pad:g}: not a fraction of the crop",
                                hint="give a value between 0 and 1, e.g. --max-pad 0.3")


def landmark_reasons(lm: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Per row, the first failed landmark check (index into the three landmark reasons) or -1.

    `lm` is (n, 136) frame pixels, NaN rows (no landmarks, e.g. `bbox` alignment) pass.
    """
    n = len(lm)
    out = np.full(n, -1, np.int8)
    pts = lm.reshape(n, N_LANDMARKS, 2)
    has = ~np.isnan(lm).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tol = OUTSIDE_TOLERANCE * np.fmax(width, height)
        x, y = pts[..., 0], pts[..., 1]
        outside = ((x < -tol[:, None]) | (y < -tol[:, None]) | (x > (width + tol)[:, None])
                   | (y > (height + tol)[:, None])).any(axis=1)
        outside &= ~np.isnan(width) & ~np.isnan(height)  # frame size unknown: cannot judge
        eye_l, eye_r = pts[:, 36:42].mean(axis=1), pts[:, 42:48].mean(axis=1)
        mouth = (pts[:, 48] + pts[:, 54]) / 2
        e2e = eye_r - eye_l
        iod = np.hypot(e2e[:, 0], e2e[:, 1])
        jaw = np.hypot(*(pts[:, 16] - pts[:, 0]).T)
        ratio = iod / jaw
        bad_eyes = ~((ratio >= EYE_RATIO[0]) & (ratio <= EYE_RATIO[1]) & (iod >= 2.0))
        e2m = mouth - (eye_l + eye_r) / 2
        # signed distance of the mouth below the eye line (image y grows downwards)
        below = (e2e[:, 0] * e2m[:, 1] - e2e[:, 1] * e2m[:, 0]) / iod
        bad_order = ~(below >= MOUTH_BELOW_EYES * iod)
    out[has & bad_order] = 2
    out[has & bad_eyes] = 1
    out[has & outside] = 0
    return out


def thin_by_gap(group: np.ndarray, t: np.ndarray, gap: float) -> np.ndarray:
    """Keep mask: within each group, greedily keep a frame when it is >= gap after the last kept one.

    Rows must be sorted by (group, t). The greedy chain is followed for all groups at once: each
    step jumps every group's frontier to its first frame at least `gap` later, so the loop runs
    (max kept frames per group) times over arrays, never once per row.
    """
    n = len(t)
    keep = np.zeros(n, bool)
    if n == 0:
        return keep
    span = float(np.nanmax(t) - np.nanmin(t)) + gap + 1.0
    key = group.astype(np.float64) * span + (t - np.nanmin(t))
    nxt = np.searchsorted(key, key + gap * (1 - 1e-9), side="left")
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    frontier = starts
    while len(frontier):
        keep[frontier] = True
        cand = nxt[frontier]
        ok = cand < n
        cand, src = cand[ok], frontier[ok]
        frontier = cand[group[cand] == group[src]]
    return keep


def apply_filters(df: pd.DataFrame, landmarks: np.ndarray, opts: FilterOptions) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows that fail a filter -> (kept rows, {reason: rows dropped}) with every reason present.

    `landmarks` is the (N, 136) frame-pixel array indexed by `df["_row"]`.
    """
    counts = {r: 0 for r in REASONS}
    reason = np.full(len(df), -1, np.int16)

    def mark(mask: np.ndarray, r: str) -> None:
        newly = mask & (reason < 0)
        reason[newly] = REASONS.index(r)

    mark(~df["affect"].isin(opts.affects).to_numpy(), R_AFFECT)
    # A missing score/sharpness/face count/padded share (NaN) cannot be judged and passes: e.g. pre-cropped
    # datasets aligned to the whole frame have no detector score.
    if opts.min_score is not None:
        _need(df, "det_score", "--min-score")
        mark((df["det_score"] < opts.min_score).fillna(False).to_numpy(bool), R_SCORE)
    if opts.min_sharpness is not None:
        _need(df, "sharpness", "--min-sharpness")
        mark((df["sharpness"] < opts.min_sharpness).fillna(False).to_numpy(bool), R_SHARP)
    if opts.max_faces is not None:
        _need(df, "face_count", "--max-faces")
        mark((df["face_count"] > opts.max_faces).fillna(False).to_numpy(bool), R_FACES)
    if opts.max_pad is not None:
        _need(df, "pad_share", "--max-pad")
        mark((df["pad_share"] > opts.max_pad).fillna(False).to_numpy(bool), R_PAD)
    if opts.landmark_check:
        w = df["frame_width"].to_numpy(np.float64, na_value=np.nan) if "frame_width" in df else np.full(len(df), np.nan)
        h = df["frame_height"].to_numpy(np.float64, na_value=np.nan) if "frame_height" in df else np.full(len(df), np.nan)
        lm_reason = landmark_reasons(landmarks[df["_row"].to_numpy()], w, h)
        for k, r in enumerate((R_LM_OUTSIDE, R_LM_EYES, R_LM_ORDER)):
            mark(lm_reason == k, r)
    kept = df[reason < 0]
    if opts.min_gap is not None:
        kept, n_thin = _thin(kept, opts.min_gap)
        counts[R_GAP] = n_thin
    for k, n in zip(*np.unique(reason[reason >= 0], return_counts=True)):
        counts[REASONS[k]] = int(n)
    return kept, counts


def _need(df: pd.DataFrame, column: str, option: str) -> None:
    if column not in df:
        raise ManifestError(f"{option} needs the records' {column!r} column, which these records lack",
                            hint=f"drop {option} or re-run `fex ingest` with this version of fex")


def _thin(df: pd.DataFrame, gap: Gap) -> tuple[pd.DataFrame, int]:
    """Apply thin_by_gap to video rows (frame not null) per (ingest, source, item); stills pass."""
    video = df["frame"].notna().to_numpy()
    if gap.unit == "s":
        t = df["time"].to_numpy(np.float64, na_value=np.nan)
        video = video & ~np.isnan(t)  # frames without timestamps cannot be thinned by seconds
    else:
        t = df["frame"].to_numpy(np.float64, na_value=np.nan)
    if not video.any():
        return df, 0
    v = df[video]
    group = v.groupby(["ingest", "source", "item"], sort=True, observed=True).ngroup().to_numpy()
    tv = t[video]
    order = np.lexsort((tv, group))
    keep_sorted = thin_by_gap(group[order], tv[order], gap.value)
    keep_v = np.empty(len(v), bool)
    keep_v[order] = keep_sorted
    keep = np.ones(len(df), bool)
    keep[np.flatnonzero(video)] = keep_v
    return df[keep], int((~keep).sum())
