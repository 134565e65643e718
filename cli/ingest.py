"""`fex ingest SRC... --out OUT`: parse options, call fexdata.ingest, print the summary."""
from __future__ import annotations

import click

from fexdata.ingest.align import DEFAULT_PAD, PAD_MODES
from fexdata.ingest.sources import LAYOUTS

LAYOUT_CHOICES = ("auto", *LAYOUTS)


@click.command("ingest", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output folder: crops/, records/, rejects/, ingest.json.")
@click.option("--layout", type=click.Choice(LAYOUT_CHOICES), default="auto", show_default=True,
              help="Input layout of every SRC; auto detects it per SRC and says what it found.")
@click.option("--size", "sizes", type=click.Choice(["128", "256", "512", "1024"]), multiple=True,
              help="Crop size in pixels; repeat for several sizes from one alignment.  [default: 256]")
@click.option("--align", type=click.Choice(["ffhq", "bbox"]), default="ffhq", show_default=True,
              help="ffhq: similarity crop from the 68 landmarks; bbox: square around the detector box.")
@click.option("--zoom", type=click.FloatRange(min=0.5, max=4.0), default=1.0, show_default=True,
              help="Crop scale: 1 = the alignment's framing (FFHQ), >1 = tighter around the face, for datasets "
                   "of tightly framed faces that would otherwise be padded.")
@click.option("--pad", type=click.Choice(PAD_MODES), default=DEFAULT_PAD, show_default=True,
              help="Fill for crop parts outside the frame: blur = reflect, blurred and faded to the mean colour "
                   "the further out (invents no faces); reflect = mirror; edge = repeat border pixels; "
                   "constant = the frame's mean colour.")
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default="hog", show_default=True,
              help="dlib HOG (fast) or mmod CNN (~100x slower on CPU, finds harder faces).")
@click.option("--landmarks", type=click.Choice(["dlib", "fan"]), default="dlib", show_default=True,
              help="Landmark backend; fan = face-alignment, only with its weights already on disk.")
@click.option("--fan-weights", type=click.Path(dir_okay=False), default=None,
              help="Path of 2DFAN4-11f355bf06.pth.tar for --landmarks fan "
                   "[default: $TORCH_HOME/hub/checkpoints/].")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Videos and sequences: keep at most this many frames per second.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Videos and sequences: keep every Nth frame.")
@click.option("--redetect-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Videos: confirm the tracked face by detection at least every K frames.")
@click.option("--smooth", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Videos: temporal smoothing of the alignment (Gaussian sigma in frames; 0 = off).")
@click.option("--fallback", type=click.Choice(["auto", "frame", "reject"]), default="auto", show_default=True,
              help="When no face is found: frame = take the whole image as the face; auto = only for images "
                   "up to 128 px and datasets that ship face crops (FERG, CK+48); reject = never.")
@click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=100.0, show_default=True,
              help="Refuse larger stills before decoding (decompression bombs).")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes.  [default: all cores]")
@click.option("--shard", default=None, metavar="I/N",
              help="Run only shard I of N (0 <= I < N): N such processes, on any hosts sharing OUT, "
                   "together make the whole ingest.  [default: everything]")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: Ray tasks (pip install 'fex[ray]').")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="--executor ray: the cluster to join (auto, HOST:PORT, ray://HOST:PORT).  "
                   "[default: $RAY_ADDRESS, else a local Ray with --workers CPUs]")
@click.option("--strict", is_flag=True, help="Exit with status 1 if anything was rejected.")
@click.option("--overwrite", is_flag=True, help="Replace an OUT made with different options or sources.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def ingest(src, out, layout, sizes, align, zoom, pad, detector, landmarks, fan_weights, fps, every,
           redetect_every, smooth, fallback, max_megapixels, workers, shard, executor, ray_address, strict,
           overwrite, quiet) -> None:
    """Detect, align and crop the faces in SRC (dataset folders, studio recordings, a CSV list).

    \b
    fex ingest captures/ --out data/studio --size 256 --size 512
    fex ingest jaffe/ ckplus/ --out data/public --layout auto
    fex ingest takes/ --out data/takes --fps 30 --workers 2
    fex ingest captures/ --out /shared/studio --shard $SLURM_ARRAY_TASK_ID/16
    fex ingest captures/ --out /shared/studio --executor ray --ray-address auto

    Re-running the same command resumes: finished work is skipped. See docs/ingest.md and docs/scale.md.
    """
    from fexdata.ingest import IngestOptions, Shard, format_summary, ingest as run_ingest, resolve_sources

    shard_spec = Shard.parse(shard) if shard is not None else Shard()

    options = IngestOptions(
        sizes=tuple(sorted({int(s) for s in sizes})) or (256,), align=align, zoom=zoom, pad=pad,
        detector=detector, landmarks=landmarks, fan_weights=fan_weights, fps=fps, every=every, redetect_every=redetect_every,
        smooth=smooth, fallback=fallback, max_pixels=int(max_megapixels * 1e6))
    sources = resolve_sources(src, layout, log=click.echo)
    if landmarks == "fan":
        from fexdata.ingest.faces import FanLandmarker

        FanLandmarker(fan_weights)  # fail now, with the reason, rather than once per input
    summary = run_ingest(sources, out, options, workers=workers, overwrite=overwrite, progress=not quiet,
                         log=click.echo, shard=shard_spec, executor=executor, ray_address=ray_address)
    click.echo(format_summary(summary))
    status = "ingest.json" if shard_spec.whole else f"shards/shard-{shard_spec.name}.json"
    click.echo(f"wrote {out}/records, {out}/rejects, {out}/crops and {out}/{status}")
    if strict and summary["rejects"]:
        raise click.ClickException(f"--strict: {summary['rejects']} inputs were rejected (see {out}/rejects)")
