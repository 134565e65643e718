"""Collapse: do the edits still depend on their source, or does every source give the same face?

A generator that ignores its source (one face per target affect) can score well on expression and even
on a naive judge, while keeping nobody's identity. For each target affect this section takes the mean
pixel distance between the edits of different sources, and divides it by the same distance between the
sources themselves: about 1 when the edits differ as much as the people do, 0 when every source gives
the same face. The run is flagged as collapsed when the mean ratio falls under COLLAPSE_THRESHOLD.

Distances are taken on 16 x 16 area-downscaled faces (mean absolute difference of 0-1 values), so they
measure who and how (face shape, hair, pose, colouring) rather than fine texture: a blurred but faithful
copy keeps a ratio near 1, and softness is the sharpness section's business.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fextrain.evaluate.context import EvalContext, subset
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.scores import ratio
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note

COARSE_SIDE = 16
MAX_SOURCES = 200  # pairs grow with the square; 200 sources give 19,900 pairs per affect
COLLAPSE_THRESHOLD = 0.3  # under it, edits of different people differ less than a third as much as the people


def mean_pairwise_distance(images: np.ndarray) -> float | None:
    """Mean absolute difference (0-1 scale) between every pair of distinct images, at 16 x 16 px."""
    if len(images) < 2:
        return None
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double().div(255.0)
    coarse = torch.nn.functional.interpolate(x, size=(COARSE_SIDE, COARSE_SIDE), mode="area").flatten(1)
    d = torch.cdist(coarse, coarse, p=1) / coarse.shape[1]
    n = len(coarse)
    return float(d.sum() / (n * (n - 1)))  # the diagonal is 0


@SECTIONS.register("collapse")
class CollapseSection(Section):
    title = "Collapse"

    def unavailable(self, ctx: EvalContext) -> str | None:
        n = min(len(ctx.test), ctx.options.max_sources or len(ctx.test))
        return None if n >= 2 else "needs at least two test sources"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        edits = ctx.edits
        keep = subset(len(edits.sources), MAX_SOURCES, ctx.options.seed)
        source_spread = mean_pairwise_distance(edits.sources[keep])
        per_affect = {a: ratio(mean_pairwise_distance(edits.at_target(i)[keep]), source_spread)
                      for i, a in enumerate(ctx.affects)}
        values = [v for v in per_affect.values() if v is not None]
        overall = float(np.mean(values)) if values else None
        return {
            "measure": f"mean absolute pixel difference between distinct sources' edits at one target, at "
                       f"{COARSE_SIDE}x{COARSE_SIDE} px, over the same between the sources",
            "sources": int(len(keep)),
            "source_spread": source_spread,
            "ratio": overall,
            "per_affect": per_affect,
            "threshold": COLLAPSE_THRESHOLD,
            "collapsed": overall is not None and overall < COLLAPSE_THRESHOLD,
        }

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        verdict = "COLLAPSED" if r["collapsed"] else "no"
        return [HeadlineItem("collapse", "collapse", r["ratio"], f"{verdict} (edits vary {fmt(r['ratio'])}x as "
                             "much as their sources)", "COLLAPSED" if r["collapsed"] else None)]

    def summary(self, r: dict[str, Any]) -> list[str]:
        flag = "  COLLAPSED: the edits barely depend on their source" if r["collapsed"] else ""
        return [f"collapse        edit spread / source spread {fmt(r['ratio'])} (flagged under "
                f"{r['threshold']:g}){flag}"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        body = table(["target affect", "edit spread / source spread"],
                     [["mean", r["ratio"]], *[[a, v] for a, v in r["per_affect"].items()]])
        verdict = ("COLLAPSED: edits of different people are nearly the same face." if r["collapsed"] else
                   "Not collapsed.")
        body += note(f"{verdict} {r['measure']} ({r['sources']} sources, whose own spread is "
                     f"{fmt(r['source_spread'])}). 1 = the edits differ as much as the people; 0 = one face for "
                     f"everyone. Flagged under {r['threshold']:g}.")
        return body
