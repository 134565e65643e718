"""Judge: does an edit show its target affect, in the eyes of a classifier that never saw the generator?

The judge (`fextrain.evaluate.judge`) learns on the real train split only, with the degradations a
generator produces. Reported: its accuracy on the real test faces clean and blurred by sigma = 1 px (at
64 px, scaled with the side), which shows whether softness changes its verdict, and its accuracy on the
edits at their target affect. The headline is the ratio of the two accuracies: 1.0 means the edits read
as clearly as real faces do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.degrade import blur_scale, blur_uint8
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.scores import classification_report, ratio
from fextrain.evaluate.section import HeadlineItem, Section, note

BLUR_CHECK_AT_64 = 1.0  # sigma (px at 64 px) of the blurred copy of the real test faces
_CHUNK = 1024  # test faces blurred and judged at a time (a large test split is memory-mapped)


def _confusion(conf: dict) -> str:
    names = conf["rows_true_cols_predicted"]
    rows = [[f"true {n}", *counts] for n, counts in zip(names, conf["counts"])]
    return table(["", *[f"pred {n}" for n in names]], rows)


class JudgeSection(Section):
    name = "judge"
    title = "Judge classifier"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        fitted, test, edits = ctx.judge, ctx.test, ctx.edits
        judge, s = fitted.judge, fitted.judge.settings
        sigma = BLUR_CHECK_AT_64 * blur_scale(ctx.size)
        clean, blurred = [], []
        for start in range(0, len(test), _CHUNK):
            faces = test.image_array(np.arange(start, min(start + _CHUNK, len(test))))
            clean.append(judge.predict(faces))
            blurred.append(judge.predict(blur_uint8(faces, sigma)))
        real = classification_report(np.concatenate(clean), test.affect_ids, ctx.affects)
        real_blurred = classification_report(np.concatenate(blurred), test.affect_ids, ctx.affects)
        generated = classification_report(judge.predict(edits.images), edits.targets, ctx.affects)
        return {
            "model": f"JudgeNet (ResNet, 3 basic-block stages, width {s.width}) at {s.size}x{s.size}",
            "augmentation": ("flips, shifts and generator degradations (blur, down-up sampling, noise, colour, JPEG)"
                             if s.degrade else "flips and shifts only"),
            "trained_on": {"split": "train", "count": fitted.train_count, "epochs": fitted.epochs,
                           "reused_from_cache": fitted.reused},
            "real": {"split": "test", **real},
            "real_blurred": {"split": "test", "sigma_px": sigma, **real_blurred},
            "generated": {"split": "test", "sources": int(len(edits.sources)), **generated},
            "generated_over_real": ratio(generated["accuracy"], real["accuracy"]),
        }

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        value = r["generated_over_real"]
        return [HeadlineItem("expression", "expression", value,
                             f"{fmt(value)} ({fmt(r['generated']['accuracy'])} at target / "
                             f"{fmt(r['real']['accuracy'])} on real test faces)")]

    def summary(self, r: dict[str, Any]) -> list[str]:
        real, blur, gen = r["real"], r["real_blurred"], r["generated"]
        return [f"judge accuracy  real test {fmt(real['accuracy'])} (n={real['count']}), blurred "
                f"{fmt(blur['accuracy'])} (sigma {blur['sigma_px']:g} px)   generated at target "
                f"{fmt(gen['accuracy'])} (n={gen['count']})"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        real, blur, gen = r["real"], r["real_blurred"], r["generated"]
        rows = [["real (labelled affect)", real["split"], real["accuracy"], real["correct"], real["count"]],
                [f"real, blurred sigma {blur['sigma_px']:g} px", blur["split"], blur["accuracy"], blur["correct"],
                 blur["count"]],
                ["generated (target affect)", gen["split"], gen["accuracy"], gen["correct"], gen["count"]]]
        body = table(["images", "split", "accuracy", "correct", "count"], rows)
        body += table(["affect", "real accuracy", "real n", "blurred accuracy", "generated accuracy", "generated n"],
                      [[a, real["per_affect"][a]["accuracy"], real["per_affect"][a]["count"],
                        blur["per_affect"][a]["accuracy"], gen["per_affect"][a]["accuracy"],
                        gen["per_affect"][a]["count"]] for a in real["per_affect"]])
        body += "<h3>Confusion on real test images</h3>" + _confusion(real["confusion"])
        body += "<h3>Confusion on generated images</h3>" + _confusion(gen["confusion"])
        body += note(f"{r['model']}, trained on {r['trained_on']['count']} real train images only "
                     f"({r['trained_on']['epochs']} epochs; {r['augmentation']}). A judge that holds its accuracy "
                     "on blurred faces does not read softness as an expression. The StarGAN report's ResNet judge "
                     "reached 93.54% on its real test data.")
        return body
