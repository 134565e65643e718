"""`fex manifest-info manifest.parquet`: tables, split and fold sizes, missing files, leakage."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fexdata.manifest import check_manifest, read_manifest

_COLUMNS = ["image", "identity", "identity_index", "affect", "affect_index", "split", "fold", "block",
            "source", "item", "ingest", "frame", "time", "crop_size", "weight"]


@click.command("manifest-info", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--files/--no-files", default=True, show_default=True, help="Check that every crop file exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON instead of tables.")
def manifest_info(manifest: Path, files: bool, as_json: bool) -> None:
    """Identity x affect table, split and fold sizes, missing files and leakage of a manifest.

    Exits with status 1 when files are missing or a split leaks (an identity in two splits under
    --split identity, overlapping time blocks under --split frame, an identity in two folds).
    """
    df, meta = read_manifest(manifest, columns=_COLUMNS)
    res = check_manifest(df, meta, manifest.resolve().parent, check_files=files)
    if as_json:
        click.echo(json.dumps({"manifest": str(manifest), "rows": len(df), "meta": meta, **res.to_dict()},
                              indent=1, sort_keys=True))
    else:
        split = meta.get("split") or {}
        click.echo(f"{manifest}: {len(df)} rows, schema v{meta.get('schema_version')}, "
                   f"{meta.get('crop_size')}px crops, {df['identity'].nunique()} identities, "
                   f"split {split.get('mode')} {split.get('fractions')} seed {split.get('seed')}, "
                   f"balance {(meta.get('balance') or {}).get('mode')}")
        click.echo("identity x affect")
        click.echo(res.table.to_string())
        click.echo("split x affect")
        click.echo(res.split_affect.to_string())
        click.echo("splits: " + ", ".join(f"{k}: {v}" for k, v in res.split_sizes.items()))
        if res.fold_sizes:
            click.echo("folds: " + ", ".join(f"{k}: {v}" for k, v in res.fold_sizes.items()))
        click.echo(f"missing files: {len(res.missing)}" if files else "missing files: not checked (--no-files)")
        for w in res.warnings:
            click.echo(f"warning: {w}")
        for p in res.problems:
            click.echo(f"problem: {p}", err=True)
        if res.ok:
            click.echo("ok: no leakage" + (", no missing files" if files else ""))
    if not res.ok:
        sys.exit(1)
