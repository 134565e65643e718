"""Fréchet distances between the real test faces and the edits, each in a named feature space.

Judge features always; dlib descriptors when identity metrics are on; Inception only from a local
weights file the user passes (`--inception`). None of them is comparable with a published FID.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fextrain.evaluate.context import EvalContext, to_model_input
from fextrain.evaluate.frechet import InceptionFeatures, frechet_entry
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import SECTIONS, Section, note


@SECTIONS.register("frechet")
class FrechetSection(Section):
    title = "Fréchet distances"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        judge, test, edits = ctx.judge.judge, ctx.test, ctx.edits
        out: dict[str, Any] = {
            "judge_features": frechet_entry(f"judge pooled features ({judge.net.feature_dim}-D)",
                                            judge.features(test.images), judge.features(edits.images), "test"),
        }
        if ctx.describer is not None:
            # Real side: the descriptors of the test sources (the same images the edits start from).
            src, gen = ctx.source_descriptors, ctx.edit_descriptors
            out["dlib_descriptors"] = frechet_entry("dlib 128-D face descriptors", src.vectors[src.found],
                                                    gen.vectors[gen.found], "test")
        if ctx.options.inception:
            inception = InceptionFeatures(ctx.options.inception, ctx.device)
            out["inception"] = frechet_entry(f"Inception ({Path(ctx.options.inception).name})",
                                             inception(to_model_input(test.images, ctx.size)),
                                             inception(to_model_input(edits.images)), "test")
        out["note"] = "not comparable with Inception FID: each value is a distance within its own feature space"
        return out

    @staticmethod
    def _entries(r: dict[str, Any]) -> dict[str, dict]:
        return {name: e for name, e in r.items() if isinstance(e, dict)}

    def summary(self, r: dict[str, Any]) -> list[str]:
        return [f"frechet {name:<16} {fmt(e['value'])}   (real n={e['real_count']}, generated n={e['generated_count']})"
                for name, e in self._entries(r).items()]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        rows = [[name, e["space"], e["value"], e["real_split"], e["real_count"], e["generated_count"]]
                for name, e in self._entries(r).items()]
        return table(["distance", "feature space", "value", "real split", "real n", "generated n"], rows) + note(r["note"])
