"""`fex train`: train a registered expression GAN (fextrain.models.MODELS) on a manifest into a run directory."""
from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from fextrain.config import TrainConfig
from fextrain.models import MODELS

_DEFAULTS = TrainConfig()
# Every preset name some model declares ("paper", the model's own defaults, is every model's).
_PRESETS = ("auto", "paper", *sorted({name for cls in MODELS.values() for name in cls.presets}))


def _paper(key: str) -> str:
    """'fexgan 32, stargan 16': each model's paper value of a setting left unset."""
    return ", ".join(f"{name} {getattr(cls.defaults, key):g}" for name, cls in sorted(MODELS.items()))


def _models_help() -> str:
    """Each model's summary, and under it each preset: its size, steps and batch, and what it was measured to do."""
    width = max(map(len, MODELS)) + 1
    lines = []
    for name, cls in sorted(MODELS.items()):
        lines.append(f"{name:<{width}} {cls.summary}")
        if cls.presets:
            lines += [" " * (width + 1) + f"--preset {key}: {p.size} px, {p.steps} steps, batch {p.batch}"
                      + (f"; {p.note}" if p.note else "") for key, p in cls.presets.items()]
    return "\n".join(lines)
# CLI option -> config key, for the options that map one to one.
_OPTIONS = ("manifest", "model", "preset", "size", "steps", "batch", "lr", "device", "seed", "compile",
            "ckpt_every", "sample_every", "log_every", "amp")


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--manifest", type=click.Path(dir_okay=False), help="Manifest Parquet file (from `fex build-manifest`).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write (or resume).")
@click.option("--model", type=click.Choice(sorted(MODELS)), default=_DEFAULTS.model, show_default=True,
              help="Registered model to train (listed below).")
@click.option("--preset", type=click.Choice(_PRESETS), default="auto", show_default=True,
              help="Named settings, which every other option, --set and --config override: paper = the model's paper "
                   f"settings ({_DEFAULTS.size} px; days of CPU); cpu-64 = 64 px, narrow widths and a step budget "
                   "sized for about an hour on 2 CPU cores (each model's below); auto = paper on CUDA, cpu-64 "
                   "elsewhere. A resumed run keeps its own.")
@click.option("--size", type=click.Choice(["64", "128", "256"]),
              help=f"Training resolution (default: the preset's; paper {_DEFAULTS.size}).")
@click.option("--steps", type=click.IntRange(0),
              help=f"The run's TOTAL iterations (default: the preset's; paper {_paper('steps')}); "
                   "--resume --steps 300 on a run at 200 trains 100 more. 0 fits warp-refine's expression prior, learns "
                   "nothing and saves the run (--preset prior-only).")
@click.option("--batch", type=click.IntRange(2),
              help=f"Images per step, per GPU under torchrun (default: the preset's; paper {_paper('batch')}).")
@click.option("--lr", type=click.FloatRange(0, min_open=True),
              help=f"Adam learning rate of every network (default: the preset's; paper {_paper('lr')}).")
@click.option("--device", default=_DEFAULTS.device, show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default=_DEFAULTS.amp, show_default=True,
              help="Mixed precision: auto = bf16 autocast where it is native (CUDA GPUs with bf16, CPUs with "
                   "AVX512-BF16 or AMX), else fp32.")
@click.option("--compile/--no-compile", default=_DEFAULTS.compile, show_default=True,
              help="torch.compile the networks (CUDA; slower first steps).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or JSON config; command-line options override it.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set loss.gamma=50 --set augment.flip=false (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seed of every random stream.")
@click.option("--ckpt-every", type=click.IntRange(1), default=_DEFAULTS.ckpt_every, show_default=True,
              help="Steps between checkpoints (one is always written at the end and on Ctrl-C).")
@click.option("--sample-every", type=click.IntRange(0), default=_DEFAULTS.sample_every, show_default=True,
              help="Steps between sample grids (0: only at the end).")
@click.option("--log-every", type=click.IntRange(1), default=_DEFAULTS.log_every, show_default=True,
              help="Steps between logged scalars.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch  [default: this process's share of the cores that are idle]")
@click.pass_context
def train(ctx: click.Context, out: str, config_file: str | None, sets: tuple[str, ...], resume: bool,
          progress: bool, threads: int | None, **options: Any) -> None:
    """Train an expression-editing GAN on the train split of a manifest.

    \b
    fex train --manifest data/manifest.parquet --out runs/fexgan
    fex train --model stargan --manifest data/manifest.parquet --out runs/stargan
    fex train --out runs/fexgan --resume --steps 200000     # continue to 200K steps
    torchrun --nproc_per_node 4 -m cli.main train --manifest M --out RUN   # 4 GPUs

    Writes RUN/config.json, RUN/checkpoints/last.pt, RUN/generator.safetensors, RUN/samples/*.png,
    RUN/metrics.jsonl and TensorBoard logs in RUN/tb. Ctrl-C stops after the current step and saves.
    --preset auto trains at each model's paper settings on CUDA and at its cpu-64 preset elsewhere;
    docs/train.md (Presets) and docs/models.md describe them.

    \b
    Models (--model) and their presets:
    MODELS_HELP
    """
    from fexdata.threads import set_torch_threads
    from fextrain.config import resolve
    from fextrain.train import train as run_training

    set_torch_threads(threads)

    explicit = {}
    for key in _OPTIONS:
        if ctx.get_parameter_source(key) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            explicit[key] = int(options[key]) if key == "size" else options[key]
    # Errors a user can fix are FexErrors, reported once by cli.main.
    cfg = resolve(out, resume=resume, config_file=config_file, sets=sets, options=explicit,
                  preset=options["preset"])
    result = run_training(cfg, resume=resume, progress=progress, log=click.echo)
    if result.status == "up-to-date" or not result.is_main:
        return
    m = result.metrics
    shown = MODELS[cfg.model].progress
    summary = "".join(f"; {k} {m[k]:.3f}" for k in shown if k in m) + (f", {m['img_per_s']:.0f} img/s" if m else "")
    click.echo(f"{result.status}: {result.run_dir} at step {result.step}{summary}")
    click.echo(f"generator: {result.run_dir / 'generator.safetensors'}; logs: tensorboard --logdir {result.run_dir / 'tb'}")


# One line per registered model, each indented like the placeholder line of the docstring.
_indent = next(line[: len(line) - len(line.lstrip())] for line in train.help.splitlines() if "MODELS_HELP" in line)
train.help = train.help.replace(f"{_indent}MODELS_HELP", "\n".join(_indent + line.rstrip() for line in
                                                                _models_help().splitlines()))
