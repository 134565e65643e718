"""FExGAN's Table 1, for models whose discriminator has an affect head (AC-GAN style).

For each split: *binary* is the share of real images called real (real/fake logit > 0) or of generated
images called fake; *multi* is the share whose affect head's argmax is the image's affect (the labelled
affect for real images, the requested target affect for generated ones). The fakes are each real image
edited to a uniformly drawn target affect. The section applies only when the loaded model can classify
(`editor.classify` returns logits); a discriminator is not an independent judge, since it trained
against this very generator.

The binary columns need a real/fake decision per image, which only some critics give (a WGAN critic's
score, as StarGAN's, has no threshold). They are filled when the model offers `real_fake(x) -> logits
[B]` (> 0: real; FExGAN's sigmoid head, FExGAN-skip's hinge score, DE-GAN's "fake" class), and left
out of the table otherwise, with the reason under it. Every head runs in eval mode, so D's BatchNorm
uses its running statistics: the binary columns show what those statistics do to unseen faces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fextrain.evaluate.context import EvalContext, subset, to_model_input
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.scores import accuracy
from fextrain.evaluate.section import SECTIONS, Section, note

HEADER = ["split", "real binary", "real multi", "fake binary", "fake multi", "real n", "fake n"]
BINARY = {"real binary", "fake binary"}
NO_THRESHOLD = ("its discriminator has no real/fake output with a threshold (a Wasserstein critic's score has "
                "none), so the binary columns are left out")


def discriminator_scores(real_logits: np.ndarray | None, real_affect_logits: np.ndarray, real_affects: np.ndarray,
                         fake_logits: np.ndarray | None, fake_affect_logits: np.ndarray, fake_targets: np.ndarray
                         ) -> dict:
    """{'real': {'binary', 'multi'}, 'fake': {'binary', 'multi'}}, each an accuracy() dict (binary None
    when the model gives no real/fake logit)."""
    def binary(logits: np.ndarray | None, real: bool) -> dict | None:
        return None if logits is None else accuracy(np.asarray(logits) > 0, np.full(len(logits), real))

    return {
        "real": {"binary": binary(real_logits, True),
                 "multi": accuracy(np.asarray(real_affect_logits).argmax(1), real_affects)},
        "fake": {"binary": binary(fake_logits, False),
                 "multi": accuracy(np.asarray(fake_affect_logits).argmax(1), fake_targets)},
    }


def _table(splits: dict[str, dict]) -> tuple[list[str], list[list]]:
    """(header, rows) of Table 1; without real/fake logits the binary columns are left out."""
    def acc(entry: dict | None) -> float | None:
        return None if entry is None else entry["accuracy"]

    rows = [[split, acc(s["real"]["binary"]), acc(s["real"]["multi"]), acc(s["fake"]["binary"]),
             acc(s["fake"]["multi"]), s["real"]["multi"]["count"], s["fake"]["multi"]["count"]]
            for split, s in splits.items()]
    if all(s["real"]["binary"] is not None for s in splits.values()):
        return HEADER, rows
    keep = [i for i, h in enumerate(HEADER) if h not in BINARY]
    return [HEADER[i] for i in keep], [[row[i] for i in keep] for row in rows]


@SECTIONS.register("discriminator")
class DiscriminatorSection(Section):
    title = "Discriminator accuracy"

    def unavailable(self, ctx: EvalContext) -> str | None:
        probe = torch.zeros(1, 3, ctx.size, ctx.size)
        with torch.no_grad():
            if ctx.editor.classify(probe) is None:
                return (f"the loaded {ctx.editor.model} model has no discriminator with an affect head "
                        "(or only its exported generator was loaded)")
        return None

    @torch.no_grad()
    def _heads(self, ctx: EvalContext, images: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray]:
        """(real/fake logits or None, affect logits) for float NCHW images, in batches."""
        rf, aff = [], []
        for start in range(0, len(images), ctx.options.batch_size):
            x = images[start : start + ctx.options.batch_size].to(ctx.device)
            aff.append(ctx.editor.classify(x).float().cpu())
            logits = ctx.editor.real_fake(x)
            if logits is not None:
                rf.append(logits.reshape(-1).float().cpu())
        return (torch.cat(rf).numpy() if rf else None), torch.cat(aff).numpy()

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        o, k = ctx.options, ctx.k
        rng = np.random.default_rng(o.seed + 1)
        per_split = {}
        for split in ctx.splits:
            ds = ctx.dataset(split)
            idx = subset(len(ds), o.max_table_images, o.seed)
            imgs, aff = ds.image_array(idx), ds.affect_ids[idx]
            tgt = rng.integers(0, k, size=len(idx))
            fake = ctx.edit(imgs, aff, tgt)
            real_rf, real_aff = self._heads(ctx, to_model_input(imgs, ctx.size))
            fake_rf, fake_aff = self._heads(ctx, to_model_input(fake))
            per_split[split] = discriminator_scores(real_rf, real_aff, aff, fake_rf, fake_aff, tgt)
        out = {"fake": "each real image edited to a uniformly drawn target affect", "splits": per_split}
        if any(s["real"]["binary"] is None for s in per_split.values()):
            out["binary"] = f"the {ctx.editor.model} model gives no real/fake logit (real_fake): {NO_THRESHOLD}"
        return out

    def summary(self, r: dict[str, Any]) -> list[str]:
        header, rows = _table(r["splits"])
        lines = [f"{'discriminator':<14}" + "".join(f"{h:>13}" for h in header[1:])]
        lines += [f"  {row[0]:<12}" + "".join(f"{fmt(v):>13}" for v in row[1:]) for row in rows]
        return lines + ([f"  ({r['binary']})"] if "binary" in r else [])

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        header, rows = _table(r["splits"])
        why = f" No binary columns: {r['binary']}." if "binary" in r else ""
        return table(header, rows) + note(
            "As FExGAN Table 1: binary = real called real / generated called fake; multi = affect head right "
            f"(labelled affect for real, target affect for generated). {r['fake']}.{why}")
