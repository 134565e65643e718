"""Sharpness: how much fine detail the edits keep, as the variance of their Laplacian against the sources'.

The variance of an image's Laplacian (the usual focus measure) falls steeply with blur. The ratio
mean LV(edits) / mean LV(sources) compares each edit with the very faces it was made from, so a copy of
the sources scores exactly 1, a blurred copy less than 1, and the ratio per target affect shows which
expressions the model paints softer. For a sense of scale the sources blurred by known Gaussians are
measured the same way, and the edits' ratio is read off that curve as an equivalent blur sigma.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.degrade import blur_scale, blur_uint8
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note
from fextrain.evaluate.scores import ratio
from fextrain.pixels import laplacian_variance

REFERENCE_SIGMAS_AT_64 = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
def equivalent_sigma(value: float, reference: dict[float, float]) -> float | None:
    """The blur sigma whose sharpness ratio equals `value`, by linear interpolation on the reference curve.

    0 when the edits are at least as sharp as the sources; None when blurrier than the strongest reference.
    """
    sigmas = [0.0, *reference]
    ratios = [1.0, *reference.values()]
    if value >= 1.0:
        return 0.0
    for (s0, r0), (s1, r1) in zip(zip(sigmas, ratios), zip(sigmas[1:], ratios[1:])):
        if r1 <= value <= r0:
            return s0 + (s1 - s0) * (r0 - value) / (r0 - r1) if r0 != r1 else s0
    return None


@SECTIONS.register("sharpness")
class SharpnessSection(Section):
    title = "Sharpness"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        edits = ctx.edits
        src_lv = laplacian_variance(edits.sources)
        edit_lv = laplacian_variance(edits.images)
        src_mean = float(src_lv.mean()) if len(src_lv) else None
        overall = ratio(float(edit_lv.mean()), src_mean) if len(edit_lv) else None
        scale = blur_scale(ctx.size)
        reference = {s: ratio(float(laplacian_variance(blur_uint8(edits.sources, s * scale)).mean()), src_mean)
                     for s in REFERENCE_SIGMAS_AT_64}
        return {
            "measure": "variance of the 3x3 Laplacian of grey levels, mean over images",
            "image_size": ctx.size,
            "sources": int(len(src_lv)),
            "edits": int(len(edit_lv)),
            "source_mean": src_mean,
            "edit_mean": float(edit_lv.mean()) if len(edit_lv) else None,
            "ratio": overall,
            "per_affect": {a: ratio(float(edit_lv[edits.targets == i].mean()), src_mean)
                           for i, a in enumerate(ctx.affects) if (edits.targets == i).any()},
            # sigmas are in pixels at 64 px; at other sides the blur is scaled with the side
            "blur_reference": {f"{s:g}": v for s, v in reference.items()},
            "equivalent_blur_sigma": (equivalent_sigma(overall, reference)
                                      if overall is not None and None not in reference.values() else None),
        }

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        sigma, strongest = r["equivalent_blur_sigma"], max(REFERENCE_SIGMAS_AT_64)
        if r["ratio"] is None:
            like = ""
        elif sigma is None:
            like = f" (blurrier than a sigma {strongest:g} px blur)"
        else:
            like = f" (like a sigma {sigma:.2f} px blur)" if sigma > 0 else " (as sharp as real)"
        return [HeadlineItem("sharpness", "sharpness", r["ratio"], f"{fmt(r['ratio'])}{like}")]

    def summary(self, r: dict[str, Any]) -> list[str]:
        per = "  ".join(f"{a} {fmt(v)}" for a, v in r["per_affect"].items())
        return [f"sharpness       edits/real {fmt(r['ratio'])}   per target: {per}"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        body = table(["", "images", "mean Laplacian variance", "ratio to sources"],
                     [["real test sources", r["sources"], r["source_mean"], 1.0 if r["source_mean"] else None],
                      ["edits", r["edits"], r["edit_mean"], r["ratio"]]])
        body += table(["target affect", "ratio to sources"], [[a, v] for a, v in r["per_affect"].items()])
        body += table(["sources blurred by sigma (px at 64 px)", *r["blur_reference"]],
                      [["ratio to sources", *r["blur_reference"].values()]])
        sigma = r["equivalent_blur_sigma"]
        body += note(f"{r['measure']}, at {r['image_size']} px. 1 = as sharp as the real faces the edits were made "
                     "from; the edits are as sharp as the sources blurred by sigma "
                     f"{'–' if sigma is None else f'{sigma:.2f}'} px (at 64 px).")
        return body
