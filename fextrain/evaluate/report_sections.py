"""metrics.json -> the report's HTML tables and the terminal summary: one reading of the numbers for both."""
from __future__ import annotations

import html
from typing import Any

from fextrain.evaluate.discriminator_table import TABLE_HEADER, table_rows
from fextrain.evaluate.report import fmt, table


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _confusion(conf: dict) -> str:
    names = conf["rows_true_cols_predicted"]
    rows = [[f"true {n}", *counts] for n, counts in zip(names, conf["counts"])]
    return table(["", *[f"pred {n}" for n in names]], rows)


def report_sections(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, HTML) pairs for report.html, in reading order."""
    run, d, j, idn, fr = m["run"], m["discriminator"], m["judge"], m["identity"], m["frechet"]
    out = [("Run", table(["run", "step", "manifest", "image size", "affects"],
                         [[run["run_dir"], run["step"], run["manifest"], run["image_size"], ", ".join(run["affects"])]]))]

    if d.get("available", True):
        body = table(TABLE_HEADER, table_rows(d["splits"]))
        body += _note("As FExGAN Table 1: binary = real called real / generated called fake; multi = affect head "
                      "right (labelled affect for real, target affect for generated). " + d["fake"] + ".")
    else:
        body = _note(d["reason"])
    out.append(("Discriminator accuracy", body))

    real, gen = j["real"], j["generated"]
    body = table(["images", "split", "accuracy", "correct", "count"],
                 [["real (labelled affect)", real["split"], real["accuracy"], real["correct"], real["count"]],
                  ["generated (target affect)", gen["split"], gen["accuracy"], gen["correct"], gen["count"]]])
    body += table(["affect", "real accuracy", "real n", "generated accuracy", "generated n"],
                  [[a, real["per_affect"][a]["accuracy"], real["per_affect"][a]["count"],
                    gen["per_affect"][a]["accuracy"], gen["per_affect"][a]["count"]] for a in real["per_affect"]])
    body += "<h3>Confusion on real test images</h3>" + _confusion(real["confusion"])
    body += "<h3>Confusion on generated images</h3>" + _confusion(gen["confusion"])
    body += _note(f"{j['model']}, trained on {j['trained_on']['count']} real train images only "
                  f"({j['trained_on']['epochs']} epochs). The StarGAN report's ResNet judge reached 93.54% on its "
                  "real test data.")
    out.append(("Judge classifier", body))

    if idn.get("available", True):
        rows = [["all", idn["pairs"], idn["source_face_not_found"], idn["generated_face_not_found"], idn["measured"],
                 idn["mean_distance"], idn["share_under_threshold"]]]
        rows += [[a, s["pairs"], s["source_face_not_found"], s["generated_face_not_found"], s["measured"],
                  s["mean_distance"], s["share_under_threshold"]] for a, s in idn["per_affect"].items()]
        body = table(["target affect", "pairs", "no face in source", "no face in edit", "measured", "mean distance",
                      f"share < {idn['threshold']}"], rows)
        body += _note(f"dlib 128-D descriptor distance between each test source and its edit ({idn['detector']}; "
                      f"{idn['landmarks']}-point landmarks). Under {idn['threshold']} counts as the same person. "
                      f"No face was found in {idn['sources_face_not_found']} of {idn['sources']} source images; "
                      "pairs where either face is missing are counted, not measured.")
    else:
        body = _note(idn["reason"])
    out.append(("Identity preservation", body))

    rows = [[name, e["space"], e["value"], e["real_split"], e["real_count"], e["generated_count"]]
            for name, e in fr.items() if isinstance(e, dict)]
    body = table(["distance", "feature space", "value", "real split", "real n", "generated n"], rows)
    body += _note(fr["note"])
    out.append(("Fréchet distances", body))
    return out


def summary_text(m: dict[str, Any]) -> str:
    """A short plain-text table for the terminal."""
    d, j, idn, fr = m["discriminator"], m["judge"], m["identity"], m["frechet"]
    lines = [f"step {m['run']['step']}  ({m['run']['image_size']}px, {len(m['run']['affects'])} affects)", ""]
    if d.get("available", True):
        lines.append(f"{'discriminator':<14}" + "".join(f"{h:>13}" for h in TABLE_HEADER[1:]))
        for row in table_rows(d["splits"]):
            lines.append(f"  {row[0]:<12}" + "".join(f"{fmt(v):>13}" for v in row[1:]))
    else:
        lines.append(f"discriminator: {d['reason']}")
    r, g = j["real"], j["generated"]
    lines += ["", f"judge accuracy  real test {fmt(r['accuracy'])} (n={r['count']})   "
                  f"generated at target {fmt(g['accuracy'])} (n={g['count']})"]
    if idn.get("available", True):
        lines.append(f"identity        share < {idn['threshold']}: {fmt(idn['share_under_threshold'])}   "
                     f"mean distance {fmt(idn['mean_distance'])}   measured {idn['measured']}/{idn['pairs']} pairs")
        lines.append(f"                no face found in {idn['generated_face_not_found']} of {idn['pairs']} edits "
                     f"and in {idn['sources_face_not_found']} of {idn['sources']} sources")
    for name, e in fr.items():
        if isinstance(e, dict):
            lines.append(f"frechet {name:<16} {fmt(e['value'])}   (real n={e['real_count']}, "
                         f"generated n={e['generated_count']})")
    return "\n".join(lines)
