"""Augmentation study (ExprGAN's Table 1): does a recognition model trained with generated faces do better
on real ones?

For each N of `--augment N[,N...]`, the judge network (JudgeNet, the same recipe as the judge section) is
trained on the real train split plus N generated images per affect and scored on the real test split,
beside one trained on the real images alone (N = 0). Every judge of the study takes the same number of
updates, those the largest set gets from the judge settings: with the settings' epochs a larger set
would also train longer, and on the demo data a real-only judge given the 1,050 updates of N = 500 rose
from 0.904 to 1.000 on its own, more than the generated faces had seemed to add. The manifest's splits
are identity-disjoint, and every generated image starts from a train face, so no test identity reaches
training. The paper reports 77.78% (N = 0) to 84.72% (10K per class) on Oulu-CASIA.

Generated images: seeded random train faces edited to each affect at full intensity (target one-hot),
labelled with that affect. The paper fed random noise and expression codes to ExprGAN's decoder (new
identities); the uniform editor has no decoder-only entry, so fex edits real train faces. A model whose
edit keeps the expression and redraws the identity (DE-GAN) makes its N images per affect from train faces
*showing* that affect, drawn onto seeded random train identities, labelled with the source's affect.
The sets are nested (the first N of a larger N), so the rows differ only in how many are added. Each
judge is cached under OUT/augment/n<N>/ by a fingerprint of its training images.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from fexdata.errors import EvalError
from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.judge import effective_epochs, load_or_train_judge, resize_uint8
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.scores import classification_report
from fextrain.evaluate.section import SECTIONS, Section, note

_CHUNK = 1024  # images resized or judged at a time (large splits are memory-mapped)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([resize_uint8(images[i:i + _CHUNK], size) for i in range(0, len(images), _CHUNK)])


def real_test_accuracy(ctx: EvalContext, judge: Any) -> dict:
    test = ctx.test
    predicted = np.concatenate([judge.predict(test.image_array(np.arange(i, min(i + _CHUNK, len(test)))))
                                for i in range(0, len(test), _CHUNK)])
    return classification_report(predicted, test.affect_ids, ctx.affects)


@SECTIONS.register("augment")
class AugmentSection(Section):
    title = "Augmentation study (ExprGAN Table 1)"

    @classmethod
    def requested(cls, options: Any) -> bool:
        return bool(options.augment)

    def check(self, ctx: EvalContext) -> None:
        if not ctx.options.augment or min(ctx.options.augment) < 1:
            raise EvalError("the augmentation study needs generated-image counts per affect",
                            hint="give --augment N[,N...] with positive numbers, e.g. --augment 100,1000")

    def generate(self, ctx: EvalContext, per_affect: int) -> tuple[np.ndarray, np.ndarray]:
        """(images at the judge's side, labels): `per_affect` generated faces per affect, affect-major."""
        train, size = ctx.dataset("train"), ctx.options.judge_size
        rng = np.random.default_rng(ctx.options.seed + 7)
        images, labels = [], []
        for a in range(ctx.k):
            if ctx.identity_edit:  # faces showing affect a, drawn onto random train identities
                pool = np.flatnonzero(train.affect_ids == a)
                if len(pool) == 0:
                    continue
                src = rng.choice(pool, per_affect)
                ids = rng.integers(0, len(ctx.editor.identities), per_affect)
            else:  # random train faces edited to affect a
                src, ids = rng.integers(0, len(train), per_affect), None
            for i in range(0, per_affect, _CHUNK):
                part = np.sort(src[i:i + _CHUNK])  # sorted reads from the memory map
                edits = ctx.edit(train.image_array(part), train.affect_ids[part], np.full(len(part), a),
                                 None if ids is None else ids[i:i + _CHUNK])
                images.append(resize_uint8(edits, size))
            labels.append(np.full(per_affect, a, np.int64))
        return np.concatenate(images), np.concatenate(labels)

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        o = ctx.options
        counts = sorted(set(o.augment))
        ctx.say(f"augment: generating {max(counts)} images per affect")
        generated, gen_labels = self.generate(ctx, max(counts))
        train = ctx.dataset("train")
        real = _resized(train.images, o.judge_size)
        settings = o.judge_settings(held_out=False)
        largest = len(real) + len(generated)
        updates = effective_epochs(largest, settings) * -(-largest // settings.batch_size)
        settings = dataclasses.replace(settings, min_steps=updates)  # every set: the largest one's updates
        rows = []
        for n in [0, *counts]:
            keep = np.concatenate([np.flatnonzero(gen_labels == a)[:n] for a in np.unique(gen_labels)])
            images, labels = np.concatenate([real, generated[keep]]), np.concatenate([train.affect_ids, gen_labels[keep]])
            ctx.say(f"augment: judge on {len(real)} real + {len(keep)} generated train images, ~{updates} updates")
            judge, _ = load_or_train_judge(ctx.out_dir / "augment" / f"n{n}", images, labels, ctx.affects,
                                           settings, o.progress, ctx.device)
            rows.append({"per_affect": n, "generated": int(len(keep)), "real": int(len(real)),
                         "test": real_test_accuracy(ctx, judge)})
        base = rows[0]["test"]
        for row in rows:
            row["gain"] = (None if base["accuracy"] is None or row["test"]["accuracy"] is None
                           else row["test"]["accuracy"] - base["accuracy"])
        return {"rows": rows, "test_count": int(len(ctx.test)), "judge_updates": updates,
                "sources": "identity-edited train faces" if ctx.identity_edit else "train faces edited to each affect",
                "paper": {"dataset": "Oulu-CASIA", "per_class": [0, 500, 1000, 5000, 10000],
                          "accuracy": [77.78, 78.47, 81.94, 84.72, 84.72]}}

    def summary(self, r: dict[str, Any]) -> list[str]:
        cells = "  ".join(f"N={row['per_affect']}: {fmt(row['test']['accuracy'])}" for row in r["rows"])
        return [f"augment    real test accuracy of a judge trained with N generated per affect  {cells}"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        rows = [[row["per_affect"], row["generated"], row["real"], row["test"]["accuracy"], row["gain"],
                 row["test"]["count"]] for row in r["rows"]]
        body = table(["generated per affect (N)", "generated images", "real train images", "real test accuracy",
                      "gain over N = 0", "test n"], rows)
        body += note(f"Judge networks trained on the real train split plus N {r['sources']} per affect, scored on "
                     f"the real, identity-disjoint test split; each takes the same ~{r['judge_updates']} updates, so "
                     "the rows differ only in their data. ExprGAN's Table 1 (Oulu-CASIA, 6 classes): 77.78% with "
                     "no synthetic images, 84.72% with 10K per class.")
        return body
