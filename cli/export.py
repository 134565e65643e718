"""`fex export RUN --format onnx [--out FILE]`: parse options, call fextrain.export, print what was written."""
from __future__ import annotations

import click


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="File format of the exported generator.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="The file to write  [default: RUN/generator.onnx]")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch  [default: this process's share of the cores that are idle]")
def export(run, fmt, out, threads) -> None:
    """Export the generator of a trained RUN to run without fex.

    RUN is a `fex train --out` folder (its latest checkpoint) or an exported generator.safetensors.
    The ONNX file takes an aligned face crop in [-1, 1] (NCHW, RGB), the source and the target affect
    vectors, with any batch size, and returns the edited crop; its metadata holds the affect order, the
    crop recipe, the size, the model and its step. It is checked against torch with onnxruntime before it
    is written. Run it with `fex edit FILE.onnx ...` (on onnxruntime) or your own runtime: docs/export.md.

    \b
    fex export runs/fexgan
    fex export runs/fexgan --out models/fexgan.onnx
    fex edit models/fexgan.onnx me.jpg --to joy --from neutral --out edits
    """
    from fexdata.threads import set_torch_threads
    from fextrain.export import export_onnx

    set_torch_threads(threads)
    s = export_onnx(run, out, log=click.echo)
    click.echo(f"wrote {s['path']} ({s['bytes'] / 1e6:.1f} MB): {s['model']} at step {s['step']}, {s['size']}px, "
               f"opset {s['opset']}, inputs {', '.join(s['inputs'])}; onnxruntime matches torch within "
               f"{s['max_abs_diff']:.1g} (max abs)")
