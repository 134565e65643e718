"""`fex eval RUN --manifest M --out DIR`: metrics.json, figures and report.html for a training run."""
from __future__ import annotations

from pathlib import Path

import click

from cli.params import comma_floats
from fextrain.evaluate.options import EvalOptions

_DEFAULTS = EvalOptions()  # the judge's defaults live in EvalOptions; --help shows them


def _counts(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in (value or "").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: write comma-separated whole numbers, e.g. 500,1000,5000") from None
    if any(n < 1 for n in counts):
        raise click.BadParameter("counts must be at least 1 (N = 0 is always reported)")
    return counts


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@click.command("eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--manifest", required=True, type=click.Path(dir_okay=False),
              help="The manifest the run was trained on (its test split is evaluated).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for metrics.json, report.html and figures/  [default: RUN/eval]")
@click.option("--sections", callback=_names, default=None, metavar="A,B",
              help="Run only these sections (comma-separated): judge, edit_strength, sharpness, identity, "
                   "identity_transfer, collapse, colour, outside_judge, paired_truth, frechet, discriminator, figures, "
                   "intensity, augment, fer_folds  [default: all but the opt-in augment and fer_folds, which "
                   "--augment and --fer-folds switch on]")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--max-sources", type=click.IntRange(1), default=100, show_default=True,
              help="Test images edited into every affect (a seeded subset); 0 is not allowed, use --all-sources.")
@click.option("--all-sources", is_flag=True, help="Edit every test image (slow on CPU for big test splits).")
@click.option("--max-table-images", type=click.IntRange(1), default=500, show_default=True,
              help="Real images per split for the discriminator table.")
@click.option("--judge-epochs", type=click.IntRange(1), default=_DEFAULTS.judge_epochs, show_default=True,
              help="Epochs of the judge classifier (cached in OUT/judge and reused while the train split is unchanged).")
@click.option("--judge-min-steps", type=click.IntRange(0), default=_DEFAULTS.judge_min_steps, show_default=True,
              help="At least this many judge updates, however small the train split.")
@click.option("--judge-size", type=click.IntRange(16), default=_DEFAULTS.judge_size, show_default=True, help="Judge input side in pixels.")
@click.option("--judge-holdout", type=click.FloatRange(0, 0.5), default=_DEFAULTS.judge_holdout, show_default=True,
              help="Share of the train identities (of its frames under 3 identities) the judge is scored on while "
                   "it trains, to stop and report on; 0 trains on all of them for every epoch.")
@click.option("--judge-patience", type=click.IntRange(0), default=_DEFAULTS.judge_patience, show_default=True,
              help="Epochs without a better held-out accuracy before the judge stops (0: never early).")
@click.option("--identity/--no-identity", default=True, show_default=True,
              help="dlib identity distances (about 80 ms per image on one core).")
@click.option("--landmarks", type=click.Choice(["5", "68"]), default="5", show_default=True,
              help="dlib shape predictor for the descriptor (68 is trained on iBUG 300-W: non-commercial).")
@click.option("--inception", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Local Inception weights (TorchScript or Inception-v3 state dict) for an Inception FID; nothing is downloaded.")
@click.option("--sweep-affect", default="joy", show_default=True, help="Affect of the intensity-sweep figure.")
@click.option("--sweep", "sweep", default="0,0.25,0.5,0.75,1,1.25,1.5", show_default=True, callback=comma_floats,
              help="Weights of the intensity sweep.")
@click.option("--intensities", default="0.2,0.4,0.6,0.8,1", show_default=True, callback=comma_floats,
              help="Target-vector magnitudes of the intensity check (judge confidence in the target vs intensity).")
@click.option("--intensity-sources", type=click.IntRange(1), default=20, show_default=True,
              help="Test faces the intensity check edits to every other affect at every intensity.")
@click.option("--augment", callback=_counts, default=None, metavar="N[,N...]",
              help="ExprGAN's augmentation study: a judge trained on the real train split plus N generated "
                   "images per affect, real test accuracy per N beside N = 0.")
@click.option("--fer-folds", is_flag=True,
              help="DE-GAN's protocol: train the run's model on all folds but one, for every fold of the manifest "
                   "(`fex build-manifest --folds 10`), and report each held-out fold's recognition accuracy "
                   "beside the plain judge's.")
@click.option("--fer-steps", type=click.IntRange(1), default=None,
              help="Training steps per fold for --fer-folds  [default: the run's own]")
@click.option("--figure-identities", type=click.IntRange(1), default=6, show_default=True,
              help="Identities (rows) in the identity, mixed and intensity figures.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Packed-image cache folder  [default: next to the manifest]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the source subset and the table's target affects.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch  [default: this process's share of the cores that are idle]")
def eval_run(run_dir: str, manifest: str, out: str | None, all_sources: bool, landmarks: str, threads: int | None,
             **opts) -> None:
    """Evaluate a training run (its latest checkpoint, so a run still training works too).

    \b
    fex eval runs/fexgan --manifest data/manifest.parquet
    fex eval runs/fexgan --manifest data/manifest.parquet --out runs/fexgan/eval --device cuda --all-sources
    fex eval runs/fexgan --manifest data/manifest.parquet --sections judge,identity
    fex eval runs/exprgan --manifest data/manifest.parquet --augment 500,1000,5000,10000
    fex eval runs/degan --manifest data/folds.parquet --fer-folds --sections fer_folds

    Prints the headline first (expression, edit strength, sharpness, identity, collapse, colour),
    then each section's summary. Writes OUT/metrics.json (each number with its split, counts and the run's step),
    OUT/report.html (self-contained, headline on top) and OUT/figures/*.png.
    """
    from fexdata.threads import set_torch_threads
    from fextrain.evaluate.run import evaluate_run

    set_torch_threads(threads)

    out_dir = Path(out) if out else Path(run_dir) / "eval"
    if all_sources:
        opts["max_sources"] = None
    evaluation = evaluate_run(run_dir, manifest, out_dir, log=click.echo, landmarks=int(landmarks), **opts)
    click.echo("")
    click.echo(evaluation.summary)
    click.echo("")
    click.echo(f"metrics: {out_dir / 'metrics.json'}")
    click.echo(f"report:  {out_dir / 'report.html'}")
