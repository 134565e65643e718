"""Figures: the papers' qualitative grids, made through the model's `edit` (so every model gets them).

* identities: one neutral test face per identity turned into every affect (FExGAN figure 5);
* mixed expressions: two affects switched on together, next to each alone (FExGAN figure 6);
* intensity sweep: one affect's weight from 0 to beyond 1.

FExGAN's random-samples figure (its decoder on random latents) is not made: it needs a decoder alone,
which a model's uniform `edit(x, source_vec, target_vec)` does not offer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fexdata.dataset import FaceDataset
from fexdata.errors import EvalError
from fexdata.images import write_png
from fextrain.evaluate.context import EvalContext
from fextrain.models import one_hot
from fextrain.evaluate.grids import image_grid
from fextrain.evaluate.report import embedded_png
from fextrain.evaluate.section import SECTIONS, Section

MIXED_PAIRS: tuple[tuple[str, str], ...] = (("anger", "sadness"), ("joy", "disgust"), ("fear", "surprise"))


def figure_sources(ds: FaceDataset, limit: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One source per identity of the split: its first neutral image, else its first image.

    Returns (images, affect ids, row labels); the label names the affect when it is not neutral.
    """
    neutral = ds.affects.index("neutral") if "neutral" in ds.affects else -1
    names = ds.frame["identity"].astype(str).tolist()
    picks, labels = [], []
    for ident in np.unique(ds.identity_ids)[:limit]:
        rows = np.flatnonzero(ds.identity_ids == ident)
        neutral_rows = rows[ds.affect_ids[rows] == neutral]
        i = int(neutral_rows[0] if len(neutral_rows) else rows[0])
        picks.append(i)
        name = names[i].split(":", 1)[-1]
        labels.append(name if ds.affect_ids[i] == neutral else f"{name} ({ds.affects[ds.affect_ids[i]]})")
    idx = np.asarray(picks, dtype=np.int64)
    return ds.image_array(idx), ds.affect_ids[idx], labels


def _sweep_grid(ctx: EvalContext, sources: np.ndarray, source_affects: np.ndarray, labels: list[str],
                targets: list[torch.Tensor], headers: list[str], identities: list[int] | None = None) -> np.ndarray:
    """Per source row: the source, then its edit to each target vector (vectors may be mixed or scaled), or,
    with `identities` (an identity editor), the source drawn as each of those train identities."""
    m = len(targets)
    ids = None if identities is None else np.tile(np.asarray(identities, np.int64), len(sources))
    edits = ctx.edit(np.repeat(sources, m, axis=0), np.repeat(source_affects, m),
                     torch.stack(targets).repeat(len(sources), 1), identities=ids)
    rows = [[sources[i], *edits[i * m : (i + 1) * m]] for i in range(len(sources))]
    return image_grid(rows, col_labels=["source", *headers], row_labels=labels, cell=ctx.options.cell)


@SECTIONS.register("figures")
class FiguresSection(Section):
    title = "Figures"

    def check(self, ctx: EvalContext) -> None:
        if ctx.options.sweep_affect not in ctx.affects:
            raise EvalError(f"--sweep-affect {ctx.options.sweep_affect!r} is not one of the run's affects",
                            hint=f"choose one of: {', '.join(ctx.affects)}")

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        o, k, affects = ctx.options, ctx.k, list(ctx.affects)
        ctx.say("figures")
        sources, source_affects, labels = figure_sources(ctx.test, o.figure_identities)
        unit = {a: one_hot(torch.tensor([i]), k)[0] for i, a in enumerate(affects)}
        # (file, caption, target vectors, column headers, train identities per column or None)
        if ctx.identity_edit:  # DE-GAN ignores affect vectors: its figure is who, not which expression
            grids = [("identities.png", "Each test identity's source drawn as train identities (its own "
                      "expression kept)", *self._identity_columns(ctx, unit[affects[0]]))]
        else:
            grids = [("identities.png", "Each test identity's neutral source turned into every affect",
                      [unit[a] for a in affects], affects, None)]
            pairs = [(a, b) for a, b in MIXED_PAIRS if a in unit and b in unit]
            if pairs:
                grids.append(("mixed.png", "Mixed expressions: two affects at weight 1 each, next to each alone",
                              [v for a, b in pairs for v in (unit[a], unit[b], unit[a] + unit[b])],
                              [h for a, b in pairs for h in (a, b, f"{a}+{b}")], None))
            a = o.sweep_affect
            grids.append(("intensity.png", f"Intensity sweep: weight of '{a}' from {min(o.sweep):g} to "
                          f"{max(o.sweep):g}", [w * unit[a] for w in o.sweep], [f"{w:g}*{a}" for w in o.sweep], None))
        files = []
        for name, caption, targets, headers, identities in grids:
            write_png(ctx.out_dir / "figures" / name,
                      _sweep_grid(ctx, sources, source_affects, labels, targets, headers, identities))
            files.append({"file": f"figures/{name}", "caption": caption})
        return {"files": files}

    @staticmethod
    def _identity_columns(ctx: EvalContext, vector: torch.Tensor) -> tuple[list, list[str], list[int]]:
        """(target vectors, headers, identity ids) of up to as many train identities as the figure has rows;
        `vector` fills the target of every column (the model ignores it, the edit call wants one)."""
        names = list(ctx.editor.identities)
        ids = np.linspace(0, len(names) - 1, min(len(names), max(ctx.options.figure_identities, 2))).round()
        ids = sorted({int(i) for i in ids})
        return [vector] * len(ids), [names[i].split(":", 1)[-1] for i in ids], ids

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        return "".join(embedded_png(out_dir / f["file"], f["caption"]) for f in r["files"])
