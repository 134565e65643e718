"""`fex explore RUN [PHOTO...]`: parse options, set up fextrain.explore, serve its page on 127.0.0.1."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("explore", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path(exists=True))
@click.argument("photos", metavar="[PHOTO...]", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port on 127.0.0.1  [default: a free one]")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--from", "source", default="auto", show_default=True,
              help="Source affect of the faces (an affect spec), or auto to estimate it, as fex edit --from.")
@click.option("--estimator", type=click.Choice(["auto", "discriminator", "judge"]), default="auto", show_default=True,
              help="--from auto: the model's own affect head, or the judge cached in RUN/eval/judge (fex edit's).")
@click.option("--faces", type=click.Choice(["largest", "all"]), default="largest", show_default=True,
              help="Edit the largest face or every detected face.")
@click.option("--color-match", "colour", is_flag=True, help="As fex edit --color-match.")
@click.option("--keep-detail", is_flag=True, help="As fex edit --keep-detail.")
@click.option("--paste", "paste_mode", type=click.Choice(["auto", "warp", "crop"]), default="auto", show_default=True,
              help="As fex edit --paste: a warping model's edit warps the full-resolution face (auto), or not.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch and OpenCV  [default: this process's share of the cores that are idle]")
def explore(run, photos, port, open_browser, source, estimator, faces, colour, keep_detail, paste_mode, device,
            threads) -> None:
    """A local page to mix and dial a trained RUN's expressions on a face.

    \b
    fex explore runs/fexgan
    fex explore runs/fexgan me.jpg --open

    Choose one of the run's test faces, a PHOTO, or upload one; one slider per affect mixes and dials the
    expression, and the face is edited and pasted back as `fex edit` does it: the page shows the `--to`
    spec and the `fex edit` command that write the same pixels, offers both for download, and draws a grid
    of the mix across one slider's range. The page is served on 127.0.0.1 only. See docs/explore.md.
    """
    import cv2

    from fexdata.threads import set_torch_threads
    from fextrain.explore import ExploreOptions, Explorer, serve

    cv2.setNumThreads(set_torch_threads(threads))
    options = ExploreOptions(source=source, estimator=estimator, faces=faces, colour=colour, keep_detail=keep_detail,
                             paste=paste_mode, device=device)
    explorer = Explorer(run, options, log=click.echo)
    serve(explorer, [Path(p) for p in photos], port=port, open_browser=open_browser, log=click.echo)
