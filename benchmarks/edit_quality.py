"""Edit quality of every registered model: the `fex eval` headline, mean and spread over seeds (issue 9).

    python benchmarks/edit_quality.py                                  # every model, 3 seeds, 3,000 steps
    python benchmarks/edit_quality.py --models fexgan,fexgan-skip --seeds 1 --steps 300 --sources 30
    python benchmarks/edit_quality.py --models fexgan-skip --ablate "no-mask:arch.mask=false" \
        --ablate "no-skips:arch.skip_divisors=[]" --ablate "no-cycle:loss.lambda_cyc=0"
    python benchmarks/edit_quality.py --preset cpu-64 --seeds 1    # every model at its own working budget

Data: the `fex demo` sample characters (6 identities x 7 affects, 2 s clips at 15 fps), ingested as
`fex demo` does, into OUT/data (reused on the next run), split two ways from the same ingest:

* frame: the demo's within-identity split in time (`--split frame --blocks 4 --guard 0 --ramp 0.8`): the test
  faces are other frames of people the model trained on;
* identity: subject-independent (`--split identity --fractions 0.67,0.33`): the test faces are people
  the model never saw, which is what editing a new person is. One seed (`--identity-seeds`).

Every model trains with its own losses at its cpu-64 preset's narrow widths (BENCH_ARCH, BENCH_LOSS), at --size,
batch --batch, for --steps steps: the same image budget for every model. With `--preset cpu-64` each model trains
at that preset instead, whole (its size, steps, batch, lr, widths and losses, as `fex train --preset cpu-64`), so
one command gives every row at the budget a user gets; results then go to OUT-cpu-64. Then `fextrain.evaluate.evaluate_run`
(the `fex eval` code, sections judge, edit_strength, sharpness, identity, identity_transfer, colour, collapse,
outside_judge and paired_truth) gives the headline:

* expression: the robust judge's accuracy on the edits at their target, over its accuracy on real test faces;
* reach target: share of edits whose source the judge did not already read as the target that it reads as
  the target after the edit (edit strength: a copy scores 0);
* outside judge / real: the same ratio as expression from a pretrained FER2013 classifier outside fex;
* paired truth: how much nearer the person's own real face at the target the edits come (SSIM, against the
  source blurred as much as the edit), as a share of another real frame of that person; below 0 the edits
  take faces away from their real expression (exaggerated or torn), whatever the judges read;
* sharpness: Laplacian variance of the edits over the real test faces';
* identity: share of edits within 0.6 of their source's dlib descriptor, with the share of edits where
  a face is found;
* gray +chroma: channel spread an edit adds to a grayscale source, in levels (a gray face must come back gray);
* collapse: how much edits of different sources differ at one target, relative to the sources;
* DE-GAN, which edits identity and not expression, has its own two columns instead of expression and reach:
  expression kept (share of edits the judge reads as the source's affect) and identity reached (share of
  found edits within 0.6 of the target identity's mean dlib descriptor).

`--real` measures on real people instead (issue 23): benchmarks/real_faces.py's manifests of about 1,350 public
expression photographs (JAFFE, CK+48, KDEF, a Taiwanese corpus; gray and colour; benchmarks/REAL_FACES.md), built
or reused in --real-cache from local clones under --mirrors. Its identity split trains on 132 people and tests on
65 others; its frame split tests on other photos of trained people. Results go to OUT (default
out/bench-edit-quality-real), so the demo's results and judges stay apart.

    python benchmarks/edit_quality.py --real --models fexgan-skip --seeds 1

`--ablate NAME:KEY=JSON[;KEY=JSON...]` adds a row per ablation on the frame split: each model of
--models trained again with those settings changed (`arch.*` or `loss.*`, as `fex train --set`), so
that each part of a model is measured on its own (--ablation-seeds seeds).

One judge per split, trained on that split's train faces and shared by every model and seed (copied
into each evaluation folder, where `fex eval` reuses it). A finished (split, model, seed) keeps its
metrics.json, so an interrupted benchmark resumes where it stopped. Results: OUT/results.json and a
Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from fexdata.sample import RAMP_SHARE
from fextrain.config import TrainConfig, from_dict
from fextrain.evaluate import evaluate_run
from fextrain.models import MODELS
from fextrain.train import train
from models import BENCH_ARCH, BENCH_LOSS  # benchmarks/models.py (this folder is on sys.path): the same widths
from real_faces import DEFAULT_CACHE, DEFAULT_MIRRORS, real_manifests

CLIP_SECONDS = 2.0
# --ramp as `fex demo` (the sample clips peak at RAMP_SHARE of their length): frames carry the intensity
# FExGAN's target condition uses.
RAMP = ["--ramp", f"{RAMP_SHARE * CLIP_SECONDS:g}"]
SPLITS = {
    "frame": ["--split", "frame", "--blocks", "4", "--guard", "0", *RAMP],
    "identity": ["--split", "identity", "--fractions", "0.67,0.33", *RAMP],
}
SECTIONS = ["judge", "edit_strength", "sharpness", "identity", "identity_transfer", "colour", "collapse",
            "outside_judge", "paired_truth"]
COLUMNS = ("expression", "reached", "outside_judge", "paired_truth", "sharpness", "identity", "faces_found",
           "gray_chroma", "collapse", "expression_kept", "identity_reached")


def fex(args: list[str]) -> None:
    from cli.main import main

    status = main.main(args, standalone_mode=False, prog_name="fex")
    if status:
        raise SystemExit(f"fex {' '.join(args)} failed with status {status}")


def demo_manifests(root: Path) -> dict[str, Path]:
    """{split: manifest} over the `fex demo` data, ingested once under root."""
    from fexdata.sample import write_studio_tree

    ingest = root / "ingest"
    if not (root / "ingested").is_file():
        shutil.rmtree(root / "captures", ignore_errors=True)
        write_studio_tree(root / "captures", identities=6, seconds=CLIP_SECONDS, fps=15.0, size=256, layout="clips")
        fex(["ingest", str(root / "captures"), "--out", str(ingest), "--size", "128", "--quiet"])
        (root / "ingested").touch()
    manifests = {}
    for split, options in SPLITS.items():
        manifests[split] = root / f"manifest-{split}.parquet"
        if not manifests[split].is_file():
            fex(["build-manifest", str(ingest), "--out", str(manifests[split]), *options, "--quiet"])
    return manifests


def headline(metrics: dict) -> dict[str, float | None]:
    """The headline's numbers, plus the share of edits where a face was found. An identity editor (DE-GAN)
    has no expression edit: its expression and reach are None, and its own measure fills expression_kept
    and identity_reached instead."""
    h, ident = metrics["headline"], metrics["identity"]
    found = 1 - ident["generated_face_not_found"] / ident["pairs"] if ident["pairs"] else None
    gray = metrics.get("colour", {}).get("gray", {})
    value = lambda key: h.get(key, {}).get("value")  # noqa: E731
    return {"expression": value("expression"), "reached": metrics.get("edit_strength", {}).get("reached_share"),
            "outside_judge": value("outside_judge"), "paired_truth": value("paired_truth"),
            "sharpness": h["sharpness"]["value"],
            "identity": h["identity"]["value"], "faces_found": found,
            "gray_chroma": gray.get("added_chroma") if gray.get("sources") else None,
            "collapse": h["collapse"]["value"], "collapsed": bool(metrics["collapse"]["collapsed"]),
            "expression_kept": value("expression_kept"), "identity_reached": value("identity_reached")}


def parse_ablation(spec: str) -> tuple[str, dict[str, dict]]:
    """'no-mask:arch.mask=false;loss.gamma=1' -> ('no-mask', {'arch': {'mask': False}, 'loss': {'gamma': 1}})."""
    name, _, body = spec.partition(":")
    changes: dict[str, dict] = {"arch": {}, "loss": {}}
    for setting in filter(None, body.split(";")):
        key, _, value = setting.partition("=")
        group, _, field = key.strip().partition(".")
        if group not in changes or not field or not value:
            raise SystemExit(f"--ablate {spec!r}: expected NAME:arch.KEY=JSON or NAME:loss.KEY=JSON")
        changes[group][field] = json.loads(value)
    if not name or not any(changes.values()):
        raise SystemExit(f"--ablate {spec!r}: give a name and at least one setting")
    return name, changes


def measure(model: str, seed: int, manifest: Path, out: Path, judge_cache: Path, args: argparse.Namespace,
            changes: dict[str, dict] | None = None) -> dict:
    """Train one model with one seed (with `changes` to its arch and loss) and evaluate it; reuses a
    finished evaluation."""
    changes = changes or {}
    run, evaluation = out / "run", out / "eval"
    if (evaluation / "metrics.json").is_file():
        return headline(json.loads((evaluation / "metrics.json").read_text()))
    shutil.rmtree(out, ignore_errors=True)
    if args.preset:  # the preset's size, steps, batch, lr, widths and losses, the ablation's changes over them
        steps = MODELS[model].presets[args.preset].steps
        cfg = from_dict({"model": model, "preset": args.preset, "manifest": str(manifest), "out": str(run),
                         "seed": seed, "device": "cpu", "amp": "off", "log_every": max(1, steps // 10),
                         "ckpt_every": 10**9, "sample_every": 0, **changes})
    else:
        cfg = TrainConfig(manifest=str(manifest), out=str(run), model=model, size=args.size, steps=args.steps,
                          batch=args.batch, seed=seed, device="cpu", amp="off", log_every=max(1, args.steps // 10),
                          ckpt_every=10**9, sample_every=0,
                          arch={**BENCH_ARCH.get(model, {}), **changes.get("arch", {})},
                          loss={**BENCH_LOSS.get(model, {}), **changes.get("loss", {})} or None)
    started = time.perf_counter()
    train(cfg, progress=False, log=lambda msg: None)
    trained = time.perf_counter() - started
    if judge_cache.is_dir():
        shutil.copytree(judge_cache, evaluation / "judge")
    result = evaluate_run(run, manifest, evaluation, sections=SECTIONS, device="cpu", max_sources=args.sources,
                          judge_epochs=args.judge_epochs,
                          judge_min_steps=args.judge_min_steps, progress=False)
    if not judge_cache.is_dir():  # the first evaluation of a split trained it; a concurrent one may have too
        staging = judge_cache.with_name(f".{judge_cache.name}.{os.getpid()}")
        shutil.copytree(evaluation / "judge", staging)
        try:
            staging.rename(judge_cache)
        except OSError:
            shutil.rmtree(staging)
    print(f"   train {trained:.0f} s\n" + "\n".join("   " + line for line in result.summary.splitlines()[:6]),
          flush=True)
    return headline(result.metrics)


def spread(values: list[float | None]) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "–"
    return f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="default out/bench-edit-quality, or out/bench-edit-quality-real with --real")
    ap.add_argument("--real", action="store_true", help="real people's photos instead of the demo characters")
    ap.add_argument("--real-cache", type=Path, default=DEFAULT_CACHE, help="--real: images, ingests, manifests")
    ap.add_argument("--mirrors", type=Path, default=DEFAULT_MIRRORS, help="--real: folder of the sources' clones")
    ap.add_argument("--models", default=",".join(sorted(MODELS)), help="comma-separated registry names")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per model on the frame split")
    ap.add_argument("--identity-seeds", type=int, default=1, help="seeds per model on the identity split (0: skip)")
    ap.add_argument("--preset", choices=sorted({p for cls in MODELS.values() for p in cls.presets}),
                    help="train each model at this preset of its own (size, steps, batch, lr, widths, losses) "
                         "instead of --size, --steps, --batch and BENCH_ARCH")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--sources", type=int, default=100, help="test faces edited into every affect")
    ap.add_argument("--judge-epochs", type=int, default=15)
    ap.add_argument("--judge-min-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--ablate", action="append", default=[], metavar="NAME:KEY=JSON[;KEY=JSON]",
                    help="a frame-split row with these arch./loss. settings changed (repeatable)")
    ap.add_argument("--ablation-seeds", type=int, default=1)
    ap.add_argument("--from-seed", type=int, default=0,
                    help="skip seeds below this one (to run seeds in parallel processes; a last run without "
                         "it gathers every finished seed into the table)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.out = args.out or Path("out/bench-edit-quality" + ("-real" if args.real else "")
                                + (f"-{args.preset}" if args.preset else ""))
    manifests = (real_manifests(args.real_cache, args.mirrors, report=False) if args.real
                 else demo_manifests(args.out / "data"))
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(sorted(MODELS))}")
    lacking = [m for m in models if args.preset and args.preset not in MODELS[m].presets]
    if lacking:
        raise SystemExit(f"--preset {args.preset}: model(s) {', '.join(lacking)} have no such preset")
    ablations = dict(parse_ablation(spec) for spec in args.ablate)
    plan = [("frame", args.seeds, "", {}), ("identity", args.identity_seeds, "", {})]
    plan += [("frame", args.ablation_seeds, name, changes) for name, changes in ablations.items()]
    print(f"{'real faces' if args.real else 'demo characters'}: " + ", ".join(f"{k} {v}" for k, v in manifests.items()))
    budgets = ([f"{m} {p.steps} steps x batch {p.batch} at {p.size} px" for m in models
                for p in [MODELS[m].presets[args.preset]]] if args.preset
               else [f"{', '.join(models)}: {args.steps} steps x batch {args.batch} at {args.size} px"])
    print(f"{'; '.join(budgets)}{f' (--preset {args.preset})' if args.preset else ''}; {args.sources} test "
          f"sources x every affect, judge {args.judge_epochs} epochs, {args.threads} thread(s)", flush=True)

    results: dict[str, dict[str, list[dict]]] = {}
    for split, seeds, ablation, changes in plan:
        for model in models:
            row_name = f"{model} [{ablation}]" if ablation else model
            for seed in range(args.from_seed, seeds):
                print(f"== {split} split, {row_name}, seed {seed}", flush=True)
                out = args.out / split / (f"{model}--{ablation}" if ablation else model) / f"seed{seed}"
                row = measure(model, seed, manifests[split], out, args.out / split / "judge", args, changes)
                results.setdefault(split, {}).setdefault(row_name, []).append(row)
                print(f"   {row}", flush=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results}, indent=2) + "\n")

    print(f"\ntotal {time.perf_counter() - started:.0f} s; mean ± sd over seeds\n")
    print("| split | model | seeds | expression (judge / real) | reach target | outside judge / real | paired truth | "
          "sharpness | identity < 0.6 | faces found | gray +chroma | collapse (edit / source spread) | "
          "DE-GAN: expression kept | DE-GAN: identity reached |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for split, by_model in results.items():
        for model, rows in by_model.items():
            collapsed = sum(r["collapsed"] for r in rows)
            cells = [spread([r[c] for r in rows]) for c in COLUMNS]
            cells[COLUMNS.index("collapse")] += f" ({collapsed} collapsed)" if collapsed else ""
            print(f"| {split} | {model} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
