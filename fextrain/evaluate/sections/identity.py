"""Identity: is the edited face still the same person? dlib's descriptor distance between source and edit.

Under 0.6 counts as the same person (dlib's threshold). Faces dlib cannot find, in a source or in an
edit, are counted and shown beside the share: a model whose edits are no longer faces must not look
good by being measured on the few that are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.identity import SAME_PERSON_THRESHOLD, Descriptors, identity_report
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note


def _repeat(desc: Descriptors, k: int) -> Descriptors:
    """Each source descriptor repeated k times, aligned with its k edits."""
    return Descriptors(np.repeat(desc.vectors, k, axis=0), np.repeat(desc.found, k))


@SECTIONS.register("identity")
class IdentitySection(Section):
    title = "Identity preservation"

    def unavailable(self, ctx: EvalContext) -> str | None:
        return None if ctx.options.identity else "identity metrics switched off"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        o, edits, src = ctx.options, ctx.edits, ctx.source_descriptors
        rep = identity_report(_repeat(src, ctx.k), ctx.edit_descriptors, edits.targets, ctx.affects,
                              SAME_PERSON_THRESHOLD)
        return {"split": "test", "sources": int(len(edits.sources)),
                "sources_face_not_found": int((~src.found).sum()),
                "detector": f"dlib HOG on images upscaled to {o.detect_size}px, upsample 0",
                "landmarks": o.landmarks, **rep}

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        found = 1 - r["generated_face_not_found"] / r["pairs"] if r["pairs"] else None
        return [HeadlineItem("identity", f"identity (share < {r['threshold']:g})", r["share_under_threshold"],
                             f"{fmt(r['share_under_threshold'])} (faces found in {fmt(found)} of edits)")]

    def summary(self, r: dict[str, Any]) -> list[str]:
        return [f"identity        share < {r['threshold']}: {fmt(r['share_under_threshold'])}   "
                f"mean distance {fmt(r['mean_distance'])}   measured {r['measured']}/{r['pairs']} pairs",
                f"                no face found in {r['generated_face_not_found']} of {r['pairs']} edits "
                f"and in {r['sources_face_not_found']} of {r['sources']} sources"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        def row(label: str, s: dict) -> list:
            return [label, s["pairs"], s["source_face_not_found"], s["generated_face_not_found"], s["measured"],
                    s["mean_distance"], s["share_under_threshold"]]

        body = table(["target affect", "pairs", "no face in source", "no face in edit", "measured", "mean distance",
                      f"share < {r['threshold']}"],
                     [row("all", r), *[row(a, s) for a, s in r["per_affect"].items()]])
        body += note(f"dlib 128-D descriptor distance between each test source and its edit ({r['detector']}; "
                     f"{r['landmarks']}-point landmarks). Under {r['threshold']} counts as the same person. "
                     f"No face was found in {r['sources_face_not_found']} of {r['sources']} source images; "
                     "pairs where either face is missing are counted, not measured.")
        return body
