"""Identity transfer: DE-GAN's own measure (issue 24). Its edits redraw a face's expression on a chosen train
identity, so the judge at a target affect means nothing for it; what matters is whether the edit keeps the
source's expression and takes on the target identity.

Every test source (the generated set's, so `--max-sources` holds) is drawn onto every train identity (a seeded
MAX_TARGETS of them when there are more). Reported:

* expression kept: the share of edits the judge reads as the source's labelled affect, and its ratio to the
  judge's accuracy on those same real sources (a copy of the source scores ratio 1);
* identity reached: an edit reaches its target when its dlib descriptor is within 0.6 of the mean descriptor
  of the target identity's real train faces (the faces the model learnt to draw). The share is over edits in
  which dlib finds a face, beside the share found. A copy of the source scores what the sources already
  score (`baseline`), so the share among pairs whose source was not already within 0.6 (`moved`) is given too:
  a copy scores 0 on it.

The issue's targets (expression kept >= 0.8; identity reached in >= 80% of edits, an edit without a face
reaching no one) are pass/fail flags. For such a model this section's two numbers replace the judge's
expression-at-target in the headline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext, subset
from fextrain.evaluate.identity import SAME_PERSON_THRESHOLD, descriptor_distance
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.scores import ratio
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note

MAX_TARGETS = 8  # target identities (a seeded subset beyond it): edits are sources x targets, each described by dlib
REFERENCE_FACES = 16  # seeded train faces per target identity whose mean descriptor is its reference
EXPRESSION_TARGET = 0.8  # issue 24: the judge reads the source's affect on at least 80% of the edits
IDENTITY_TARGET = 0.8  # issue 24: at least 80% of the edits within 0.6 of the target identity
INDISTINCT = 0.5  # sources already within 0.6 of their target this often: dlib does not tell the identities apart


def _share(hits: np.ndarray, among: np.ndarray) -> float | None:
    return float(hits[among].mean()) if among.any() else None


def transfer_scores(kept: np.ndarray, edit_found: np.ndarray, edit_dist: np.ndarray, source_dist: np.ndarray,
                    threshold: float = SAME_PERSON_THRESHOLD) -> dict[str, Any]:
    """Per-pair verdicts -> counts and shares. `kept`: the judge reads the edit as the source's affect;
    `edit_found`: dlib found a face in the edit; `edit_dist` / `source_dist`: distance of the edit / of its
    source to the target identity's reference (NaN where there is no face, in the image or in every reference
    face: such a pair reaches nothing)."""
    source_found = ~np.isnan(source_dist)
    reached = edit_found & (np.nan_to_num(edit_dist, nan=np.inf) < threshold)
    already = source_found & (np.nan_to_num(source_dist, nan=np.inf) < threshold)
    away = source_found & ~already & edit_found  # the source is not the target yet: a copy cannot reach it
    pairs = int(len(kept))
    return {
        "pairs": pairs, "expression_kept": int(kept.sum()),
        "expression_kept_share": float(kept.mean()) if pairs else None,
        "faces_found": int(edit_found.sum()), "faces_found_share": float(edit_found.mean()) if pairs else None,
        "reached": int(reached.sum()), "reached_share": _share(reached, edit_found),
        "reached_of_all": float(reached.mean()) if pairs else None,
        "sources_measured": int(source_found.sum()), "baseline": int(already.sum()),
        "baseline_share": _share(already, source_found),
        "away": int(away.sum()), "moved": int((reached & away).sum()), "moved_share": _share(reached, away),
        "mean_distance": float(np.nanmean(edit_dist)) if (~np.isnan(edit_dist)).any() else None,
    }


@SECTIONS.register("identity_transfer")
class IdentityTransferSection(Section):
    title = "Identity transfer (identity-editing models)"

    def unavailable(self, ctx: EvalContext) -> str | None:
        if not ctx.identity_edit:
            return "not an identity-editing model"
        if not ctx.options.identity:
            return "identity metrics switched off"
        if not self._targets(ctx)[0]:
            return (f"none of the run's {len(ctx.editor.identities)} identities has train faces in this manifest: "
                    "no reference to reach")
        return None

    @staticmethod
    def _targets(ctx: EvalContext) -> tuple[list[int], dict[int, np.ndarray]]:
        """(target identity ids into `editor.identities`, id -> its rows in the manifest's train split)."""
        train = ctx.dataset("train")
        names = np.asarray(train.identities, dtype=object)[train.identity_ids]  # manifest-wide ids -> names
        rows = {i: np.flatnonzero(names == name) for i, name in enumerate(ctx.editor.identities)}
        present = [i for i, r in rows.items() if len(r)]
        chosen = [present[j] for j in subset(len(present), MAX_TARGETS, ctx.options.seed)]
        return chosen, {i: rows[i] for i in chosen}

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        o, edits, train = ctx.options, ctx.edits, ctx.dataset("train")
        targets, rows = self._targets(ctx)
        n, t = len(edits.sources), len(targets)
        src_desc, src_aff = ctx.source_descriptors, edits.source_affects
        ctx.say(f"identity transfer: {n} test sources x {t} train identities = {n * t} edits, and at most "
                f"{REFERENCE_FACES} reference faces per identity, through dlib")
        # target-major [t, n] verdicts; one target at a time keeps n edits in memory, not n * t
        kept, found = np.zeros((t, n), bool), np.zeros((t, n), bool)
        edit_dist, source_dist = np.full((t, n), np.nan), np.full((t, n), np.nan)
        per_identity = {}
        for j, i in enumerate(targets):
            # the reference: the mean descriptor of a seeded few of the identity's real train faces
            pick = rows[i][subset(len(rows[i]), REFERENCE_FACES, o.seed)]
            ref = ctx.describer.describe(train.image_array(pick))
            ref_vec = ref.vectors[ref.found].mean(0) if ref.found.any() else np.full(128, np.nan)
            # every source drawn onto identity i; the affect vectors ask for the source's own affect
            images = ctx.edit(edits.sources, src_aff, src_aff, identities=np.full(n, i, np.int64))
            kept[j] = ctx.judge.judge.probabilities(images).argmax(1) == src_aff
            desc = ctx.describer.describe(images, progress=o.progress)
            found[j], edit_dist[j] = desc.found, descriptor_distance(desc.vectors, ref_vec)
            source_dist[j] = descriptor_distance(src_desc.vectors, ref_vec)
            per_identity[ctx.editor.identities[i]] = {
                "reference_faces": int(len(pick)), "reference_faces_found": int(ref.found.sum()),
                **transfer_scores(kept[j], found[j], edit_dist[j], source_dist[j])}
        overall = transfer_scores(kept.ravel(), found.ravel(), edit_dist.ravel(), source_dist.ravel())
        source_accuracy = float((ctx.source_probs.argmax(1) == src_aff).mean()) if n else None
        kept_share, reached_all = overall["expression_kept_share"], overall["reached_of_all"]
        return {
            "split": "test", "sources": n, "identities": len(ctx.editor.identities), "targets": t,
            "threshold": SAME_PERSON_THRESHOLD, "reference": f"mean dlib descriptor of at most {REFERENCE_FACES} "
                                                             "train faces of the target identity",
            **overall,
            "source_accuracy": source_accuracy,
            "expression_kept_over_real": ratio(kept_share, source_accuracy),
            "expression_target": EXPRESSION_TARGET, "identity_target": IDENTITY_TARGET,
            "expression_pass": kept_share is not None and kept_share >= EXPRESSION_TARGET,
            "identity_pass": reached_all is not None and reached_all >= IDENTITY_TARGET,
            # sources that already look like their targets leave `reached` saying nothing of the edit
            "indistinct": overall["baseline_share"] is not None and overall["baseline_share"] >= INDISTINCT,
            "per_identity": per_identity,
        }

    @staticmethod
    def _verdict(passed: bool, target: float) -> str:
        return f"pass (>= {target:g})" if passed else f"FAIL (< {target:g})"

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        indistinct = (f"sources already within {r['threshold']:g} of the targets ({fmt(r['baseline_share'])}): "
                      "dlib does not tell these identities apart") if r["indistinct"] else None
        id_flag = "; ".join(f for f in [None if r["identity_pass"] else "FAIL", indistinct] if f) or None
        return [
            HeadlineItem("expression_kept", "expression kept", r["expression_kept_share"],
                         f"{fmt(r['expression_kept_share'])} of edits read as the source's affect "
                         f"({fmt(r['expression_kept_over_real'])} of the judge's {fmt(r['source_accuracy'])} on the "
                         f"sources) {self._verdict(r['expression_pass'], r['expression_target'])}",
                         None if r["expression_pass"] else "FAIL"),
            HeadlineItem("identity_reached", f"identity reached (< {r['threshold']:g})", r["reached_share"],
                         f"{fmt(r['reached_share'])} of found edits ({fmt(r['reached_of_all'])} of all; faces found in "
                         f"{fmt(r['faces_found_share'])}; moved {fmt(r['moved_share'])}, sources already there "
                         f"{fmt(r['baseline_share'])}) {self._verdict(r['identity_pass'], r['identity_target'])}",
                         id_flag),
        ]

    def amend(self, r: dict[str, Any], items: list[HeadlineItem]) -> list[HeadlineItem]:
        """The judge's expression at a target affect is chance by design for an identity editor: this section's two
        numbers take its place."""
        names = ("expression_kept", "identity_reached")
        mine, rest = [i for i in items if i.name in names], [i for i in items if i.name not in names]
        at = next((j for j, item in enumerate(rest) if item.name == "expression"), None)
        if at is None:
            return items
        return [*rest[:at], *mine, *rest[at + 1:]]

    def summary(self, r: dict[str, Any]) -> list[str]:
        lines = [f"identity transfer  {r['sources']} sources x {r['targets']} of {r['identities']} train identities = "
                 f"{r['pairs']} edits",
                 f"                expression kept {fmt(r['expression_kept_share'])} (ratio "
                 f"{fmt(r['expression_kept_over_real'])} to {fmt(r['source_accuracy'])} on the sources)   "
                 f"{self._verdict(r['expression_pass'], r['expression_target'])}",
                 f"                identity reached {fmt(r['reached_share'])} of {r['faces_found']} found edits "
                 f"({fmt(r['reached_of_all'])} of all)   moved {fmt(r['moved_share'])} ({r['moved']}/{r['away']})   "
                 f"sources already there {fmt(r['baseline_share'])}   "
                 f"{self._verdict(r['identity_pass'], r['identity_target'])}"]
        if r["indistinct"]:
            lines.append(f"                sources already within {r['threshold']:g} of their target identity in "
                         f"{fmt(r['baseline_share'])} of pairs: dlib does not tell these identities apart")
        return lines

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        def row(label: str, s: dict, refs: str) -> list:
            return [label, refs, s["pairs"], s["expression_kept_share"], s["faces_found_share"], s["reached_share"],
                    s["baseline_share"], s["moved_share"], s["mean_distance"]]

        th = f"{r['threshold']:g}"
        body = table(["target identity", "reference faces (found)", "edits", "expression kept", "faces found",
                      f"reached (< {th})", "sources already there", "moved", "mean distance"],
                     [row("all", r, ""), *[row(name, s, f"{s['reference_faces']} ({s['reference_faces_found']})")
                                           for name, s in r["per_identity"].items()]])
        body += note(
            f"Each of {r['sources']} test sources drawn onto {r['targets']} of the run's {r['identities']} train "
            f"identities. Expression kept: the judge reads the edit as the source's labelled affect "
            f"({fmt(r['expression_kept_over_real'])} of its accuracy {fmt(r['source_accuracy'])} on the same real "
            f"sources): {self._verdict(r['expression_pass'], r['expression_target'])}. Reached: the edit's dlib "
            f"descriptor is within {th} of the {r['reference']}, over edits in which a face was found; "
            f"{fmt(r['reached_of_all'])} of all edits (a faceless edit reaches no one): "
            f"{self._verdict(r['identity_pass'], r['identity_target'])}. Sources already there: sources within {th} "
            f"of the target before any edit (a copy scores this). Moved: reached among pairs whose source was not "
            f"(a copy scores 0).")
        if r["indistinct"]:
            body += note(f"The sources are already within {th} of their target identity in "
                         f"{fmt(r['baseline_share'])} of pairs: dlib does not tell these identities apart, so reaching "
                         "them says little (so it is with the sample characters, restyled copies of one photo).")
        return body
