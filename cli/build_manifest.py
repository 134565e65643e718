"""`fex build-manifest OUT... --out manifest.parquet`: merge ingest outputs into one manifest."""
from __future__ import annotations

import json
from pathlib import Path

import click

from fexdata.manifest import build_manifest as build
from fexdata.manifest.build import BuildOptions


@click.command("build-manifest", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ingest_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("manifest.parquet"),
              show_default=True, help="Manifest file; its folder must contain every ingest folder.")
@click.option("--size", type=int, default=None, help="Crop size to use when ingest wrote several.  [default: the only one]")
@click.option("--affects", default=None, help="Comma-separated affects, or 'all' to add contempt.  [default: the canonical 7]")
@click.option("--min-score", type=float, default=None, help="Drop crops whose detector score is lower.")
@click.option("--min-sharpness", type=float, default=None, help="Drop crops whose Laplacian variance is lower.")
@click.option("--max-faces", type=int, default=None, help="Drop frames in which the detector found more faces.")
@click.option("--max-pad", type=click.FloatRange(0, 1), default=None,
              help="Drop crops whose padded share (fraction of the crop outside the source frame) is higher.")
@click.option("--landmark-check/--no-landmark-check", default=True, show_default=True,
              help="Drop crops whose landmarks leave the frame, have implausible eye distance or eyes below mouth.")
@click.option("--min-gap", default=None, help="Thin video frames to at least this spacing: seconds (0.5s) or frames (10f).")
@click.option("--balance", type=click.Choice(["cap", "weight", "none"]), default="weight", show_default=True,
              help="cap: limit identity x affect cells; weight: add sampling weights; none.")
@click.option("--cap", type=int, default=None, help="Cell limit for --balance cap.  [default: median cell size]")
@click.option("--split", type=click.Choice(["identity", "frame", "none"]), default="identity",
              show_default=True, help="identity: subject-independent; frame: within identities in time blocks.")
@click.option("--fractions", default=None,
              help="train,val,test (or train,test).  [default: 0.8,0.1,0.1 for identity, 0.7,0.3 for frame]")
@click.option("--blocks", type=int, default=10, show_default=True, help="Time blocks per video item (--split frame).")
@click.option("--guard", default="0.5s", show_default=True,
              help="Gap left between blocks of different splits (--split frame): seconds or frames; 0 for none.")
@click.option("--folds", type=int, default=0, show_default=True, help="Add K identity-disjoint folds (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits and folds.")
@click.option("--ramp", type=click.FloatRange(0, min_open=True), default=None, metavar="SECONDS",
              help="Clips ramp from neutral to full expression over their first SECONDS: a video frame without an "
                   "intensity gets min(1, seconds since its clip or segment started / SECONDS).  [default: off]")
@click.option("--drop-missing", is_flag=True, help="Leave out records whose crop file is missing instead of failing.")
@click.option("--partial", is_flag=True,
              help="Build from an ingest that is running, was stopped or has shards to run; what is missing is "
                   "printed as a warning.  [default: refuse it]")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the build report as JSON here.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")
def build_manifest(ingest_dirs: tuple[Path, ...], out: Path, report: Path | None, quiet: bool, **choices) -> None:
    """Merge the records of one or more `fex ingest` outputs into one filtered, balanced, split manifest.

    \b
    fex build-manifest data/studio data/jaffe --out data/manifest.parquet
    fex build-manifest data/studio --split frame --min-gap 0.25s --out data/manifest.parquet
    fex build-manifest data/ck --split identity --folds 10 --balance cap --out data/ck.parquet
    fex build-manifest data/studio --ramp 0.8 --out data/manifest.parquet

    The same inputs and options give a byte-identical file. See docs/manifest.md.
    """
    result = build(list(ingest_dirs), out, BuildOptions(**choices))  # every other option is a BuildOptions field
    text = result.to_text()
    click.echo(text.splitlines()[0] if quiet else text)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
