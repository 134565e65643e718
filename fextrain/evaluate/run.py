"""`evaluate_run`: load a model, run the selected sections on one manifest, write one folder.

    OUT/metrics.json        schema_version, headline, run, then one entry per section (sections.SECTIONS):
                            every number with its split, its counts and the run's step
    OUT/report.html         the headline on top, the run, then each section's own tables and figures
    OUT/figures/*.png       identities, mixed expressions, intensity sweep
    OUT/judge/              the cached judge classifier (reused while the manifest's train split is unchanged)

The model is reached only through its uniform editor (`edit`, `classify`), so every registered model is
evaluated the same way; sections that need more (a discriminator's affect head) say so when it is absent.
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from fexdata.dataset import crop_side
from fexdata.errors import EvalError
from fexdata.manifest import read_manifest
from fexdata.paths import atomic_write_text
from fextrain.checkpoint import CHECKPOINT, GENERATOR
from fextrain.device import resolve_device
from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.options import EvalOptions
from fextrain.evaluate.report import table, write_report
from fextrain.evaluate.section import HeadlineItem, Section, note
from fextrain.evaluate.sections import SECTIONS
from fextrain.models import load_editor

# 2: schema_version, headline, sharpness, collapse, judge.real_blurred / generated_over_real /
#    augmentation, run.model / run.config / run.sections; figures moved from run.figures to figures.files.
# 3: edit_strength and colour sections (headline items too); judge.held_out / calibration / above_real /
#    real.interval_95, judge.trained_on.fitted_on / epochs_run / best_epoch / patience.
# 4: identity_transfer section (headline items for identity editors).
# 5: paired_truth section (a headline item; it qualifies the expression items of edits that move away).
SCHEMA_VERSION = 5


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # what metrics.json holds
    summary: str  # the terminal summary, headline first


def select_sections(names: Sequence[str] | None) -> list[str]:
    """Registry names to run, in registry order (all of them when `names` is None)."""
    if names is None:
        return list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise EvalError(f"unknown section(s) {', '.join(unknown) or '(none given)'}",
                        hint=SECTIONS.hint.format(known=", ".join(SECTIONS)))
    return [n for n in SECTIONS if n in names]


def check_inputs(run_dir: Path, manifest: Path) -> tuple[dict[str, Any], list[str], pd.Series]:
    """Fail early and clearly: no checkpoint, no test split. Returns (manifest meta, splits present, crop sizes)."""
    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: no such run directory", hint="give the --out folder of a `fex train` run")
    if not (run_dir / CHECKPOINT).is_file() and not (run_dir / GENERATOR).is_file():
        raise EvalError(f"{run_dir}: no checkpoint yet ({CHECKPOINT} or {GENERATOR})",
                        hint="a run writes its first one after `ckpt_every` steps or when it stops; wait for it")
    df, meta = read_manifest(manifest, columns=["split", "crop_size"])
    splits = [s for s in ("train", "val", "test") if (df["split"] == s).any()]
    if "test" not in splits:
        raise EvalError(f"{manifest}: no test split (splits here: {', '.join(splits) or 'none'})",
                        hint="rebuild it with a test share, e.g. `fex build-manifest ... --fractions 0.8,0.1,0.1`")
    if "train" not in splits:
        raise EvalError(f"{manifest}: no train split; the judge classifier is trained on it",
                        hint="evaluate with the manifest the run was trained on")
    return meta, splits, df["crop_size"]


def _flat(config: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    """[key, value] rows of a nested config, keys dotted as `--set` takes them."""
    rows = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append([f"{prefix}{key}", json.dumps(value) if isinstance(value, (list, dict)) else value])
    return rows


def _headline_html(items: list[HeadlineItem]) -> str:
    flagged = ' class="flag"'
    cells = "".join(f"<td{flagged if h.flag else ''}>{html.escape(h.shown)}</td>" for h in items)
    head = "".join(f"<th>{html.escape(h.label)}</th>" for h in items)
    return (f"<table><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table>" +
            note("Read together: no one of these numbers can be gamed alone (a copy of the source keeps identity "
                 "and sharpness perfectly but has no edit strength, a blurred or collapsed face can still read as "
                 "its target, an exaggerated or torn face can please both judges while paired truth sees it move "
                 "away from the person's real face)."))


def _headline_text(items: list[HeadlineItem]) -> list[str]:
    width = max((len(h.label) for h in items), default=0)
    return ["headline", *[f"  {h.label:<{width}}  {h.shown}" for h in items]] if items else []


@dataclass
class _Rendered:
    """One section's result and its renderings."""

    section: Section
    result: dict[str, Any]
    block: tuple[str, str]  # (heading, HTML) in report.html
    lines: list[str]  # terminal summary
    headline: list[HeadlineItem]


def _run_section(section: Section, ctx: EvalContext) -> _Rendered:
    reason = section.unavailable(ctx)
    if reason is not None:
        return _Rendered(section, {"step": ctx.step, "available": False, "reason": reason},
                         (section.title, note(reason)), [f"{section.name}: {reason}"], [])
    result = {"step": ctx.step, **section.compute(ctx)}
    return _Rendered(section, result, (section.title, section.html(result, ctx.out_dir)), section.summary(result),
                     section.headline(result))


def _write(ctx: EvalContext, run: dict[str, Any], done: list[_Rendered]) -> Evaluation:
    """metrics.json and report.html (headline, run, then each section), and the terminal summary."""
    headline = [item for r in done for item in r.headline]
    for r in done:  # after every item is in: a section may qualify the others' (edit strength: NEAR-COPY)
        if r.result.get("available", True):
            headline = r.section.amend(r.result, headline)
    metrics = {"schema_version": SCHEMA_VERSION, "headline": {h.name: h.as_json() for h in headline}, "run": run,
               **{r.section.name: r.result for r in done}}
    atomic_write_text(ctx.out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    run_table = table(["run", "model", "step", "manifest", "image size", "affects"],
                      [[run["run_dir"], run["model"], run["step"], run["manifest"], run["image_size"],
                        ", ".join(run["affects"])]])
    config = "<details><summary>config</summary>" + table(["key", "value"], _flat(run["config"])) + "</details>"
    write_report(ctx.out_dir / "report.html", f"fex eval: {Path(run['run_dir']).name} ({run['model']}) at step "
                 f"{ctx.step}", [("Headline", _headline_html(headline)), ("Run", run_table + config),
                                 *[r.block for r in done]], metrics)
    summary = [*_headline_text(headline), "", f"{run['model']} step {ctx.step}  ({ctx.size}px, {ctx.k} affects)", "",
               *[line for r in done for line in r.lines]]
    return Evaluation(metrics, "\n".join(summary))


def evaluate_run(
    run_dir: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    sections: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    **opts: Any,
) -> Evaluation:
    """Evaluate the latest checkpoint of `run_dir` on `manifest`; write OUT and return what it wrote.

    `sections` are registry names (all when None); `opts` are EvalOptions fields (e.g. max_sources=20).
    """
    o = EvalOptions.from_kwargs(**opts)
    names = select_sections(sections)
    if sections is None:  # opt-in studies join when their option asks for them
        names = [n for n in names if SECTIONS[n].requested(o)]
    say = log or (lambda msg: None)
    run_dir, manifest, out_dir = Path(run_dir), Path(manifest), Path(out_dir)
    started = time.time()
    meta, splits, crop_sizes = check_inputs(run_dir, manifest)
    device = resolve_device(o.device, EvalError)
    editor = load_editor(run_dir, device)
    if list(editor.affects) != list(meta["affects"]):
        raise EvalError(f"{manifest}: its affects ({', '.join(meta['affects'])}) differ from the run's "
                        f"({', '.join(editor.affects)})", hint="evaluate with the manifest the run was trained on")
    # the rule `fex train` applies: the model never sees enlarged crops
    crop_side(manifest, crop_sizes, int(editor.size),
              hint=f"evaluate on crops of {editor.size} px or more, e.g. the manifest the run was trained on "
                   "(or re-ingest with a larger `fex ingest --size`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = EvalContext(editor, manifest, splits, o, out_dir, device, say)
    chosen = [SECTIONS[n]() for n in names]
    for section in chosen:  # every option checked before the first section spends minutes
        section.check(ctx)
    say(f"run {run_dir}: {editor.model} at step {ctx.step}; manifest {manifest}; device {device}; "
        f"sections {', '.join(names)}")
    done = [_run_section(section, ctx) for section in chosen]
    run = {"run_dir": str(run_dir), "step": ctx.step, "model": editor.model, "manifest": str(manifest),
           "affects": list(ctx.affects), "image_size": ctx.size, "device": device, "sections": names,
           "seconds": round(time.time() - started, 1), "config": editor.config}
    return _write(ctx, run, done)


__all__ = ["Evaluation", "EvalOptions", "evaluate_run", "select_sections"]
