"""Paired truth: does each edit move toward the person's own real face showing the target affect?

The judges say whether an edit *reads* as its target, not whether it looks like that person making that
expression: an edit pushed past what faces do (smeared eyes, blotches over the mouth) can please both judges
more than a clean one. Where the test split holds real frames of the source's person at the target affect,
as paired expression sets do (JAFFE, KDEF, CK+, a capture per character and expression), those frames are the
truth. For the edit e of source s to affect a, with T the test frames of s's person at a:

    gain(e) = mean over t in T of  SSIM(e, t) - SSIM(s~, t)

where s~ is the source blurred to the edit's sharpness (the Gaussian whose Laplacian variance over the face comes
nearest the edit's; s itself when the edit is as sharp). A truth frame differs from the source in detail too, and any
blur brings two such frames nearer: a copy blurred by 0.7 px gains as much as a faint edit. Matching the
blur leaves the expression to be scored; sharpness is the sharpness section's. SSIM of grey levels (Wang et
al. 2004: an 11 x 11 Gaussian window of sigma 1.5), averaged over the face ellipse of fex's aligned crop.

The scale is what another real frame of that person at a achieves: the oracle's gain, the mean over
ordered pairs (o, t) of distinct frames of T of SSIM(o, t) - SSIM(s, t). The score is the edits' mean
gain over the oracle's, over the (source, target) pairs whose T holds 2 frames or more, with a 95%
bootstrap interval over sources. A video's person has dozens of frames per affect: T is a seeded subset of at
most MAX_TRUTHS, and only those frames are read.

A copy and a blurred copy score 0, the person's own real frame at the target above 1 (it is one of the
truths), a torn edit below 0. When the whole interval is below 0 the edits take faces away from how their
people look at the target: the run is flagged AWAY and the headline's expression items are qualified,
since the judges' reading of such edits is no success.
"""
from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.degrade import blur_scale, blur_uint8
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note
from fextrain.evaluate.scores import ratio
from fextrain.pixels import grey_levels, laplacian_variance

# The face in fex's aligned crops, as fractions of the side: on the real-face benchmark's 1,354 crops the
# jaw spans x 0.22-0.78 and the brows and chin lie at y 0.41 and 0.86; the ellipse takes in the forehead.
FACE_CENTRE, FACE_RADII = (0.5, 0.6), (0.28, 0.3)
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # SSIM's stabilisers for 8-bit levels
AWAY = "AWAY"
EXPRESSION_ITEMS = ("expression", "edit_strength", "outside_judge")  # what a torn edit's judges overstate
BOOTSTRAP = 1000
MAX_TRUTHS = 8  # frames per (person, affect) scored against: a clip's frames are near-duplicates of each other
SIGMAS_AT_64 = np.round(np.arange(0.0, 3.01, 0.1), 1)  # the blurs a baseline copy is matched from


def face_ellipse(side: int) -> np.ndarray:
    """[side, side] bool: the face region of an aligned crop."""
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    (cx, cy), (rx, ry) = FACE_CENTRE, FACE_RADII
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean SSIM of two float grey images over `region`."""
    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + _C1) * (2 * cov + _C2)) / ((ma * ma + mb * mb + _C1) * (va + vb + _C2))
    return float(s[region].mean())


def blur_ladder(source: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`source` (uint8 HWC) blurred by each of SIGMAS_AT_64 (scaled with the side): grey [B, H, W], and the
    face sharpness of each (a warp blurs the face, not the background), for matching an edit's."""
    sigmas = SIGMAS_AT_64 * blur_scale(source.shape[0])
    blurred = np.concatenate([source[None]] + [blur_uint8(source[None], s) for s in sigmas[1:]])
    return grey_levels(blurred), laplacian_variance(blurred, region)


def paired_truth(sources: np.ndarray, edits: np.ndarray, source_people: np.ndarray, source_affects: np.ndarray,
                 frames: np.ndarray, people: np.ndarray, affects: np.ndarray, k: int, seed: int = 0) -> dict[str, Any]:
    """Gains toward the truth of source-major edits (`edits[i * k + a]`: source i edited to affect a).

    `frames`, `people`, `affects`: the real frames the truths are drawn from (the test split), uint8 like the
    edits. Pairs whose target the source already shows are skipped; pairs with one truth frame count toward
    `gain` but not toward the score, which needs an oracle.
    """
    region = face_ellipse(edits.shape[1])
    g_frames, g_sources = grey_levels(frames), grey_levels(sources)
    cells = defaultdict(list)
    for j, (p, a) in enumerate(zip(people.tolist(), affects.tolist())):
        cells[(p, a)].append(j)

    @lru_cache(maxsize=None)
    def frames_ssim(o: int, t: int) -> float:
        return ssim(g_frames[o], g_frames[t], region)

    def between(o: int, t: int) -> float:  # SSIM is symmetric; a person's several sources share these
        return frames_ssim(min(o, t), max(o, t))

    pair_source, pair_affect, edit_gain, oracle_gain = [], [], [], []
    for i, (p, sa) in enumerate(zip(source_people.tolist(), source_affects.tolist())):
        targets = [a for a in range(k) if a != sa and (p, a) in cells]
        if not targets:
            continue
        ladder, levels = blur_ladder(sources[i], region)
        own = edits[i * k + np.array(targets)]
        matched = ladder[np.abs(laplacian_variance(own, region)[:, None] - levels[None]).argmin(1)]
        for a, edit, baseline in zip(targets, grey_levels(own), matched):
            truths = cells[(p, a)]
            base = {t: ssim(g_sources[i], g_frames[t], region) for t in truths}
            edit_gain.append(np.mean([ssim(edit, g_frames[t], region) - ssim(baseline, g_frames[t], region)
                                      for t in truths]))
            oracle_gain.append(np.mean([between(o, t) - base[t] for t in truths for o in truths if o != t])
                               if len(truths) > 1 else np.nan)
            pair_source.append(i)
            pair_affect.append(a)
    pair_source, pair_affect = np.array(pair_source, np.int64), np.array(pair_affect, np.int64)
    edit_gain, oracle_gain = np.array(edit_gain), np.array(oracle_gain)
    scored = np.isfinite(oracle_gain)

    def score(rows: np.ndarray) -> float | None:
        rows = rows[scored[rows]]
        return ratio(float(edit_gain[rows].mean()), float(oracle_gain[rows].mean())) if len(rows) else None

    every = np.arange(len(edit_gain))
    by_source = [every[pair_source == i] for i in np.unique(pair_source[scored])]
    interval = None
    if len(by_source) > 1:
        rng = np.random.default_rng(seed)
        draws = [score(np.concatenate([by_source[j] for j in rng.integers(len(by_source), size=len(by_source))]))
                 for _ in range(BOOTSTRAP)]
        draws = [d for d in draws if d is not None]
        interval = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))] if draws else None
    return {
        "pairs": int(len(edit_gain)), "scored_pairs": int(scored.sum()), "sources": len(by_source),
        "gain": float(edit_gain.mean()) if len(edit_gain) else None,
        "oracle_gain": float(oracle_gain[scored].mean()) if scored.any() else None,
        "value": score(every), "interval_95": interval,
        "per_affect": {int(a): {"pairs": int(scored[pair_affect == a].sum()), "value": score(every[pair_affect == a])}
                       for a in range(k)},
    }


def truth_rows(people: np.ndarray, affects: np.ndarray, wanted: np.ndarray, seed: int = 0) -> np.ndarray:
    """Sorted rows of the frames of the `wanted` people, at most MAX_TRUTHS per (person, affect), seeded."""
    rng, rows = np.random.default_rng(seed), []
    chosen = np.flatnonzero(np.isin(people, wanted))
    for cell in np.unique(np.stack([people[chosen], affects[chosen]], axis=1), axis=0):
        members = chosen[(people[chosen] == cell[0]) & (affects[chosen] == cell[1])]
        rows.append(members if len(members) <= MAX_TRUTHS else rng.choice(members, MAX_TRUTHS, replace=False))
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def has_truths(people: np.ndarray, affects: np.ndarray) -> bool:
    """Some person holds 2 or more frames of one affect and a frame of another: an oracle can be scored."""
    cells, counts = np.unique(np.stack([people, affects], axis=1), axis=0, return_counts=True)
    persons, affects_held = np.unique(cells[:, 0], return_counts=True)
    return bool(np.isin(cells[counts > 1, 0], persons[affects_held > 1]).any())


@SECTIONS.register("paired_truth")
class PairedTruthSection(Section):
    title = "Paired truth: the person's own face at the target"

    def unavailable(self, ctx: EvalContext) -> str | None:
        if ctx.identity_edit:
            return f"{ctx.editor.model} keeps the face's expression and redraws its identity: no expression edit"
        if not has_truths(ctx.test.identity_ids, ctx.test.affect_ids):
            return "no test person has two frames of one affect and a frame of another: no truth to score against"
        return None

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        test, edits = ctx.test, ctx.edits
        people = test.identity_ids
        rows = truth_rows(people, test.affect_ids, people[edits.indices], ctx.options.seed)
        r = paired_truth(edits.sources, edits.images, people[edits.indices], edits.source_affects,
                         test.image_array(rows), people[rows], test.affect_ids[rows], edits.k, ctx.options.seed)
        r["per_affect"] = {ctx.affects[a]: v for a, v in r["per_affect"].items()}
        away = r["interval_95"] is not None and r["interval_95"][1] < 0
        return {"split": "test", **r, "away": away}

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        low, high = r["interval_95"] or (None, None)
        return [HeadlineItem("paired_truth", "paired truth", r["value"],
                             f"{fmt(r['value'])} of a real frame's move toward the person's own face at the target "
                             f"(SSIM; 95% {fmt(low)}-{fmt(high)}; {r['scored_pairs']} edits of {r['sources']} sources)",
                             AWAY if r["away"] else None)]

    def amend(self, r: dict[str, Any], items: list[HeadlineItem]) -> list[HeadlineItem]:
        """Edits that take faces away from their person's real expression: what the judges read is no success."""
        if not r["away"]:
            return items
        remark = f"edits move away from the real face: paired truth {fmt(r['value'])}"
        return [item.qualified(remark, AWAY) if item.name in EXPRESSION_ITEMS else item for item in items]

    def summary(self, r: dict[str, Any]) -> list[str]:
        flag = "  AWAY: the edits end further from the person's real face than the source" if r["away"] else ""
        return [f"paired truth    {fmt(r['value'])} of a real frame's SSIM gain toward the truth (edits "
                f"{fmt(r['gain'])}, real frames {fmt(r['oracle_gain'])}; {r['scored_pairs']} edits){flag}"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        rows = [["all", r["scored_pairs"], r["value"]],
                *[[a, s["pairs"], s["value"]] for a, s in r["per_affect"].items()]]
        body = table(["target affect", "edits with an oracle", "gain / a real frame's gain"], rows)
        low, high = r["interval_95"] or (None, None)
        body += note(f"For each edit, the SSIM (grey levels, face ellipse) to the test frames of the same person at "
                     f"the target minus that of the source blurred to the edit's sharpness: {fmt(r['gain'])} on "
                     f"average over {r['pairs']} edits. Another real frame of that person at the target gains "
                     f"{fmt(r['oracle_gain'])} over the plain source; the score is the ratio (95% bootstrap interval "
                     f"over sources {fmt(low)}-{fmt(high)}). A copy and a blurred copy score 0, the person's real "
                     f"frame above 1, torn or exaggerated edits below 0; a run whose interval is wholly below 0 is "
                     f"flagged AWAY.")
        return body
