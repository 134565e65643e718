"""Edit strength: how far each edit moves its source toward the target, in the judge's eyes.

Sharpness and identity come free to a generator that returns its source (a mask-based editor that keeps
the face did exactly that on real people it had not seen), so the headline needs a number that a copy
cannot pass. For every (source, target) pair this section takes the judge's probability of the target
on the edit minus on the source (`gain`, mean over pairs), and, among the pairs whose source the judge
does not already read as the target, the share whose edit it reads as the target (`reached`). A copy
scores exactly 0 on both; a generator that returns a real face of the target scores what the judge
reads on real faces. Under NEAR_COPY_GAIN the run is flagged NEAR-COPY, and every other headline item is
qualified with it: a copy's perfect sharpness and identity must not read as a success.

The mean absolute pixel change (0-255 levels) of the edits is reported beside it, since a judge that
misses a real change would also read low.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note

NEAR_COPY_GAIN = 0.1  # under it the edits barely move the judge: the run reads as a near-copy
NEAR_COPY = "NEAR-COPY"


def edit_strength(source_probs: np.ndarray, edit_probs: np.ndarray, targets: np.ndarray, k: int) -> dict[str, Any]:
    """Gain and reached share of source-major edits (`edit_probs[i * k + a]`: source i edited to a)."""
    rows = np.arange(len(targets))
    src = np.repeat(source_probs, k, axis=0)  # each source's probabilities beside each of its k edits
    gain = edit_probs[rows, targets] - src[rows, targets]
    movable = src.argmax(1) != targets  # the judge does not already read the source as the target
    reached = edit_probs.argmax(1) == targets
    return {"pairs": int(len(targets)), "gain": float(gain.mean()) if len(gain) else None,
            "movable": int(movable.sum()), "reached": int((reached & movable).sum()),
            "reached_share": float(reached[movable].mean()) if movable.any() else None}


@SECTIONS.register("edit_strength")
class EditStrengthSection(Section):
    title = "Edit strength"

    def unavailable(self, ctx: EvalContext) -> str | None:
        if ctx.identity_edit:
            return f"{ctx.editor.model} keeps the face's expression and redraws its identity: no expression edit"
        return None

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        edits, k = ctx.edits, ctx.k
        overall = edit_strength(ctx.source_probs, ctx.edit_probs, edits.targets, k)
        per_affect = {}
        for a, name in enumerate(ctx.affects):
            rows = np.flatnonzero(edits.targets == a)
            per_affect[name] = edit_strength(ctx.source_probs, ctx.edit_probs[rows], edits.targets[rows], 1)
        change = np.abs(edits.images.astype(np.int16) - np.repeat(edits.sources, k, axis=0).astype(np.int16))
        return {
            "split": "test", "sources": int(len(edits.sources)), **overall, "per_affect": per_affect,
            "pixel_change": float(change.mean()) if change.size else None,
            "threshold": NEAR_COPY_GAIN,
            "near_copy": overall["gain"] is not None and overall["gain"] < NEAR_COPY_GAIN,
        }

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        return [HeadlineItem("edit_strength", "edit strength", r["gain"],
                             f"{'NEAR-COPY ' if r['near_copy'] else ''}{fmt(r['gain'])} (judge's target probability "
                             f"gain; {fmt(r['reached_share'])} of {r['movable']} edits reach their target)",
                             NEAR_COPY if r["near_copy"] else None)]

    def amend(self, r: dict[str, Any], items: list[HeadlineItem]) -> list[HeadlineItem]:
        """A near-copy qualifies every other headline number: they are what the source already had."""
        if not r["near_copy"]:
            return items
        return [item if item.name == "edit_strength" else item.qualified(f"copy-like: edit strength {fmt(r['gain'])}",
                                                                         NEAR_COPY) for item in items]

    def summary(self, r: dict[str, Any]) -> list[str]:
        flag = "  NEAR-COPY: the edits barely change what the judge reads" if r["near_copy"] else ""
        return [f"edit strength   target probability gain {fmt(r['gain'])}   reached target {fmt(r['reached_share'])} "
                f"({r['reached']}/{r['movable']})   mean pixel change {fmt(r['pixel_change'])} levels{flag}"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        def row(label: str, s: dict) -> list:
            return [label, s["pairs"], s["gain"], s["movable"], s["reached"], s["reached_share"]]

        body = table(["target affect", "pairs", "target probability gain", "sources not at target", "reached target",
                      "share reached"], [row("all", r), *[row(a, s) for a, s in r["per_affect"].items()]])
        body += note(f"The judge's probability of the target on the edit minus on its source (mean over pairs), and "
                     f"the share of sources the judge does not already read as the target whose edit it reads as the "
                     f"target. A copy of the source scores 0 on both; under {r['threshold']:g} the run is flagged "
                     f"NEAR-COPY and the headline's other numbers are marked copy-like. Mean absolute pixel change of "
                     f"the edits: {fmt(r['pixel_change'])} levels (0-255).")
        return body
