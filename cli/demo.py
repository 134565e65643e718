"""`fex demo`: the whole pipeline on built-in sample data, through the same commands a user runs.

Sample characters are rendered from a public-domain photo (fexdata.sample), written as a
MetaHuman-studio capture tree of H.264 clips, then `fex ingest` (real dlib detection, tracking
and FFHQ alignment), `fex build-manifest` (FExGAN-Meta's within-identity frame split in time
blocks), a short CPU-sized `fex train` of warp-refine, `fex eval`, and `fex edit` of one clip and one photo
(shown first in the report, before and after at full resolution). Every stage resumes, so a second run only
redoes what is missing.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click

# The demo's model: warp-refine, the best on unseen real people by measurement (docs/demo.md,
# benchmarks/REAL_FACES.md), at its cpu-64 preset's narrow widths so the default run fits in 10 CPU minutes.
# `--full` keeps the model's own widths and takes the preset's other settings (the expression prior, no residual).
MODEL = "warp-refine"
DEMO_STEPS = 1200  # the default --steps: the whole demo measured 9 min 4 s on 2 cores (docs/demo.md)


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", default="out/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo writes; the report is OUT/report.html.")
@click.option("--characters", type=click.IntRange(3, 10), default=6, show_default=True,
              help="Synthetic studio characters (identities).")
@click.option("--seconds", type=click.FloatRange(0.2), default=2.0, show_default=True,
              help="Length of each character x affect clip.")
@click.option("--fps", type=click.FloatRange(1), default=15.0, show_default=True, help="Clip frame rate.")
@click.option("--steps", type=click.IntRange(1), default=DEMO_STEPS, show_default=True, help="Training steps.")
@click.option("--batch", type=click.IntRange(2), default=16, show_default=True, help="Training batch size.")
@click.option("--size", type=click.Choice(["64", "128"]), default="64", show_default=True,
              help="Training resolution.")
@click.option("--full", is_flag=True, help="Train the model at its full widths instead of the narrow demo ones.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--smallest", is_flag=True,
              help="Tiny settings for a smoke test (3 characters, short clips, a few steps, a small judge).")
@click.pass_context
def demo(ctx: click.Context, out: str, characters: int, seconds: float, fps: float, steps: int, batch: int,
         size: str, full: bool, device: str, smallest: bool) -> None:
    """Run ingest -> build-manifest -> train -> eval -> edit on built-in sample characters.

    \b
    fex demo                      # under 10 minutes on a 2-core CPU
    fex demo --smallest           # a smoke test of every stage
    fex demo --device cuda --steps 5000 --size 128 --full
    """
    from cli.main import main as fex
    from fexdata.errors import FexError
    from fexdata.paths import atomic_write_text, read_json_or_empty
    from fexdata.images import write_png
    from fexdata.sample import CHARACTERS, RAMP_SHARE, sample_photo, write_studio_tree
    from fextrain.edit.report import add_to_report

    if smallest:
        characters, seconds, fps, steps, batch = 3, 0.6, 10.0, 4, 8
    root = Path(out)
    captures, ingested, run = root / "captures", root / "ingest", root / "run"
    manifest = root / "manifest.parquet"
    started = time.perf_counter()

    def stage(title: str, args: list[str]) -> None:
        click.secho(f"\n== {title}: fex {' '.join(args)}", bold=True)
        status = fex.main(args, standalone_mode=False, prog_name="fex")
        if status:  # the stage already printed its `error:` and hint (cli.main): stop with its status
            ctx.exit(status)

    # Every stage resumes, so an OUT made with other data or model settings would mix two demos: refuse
    # it. More --steps is fine: training resumes up to the new total.
    settings = {"characters": characters, "seconds": seconds, "fps": fps, "size": size, "full": full}
    settings_file = root / "demo.json"
    if settings_file.exists() and json.loads(settings_file.read_text()) != settings:
        raise FexError(f"{root} holds a demo made with other settings ({settings_file})",
                       hint=f"use another --out, or delete {root}")
    # An older demo's run (fexgan) cannot be resumed as this model; its data can be reused.
    trained = read_json_or_empty(run / "config.json").get("model")
    if trained not in (None, MODEL):
        raise FexError(f"{run} holds a {trained} run of an older demo; the demo now trains {MODEL}",
                       hint=f"delete {run} to train {MODEL} on the same data, or use another --out")
    if not settings_file.exists():
        click.secho(f"== writing {characters} sample characters x 7 affects ({seconds:g} s clips at {fps:g} fps) "
                    f"to {captures}", bold=True)
        shutil.rmtree(captures, ignore_errors=True)  # a run killed while writing them left them partial
        write_studio_tree(captures, identities=characters, seconds=seconds, fps=fps, size=256, layout="clips")
        atomic_write_text(settings_file, json.dumps(settings, indent=2) + "\n")
    stage("ingest", ["ingest", str(captures), "--out", str(ingested), "--size", "128"])
    # The sample clips reach their full expression at 40 % of their length (fexdata.sample.clip_intensity),
    # so each frame's intensity is known and recorded (models that scale their target by it, FExGAN, use it).
    stage("build-manifest", ["build-manifest", str(ingested), "--out", str(manifest), "--split", "frame",
                             "--blocks", "4", "--guard", "0", "--ramp", f"{RAMP_SHARE * seconds:g}"])
    # The preset's widths (the model's own with --full) under the demo's steps, size and batch, on a CPU and a GPU.
    train_args = ["train", "--manifest", str(manifest), "--out", str(run), "--model", MODEL,
                  "--preset", "paper" if full else "cpu-64", "--size", size, "--steps", str(steps),
                  "--batch", str(batch), "--device", device, "--sample-every", "0", "--log-every", "10",
                  *(_full_settings() if full else [])]
    if (run / "checkpoints" / "last.pt").exists():
        train_args.append("--resume")
    stage("train", train_args)
    eval_args = ["eval", str(run), "--manifest", str(manifest), "--out", str(root), "--device", device]
    if smallest:
        eval_args += ["--judge-epochs", "1", "--judge-min-steps", "20", "--max-sources", "8",
                      "--max-table-images", "32", "--judge-size", "32"]
    stage("eval", eval_args)
    # Finally a user's view: one studio clip and one photo edited by the model (--paste auto: warp-refine's flow
    # moves the full-resolution pixels), shown first in the report.
    photo = root / "photo.png"
    if not photo.exists():
        write_png(photo, sample_photo())
    clip = captures / CHARACTERS[0] / "neutral.mp4"
    stage("edit", ["edit", str(run), str(photo), str(clip), "--to", "joy,surprise", "--out", str(root / "edit"),
                   "--device", device])
    add_to_report(root / "report.html", root / "edit")
    click.secho(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Report: {root / 'report.html'}",
                fg="green", bold=True)


def _full_settings() -> list[str]:
    """`--set` options giving the paper preset every arch setting of the cpu-64 one but its widths."""
    from fextrain.models import MODELS

    arch = MODELS[MODEL].presets["cpu-64"].arch
    return [f"--set=arch.{key}={json.dumps(value)}" for key, value in arch.items() if key not in ("widths", "d_widths")]
