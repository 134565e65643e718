"""Judge: does an edit show its target affect, in the eyes of a classifier that never saw the generator?

The judge (`fextrain.evaluate.judge`) learns on the real train split only, with the degradations a
generator produces. Reported: its accuracy on the real test faces clean and blurred by sigma = 1 px (at
64 px, scaled with the side), which shows whether softness changes its verdict, and its accuracy on the
edits at their target affect. The headline is the ratio of the two accuracies: 1.0 means the edits read
as clearly as real faces do.

How far the judge can be trusted is reported beside it: its accuracy on the train identities it was held
out from (it stopped training on them) and on the real test faces, each with a 95% Wilson interval, and
its calibration on the real test faces (expected calibration error, 10 bins). A judge that reads the
edits of an affect better than real faces of that affect, beyond the sampling noise, is rewarding
something the generator paints rather than the expression (one prototype face per affect, say): the
headline's expression item is flagged with those affects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.degrade import blur_scale, blur_uint8
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.scores import (above_real, classification_report, expected_calibration_error, ratio,
                                      wilson_interval)
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note

BLUR_CHECK_AT_64 = 1.0  # sigma (px at 64 px) of the blurred copy of the real test faces
_CHUNK = 1024  # test faces blurred and judged at a time (a large test split is memory-mapped)
ECE_BINS = 10
ABOVE_REAL_SE = 2.0  # edits beat real faces of an affect by more than this many standard errors ...
ABOVE_REAL_MARGIN = 0.05  # ... and by more than this share: the judge may reward a prototype


def _interval(score: dict) -> str:
    ci = score.get("interval_95")
    return f"[95% {ci[0]:.3f}-{ci[1]:.3f}]" if ci else ""


def _confusion(conf: dict) -> str:
    names = conf["rows_true_cols_predicted"]
    rows = [[f"true {n}", *counts] for n, counts in zip(names, conf["counts"])]
    return table(["", *[f"pred {n}" for n in names]], rows)


@SECTIONS.register("judge")
class JudgeSection(Section):
    title = "Judge classifier"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        fitted, test, edits = ctx.judge, ctx.test, ctx.edits
        judge, s = fitted.judge, fitted.judge.settings
        sigma = BLUR_CHECK_AT_64 * blur_scale(ctx.size)
        blurred = []
        for start in range(0, len(test), _CHUNK):
            faces = test.image_array(np.arange(start, min(start + _CHUNK, len(test))))
            blurred.append(judge.predict(blur_uint8(faces, sigma)))
        real_probs = ctx.test_probs
        real = classification_report(real_probs.argmax(1), test.affect_ids, ctx.affects)
        real_blurred = classification_report(np.concatenate(blurred), test.affect_ids, ctx.affects)
        generated = classification_report(ctx.edit_probs.argmax(1), edits.targets, ctx.affects)
        above = {a: above_real(generated["per_affect"][a], real["per_affect"][a], ABOVE_REAL_SE, ABOVE_REAL_MARGIN)
                 for a in ctx.affects}
        training = judge.training
        held = dict(training.get("held_out") or {})
        if held.get("count"):
            held["interval_95"] = wilson_interval(held["correct"], held["count"])
        calibration = expected_calibration_error(real_probs, test.affect_ids, ECE_BINS)
        return {
            "model": f"JudgeNet (ResNet, 3 basic-block stages, width {s.width}) at {s.size}x{s.size}",
            "augmentation": ("flips, shifts and generator degradations (blur, down-up sampling, noise, colour, JPEG)"
                             if s.degrade else "flips and shifts only"),
            "trained_on": {"split": "train", "count": fitted.train_count, "fitted_on": training.get("count"),
                           "epochs": fitted.epochs, "epochs_run": training.get("epochs_run"),
                           "best_epoch": training.get("best_epoch"), "patience": s.patience,
                           "reused_from_cache": fitted.reused},
            "held_out": {"split": "train", **held},
            "real": {"split": "test", **real, "interval_95": wilson_interval(real["correct"], real["count"])},
            "calibration": {"split": "test", "measure": f"expected calibration error, {ECE_BINS} equal-width bins of "
                            "top-class confidence", **calibration},
            "real_blurred": {"split": "test", "sigma_px": sigma, **real_blurred},
            "generated": {"split": "test", "sources": int(len(edits.sources)), **generated},
            "generated_over_real": ratio(generated["accuracy"], real["accuracy"]),
            "above_real": {"rule": f"edits at target read right more often than real faces of the affect, by over "
                           f"{ABOVE_REAL_SE:g} standard errors (Agresti-Caffo) and over {ABOVE_REAL_MARGIN:g}",
                           "affects": [a for a, v in above.items() if v and v["above"]], "per_affect": above},
        }

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        value, above = r["generated_over_real"], r["above_real"]["affects"]
        flag = (f"edits score above real faces: judge may reward a prototype ({', '.join(above)})" if above else
                None)
        return [HeadlineItem("expression", "expression", value,
                             f"{fmt(value)} ({fmt(r['generated']['accuracy'])} at target / "
                             f"{fmt(r['real']['accuracy'])} on real test faces {_interval(r['real'])})", flag)]

    def summary(self, r: dict[str, Any]) -> list[str]:
        real, blur, gen, held, cal = r["real"], r["real_blurred"], r["generated"], r["held_out"], r["calibration"]
        lines = [f"judge accuracy  real test {fmt(real['accuracy'])} {_interval(real)} (n={real['count']}), blurred "
                 f"{fmt(blur['accuracy'])} (sigma {blur['sigma_px']:g} px)   generated at target "
                 f"{fmt(gen['accuracy'])} (n={gen['count']})",
                 f"                held-out train {held.get('by', 'none')} {fmt(held.get('accuracy'))} "
                 f"{_interval(held)} (n={held.get('count', 0)})   calibration error on real test {fmt(cal['value'])}"]
        if r["above_real"]["affects"]:
            lines.append(f"                edits read better than real faces: {', '.join(r['above_real']['affects'])}")
        return lines

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        real, blur, gen = r["real"], r["real_blurred"], r["generated"]
        held, cal = r["held_out"], r["calibration"]
        rows = [[f"held-out train {held.get('by', 'none')} (labelled affect)", "train", held.get("accuracy"),
                 held.get("correct"), held.get("count", 0), _interval(held)],
                ["real (labelled affect)", real["split"], real["accuracy"], real["correct"], real["count"],
                 _interval(real)],
                [f"real, blurred sigma {blur['sigma_px']:g} px", blur["split"], blur["accuracy"], blur["correct"],
                 blur["count"], ""],
                ["generated (target affect)", gen["split"], gen["accuracy"], gen["correct"], gen["count"], ""]]
        body = table(["images", "split", "accuracy", "correct", "count", "interval"], rows)
        above = r["above_real"]
        body += table(["affect", "real accuracy", "real n", "blurred accuracy", "generated accuracy", "generated n",
                       "edits above real"],
                      [[a, real["per_affect"][a]["accuracy"], real["per_affect"][a]["count"],
                        blur["per_affect"][a]["accuracy"], gen["per_affect"][a]["accuracy"],
                        gen["per_affect"][a]["count"], a in above["affects"]] for a in real["per_affect"]])
        body += note(f"Edits above real: {above['rule']}. An affect marked yes is read more easily on the edits than "
                     "on real faces: the judge may be rewarding a look the generator repeats (a prototype).")
        body += "<h3>Calibration on real test images</h3>" + table(
            ["top-class confidence", "count", "mean confidence", "accuracy"],
            [[f"{b['low']:.1f}-{b['high']:.1f}", b["count"], b["confidence"], b["accuracy"]] for b in cal["bins"]])
        body += note(f"{cal['measure']}: {fmt(cal['value'])} (0: its confidence is its accuracy).")
        body += "<h3>Confusion on real test images</h3>" + _confusion(real["confusion"])
        body += "<h3>Confusion on generated images</h3>" + _confusion(gen["confusion"])
        t = r["trained_on"]
        body += note(f"{r['model']}, trained on {t['fitted_on']} of the {t['count']} real train images only "
                     f"({r['augmentation']}); {held.get('count', 0)} held out by {held.get('by', 'none')}"
                     f"{' (frames of people it trains on: optimistic)' if held.get('by') == 'frames' else ''}, "
                     f"best epoch {t['best_epoch']} of {t['epochs_run']} run (at most {t['epochs']}, patience "
                     f"{t['patience']}). A judge that holds its accuracy "
                     "on blurred faces does not read softness as an expression. The StarGAN report's ResNet judge "
                     "reached 93.54% on its real test data.")
        return body
