"""`fex`: one click group; each command lives in its own module and is imported only when used,
so `fex --help` stays fast and a broken optional dependency only affects its own command."""
from __future__ import annotations

import errno
import importlib

import click

# command name -> (module, attribute, one-line help shown by `fex --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "ingest": ("cli.ingest", "ingest", "Detect, align and crop faces from recordings and datasets."),
    "build-manifest": ("cli.build_manifest", "build_manifest", "Merge ingest outputs into one balanced, split manifest."),
    "manifest-info": ("cli.manifest_info", "manifest_info", "Tables, split sizes and leakage checks for a manifest."),
    "train": ("cli.train", "train", "Train an expression GAN on a manifest."),
    "eval": ("cli.eval", "eval_run", "Evaluate a training run: metrics.json, figures, report.html."),
    "edit": ("cli.edit", "edit", "Change the expression in photos and videos with a trained run."),
    "export": ("cli.export", "export", "Export a run's generator to ONNX, checked against torch."),
    "explore": ("cli.explore", "explore", "A local page to mix and dial a run's expressions on a face."),
    "demo": ("cli.demo", "demo", "Run the whole pipeline on built-in sample data."),
}


_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _fail(ctx: click.Context, message: str, hint: str) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    ctx.exit(2)


def _print_versions(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from fexdata.versions import versions

    for name, version in versions().items():
        click.echo(f"{name:<8} {version}")
    ctx.exit()


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context):
        # The one place user errors are caught: `error: ...`, the hint, exit status 2. Anything that
        # is not a FexError is a bug in fex and keeps its traceback.
        from fexdata.errors import FexError

        try:
            return super().invoke(ctx)
        except FexError as exc:
            _fail(ctx, str(exc), exc.hint)
        except OSError as exc:
            # A folder the user cannot write to (or a full disk) is the user's to fix, whichever command
            # met it first; other OS errors are bugs or hardware and keep their traceback.
            if exc.errno not in _ENVIRONMENT_ERRNOS:
                raise
            where = f" {exc.filename}" if exc.filename else ""
            _fail(ctx, f"cannot write{where}: {exc.strerror}",
                  "choose an output folder you can write to (--out), with room for the results")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so listing commands imports none of them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_versions,
              help="Print the versions of fex and of the libraries that shape its outputs, and exit.")
def main() -> None:
    """fex: facial-expression data and models.

    \b
    fex ingest videos/ --out data/studio
    fex build-manifest data/studio --out data/manifest.parquet
    fex train --manifest data/manifest.parquet --out runs/fexgan
    fex eval runs/fexgan --manifest data/manifest.parquet --out runs/fexgan/eval
    fex edit runs/fexgan photos/ --to joy --out edits
    """


if __name__ == "__main__":
    main()
