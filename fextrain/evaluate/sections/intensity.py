"""Intensity: does the judge's confidence in the target affect rise with an edit's intensity? (ExprGAN Fig. 3)

ExprGAN dials an expression's intensity with the magnitude of its expression code; through the uniform
editor that is the magnitude of the target vector (`fex edit --to joy --intensity 0.2,0.6,1.0`, the
`0.2*joy` of an affect expression). A seeded subset of `intensity_sources` test faces is edited to every
affect other than its own at each intensity w of `--intensities` (target w * one-hot), and the judge
(trained on real faces only) gives its softmax probability of that affect. Reported: the mean
probability per intensity, overall and per target affect, and whether each curve rises monotonically
(`rises_monotonically`: no step falls and the last is above the first, each judged on the same pairs at
both intensities and beyond their sampling error: a measured check, not a guarantee). A model whose edit
keeps the expression and redraws the identity (DE-GAN) is not measured.

Whether w < 1 was ever shown to the model depends on its training: FExGAN with `loss.target_law: data`
on a manifest with intensities (`fex build-manifest --ramp`) saw weights 0.1..1 tied to real frames, so
the curve interpolates; with the papers' sampled weight (or no intensities) it is extrapolation.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fextrain.evaluate.context import EvalContext, subset
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import SECTIONS, Section, note
from fextrain.models import one_hot


# A change of the mean confidence smaller than this is below what the check resolves (a curve saturated at
# 0.997 that moves by 1e-4 neither rises nor falls).
RESOLUTION = 0.01


def rises_monotonically(confidence: np.ndarray | list, z: float = 2.0) -> bool:
    """Whether confidences [pairs, intensities] (or one curve [intensities]) rise with the intensity.

    Each change is the mean over pairs of a pair's own change (the same face and target at both
    intensities), and counts only beyond z standard errors of that mean and beyond RESOLUTION: a step
    falls when its change is below minus that margin, and the curve rises when the change from the first
    intensity to the last is above it. A flat curve does not rise; a dip within the noise of the pairs
    measured is not a fall.
    """
    c = np.atleast_2d(np.asarray(confidence, np.float64))

    def margin(change: np.ndarray) -> float:
        se = change.std(ddof=1) / np.sqrt(len(change)) if len(change) > 1 else 0.0
        return max(z * float(se), RESOLUTION)

    falls = any(step.mean() < -margin(step) for step in np.diff(c, axis=1).T)
    overall = c[:, -1] - c[:, 0]
    return bool(not falls and overall.mean() > margin(overall))


def target_confidence(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Softmax probability of each row's target class."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p[np.arange(len(targets)), targets]


def line_chart(xs: list[float], series: dict[str, list[float]], width: int = 420, height: int = 240) -> str:
    """A small inline SVG: one polyline per series over x, y in [0, 1] (the mean curve drawn thick)."""
    pad, x0, x1 = 32, min(xs), max(xs)
    span = (x1 - x0) or 1.0

    def pt(x: float, y: float) -> str:
        return f"{pad + (x - x0) / span * (width - 2 * pad):.1f},{height - pad - y * (height - 2 * pad):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="10">',
             f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" '
             'stroke="#999"/>']
    for y in (0, 0.5, 1):
        parts.append(f'<text x="2" y="{height - pad - y * (height - 2 * pad) + 3:.0f}">{y:g}</text>')
    for x in xs:
        parts.append(f'<text x="{pad + (x - x0) / span * (width - 2 * pad) - 6:.0f}" y="{height - 8}">{x:g}</text>')
    for i, (name, ys) in enumerate(series.items()):
        mean = name == "mean"
        colour = "#000" if mean else f"hsl({i * 47 % 360},60%,45%)"
        points = " ".join(pt(x, y) for x, y in zip(xs, ys))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                     f'stroke-width="{3 if mean else 1.2}"><title>{html.escape(name)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


@SECTIONS.register("intensity")
class IntensitySection(Section):
    title = "Expression intensity"

    def unavailable(self, ctx: EvalContext) -> str | None:
        if ctx.identity_edit:
            return f"{ctx.editor.model} keeps the face's expression and redraws its identity: no intensity to dial"
        if len(ctx.options.intensities) < 2:
            return "give at least two --intensities"
        return None

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        o, k = ctx.options, ctx.k
        weights = sorted(float(w) for w in o.intensities)
        idx = subset(len(ctx.test), o.intensity_sources, o.seed + 1)
        sources, source_affects = ctx.test.image_array(idx), ctx.test.affect_ids[idx]
        # every (source, other affect) pair, each at every intensity: rows ordered pair-major, weight-minor
        pair_src, pair_tgt = zip(*[(i, a) for i in range(len(idx)) for a in range(k) if a != source_affects[i]])
        pair_src, pair_tgt = np.asarray(pair_src), np.asarray(pair_tgt)
        m = len(weights)
        vecs = one_hot(torch.as_tensor(np.repeat(pair_tgt, m)), k) * torch.tensor(weights * len(pair_tgt))[:, None]
        ctx.say(f"intensity: {len(pair_tgt)} face/affect pairs x {m} intensities")
        edits = ctx.edit(sources[np.repeat(pair_src, m)], source_affects[np.repeat(pair_src, m)], vecs)
        conf = target_confidence(ctx.judge.judge.logits(edits), np.repeat(pair_tgt, m)).reshape(-1, m)
        mean = conf.mean(axis=0).tolist()
        per_affect = {}
        for a, name in enumerate(ctx.affects):
            rows = conf[pair_tgt == a]
            if len(rows):
                curve = rows.mean(axis=0).tolist()
                per_affect[name] = {"confidence": curve, "monotonic": rises_monotonically(rows),
                                    "pairs": int(len(rows))}
        return {"intensities": weights, "sources": int(len(idx)), "pairs": int(len(pair_tgt)),
                "mean_confidence": mean, "monotonic": rises_monotonically(conf),
                "monotonic_affects": sum(v["monotonic"] for v in per_affect.values()), "per_affect": per_affect}

    def summary(self, r: dict[str, Any]) -> list[str]:
        curve = "  ".join(f"{w:g}: {fmt(c)}" for w, c in zip(r["intensities"], r["mean_confidence"]))
        return [f"intensity  judge confidence in the target  {curve}   rises monotonically: "
                f"{'yes' if r['monotonic'] else 'NO'} ({r['monotonic_affects']} of {len(r['per_affect'])} affects)"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        ws = r["intensities"]
        rows = [["mean", *r["mean_confidence"], "yes" if r["monotonic"] else "no", r["pairs"]]]
        rows += [[a, *v["confidence"], "yes" if v["monotonic"] else "no", v["pairs"]] for a, v in r["per_affect"].items()]
        body = table(["target affect", *[f"w = {w:g}" for w in ws], "monotonic", "pairs"], rows)
        body += line_chart(ws, {"mean": r["mean_confidence"],
                                **{a: v["confidence"] for a, v in r["per_affect"].items()}})
        body += note(f"Judge probability of the target affect for {r['sources']} test faces edited to every other "
                     "affect with the target vector w * one-hot (thick line: the mean over all pairs). ExprGAN's "
                     "claim is that this rises continuously with w; a flat curve means the model ignores the "
                     "vector's magnitude. 'monotonic': no step falls and the last is above the first, a change "
                     f"counting beyond 2 standard errors of its paired mean and beyond {RESOLUTION:g}.")
        return body
