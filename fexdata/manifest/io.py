"""Reading ingest records, and reading/writing the manifest Parquet file (schema in `schema.py`).

A manifest is one Parquet file with one row per face crop. Image paths
are relative to the manifest's folder and never point outside it. The file's key-value metadata
carries `fex.schema_version`, `fex.affects` (the affect index order) and the options it was built
with, and never a timestamp: the same inputs and seed give a byte-identical file.
"""
from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fexdata import parquet
from fexdata.errors import ManifestError
from fexdata.ingest.records import RECORDS
from fexdata.manifest.schema import MANIFEST, META_PREFIX, SCHEMA_VERSION

# Record columns a manifest does not carry, so the build never reads them into memory.
_UNUSED_RECORD_COLUMNS = ("source_root", "bbox", "extra")
_RECORD_LISTS = {n: w for n, w in RECORDS.list_widths().items() if n not in _UNUSED_RECORD_COLUMNS}
_REREAD = "re-run `fex ingest` with this version of fex"
_REBUILD = "rebuild it with `fex build-manifest` (the same inputs and --seed give the same file)"


@dataclass
class Records:
    """Ingest records as scalar columns plus the fixed-size list columns as 2-D float arrays.

    `frame["_row"]` indexes `arrays[...]`, so filters and sorts only move the small frame around
    and list columns are gathered once, at write time (no per-row Python objects).
    """
    frame: pd.DataFrame
    arrays: dict[str, np.ndarray]


def _list_column_to_array(column: pa.ChunkedArray, width: int, dtype: np.dtype) -> np.ndarray:
    """A list<float> column as an (N, width) array; null or malformed rows become NaN."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    n = len(arr)
    value_type = pa.from_numpy_dtype(np.dtype(dtype))
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    good = lengths == width
    if good.all() and arr.values.null_count == 0:  # the usual case: one flat copy, no masking
        values = pc.list_flatten(arr).cast(value_type).to_numpy(zero_copy_only=False)
        return values.reshape(n, width)
    out = np.full((n, width), np.nan, dtype)
    if good.any():
        values = pc.list_flatten(arr.filter(pa.array(good))).cast(value_type)
        out[good] = values.to_numpy(zero_copy_only=False).reshape(-1, width)
    return out


def _records_files(records_dir: Path) -> list[Path]:
    if records_dir.is_file():
        return [records_dir]
    if records_dir.is_dir():
        return sorted(p for p in records_dir.rglob("*.parquet") if not p.name.startswith((".", "_")))
    return []


def read_records(ingest_dir: str | os.PathLike) -> Records:
    """Read `ingest_dir/records` (one file or a folder of parts) into `Records`, types normalised.

    Raises ManifestError when there are no records, they lack columns a manifest needs, or a part is
    damaged. Every part of a folder `fex ingest` wrote (it has ingest.json) must carry fex's checksum;
    records written some other way are read as they are (their page checksums, if any, are checked).
    """
    ingest_dir = Path(ingest_dir)
    if not ingest_dir.is_dir():
        raise ManifestError(f"{ingest_dir}: not a folder", hint="pass the --out folder of `fex ingest`")
    files = _records_files(ingest_dir / "records")
    if not files:
        files = _records_files(ingest_dir / "records.parquet")
    if not files:
        raise ManifestError(f"{ingest_dir}: no records (expected {ingest_dir}/records/*.parquet)",
                            hint=f"run `fex ingest ... --out {ingest_dir}` first, or pass the ingest --out folder")
    from fexdata.ingest.outdir import INGEST_JSON

    by_fex = (ingest_dir / INGEST_JSON).is_file()
    tables = []
    for f in files:
        t = parquet.read_table(f, require_digest=by_fex, hint=f"re-run the same `fex ingest ... --out {ingest_dir}` "
                               "command: it redoes the unit of a damaged part")
        missing = [c for c in RECORDS.required if c not in t.column_names]
        if missing:
            raise ManifestError(f"{f}: records lack column(s) {', '.join(missing)}; they come from an incompatible "
                                f"version of `fex ingest`", hint="re-run `fex ingest` into a fresh --out folder")
        tables.append(_normalise_record_table(t, f))
    table = pa.concat_tables(tables, promote_options="permissive")
    arrays = {}
    dtypes = RECORDS.list_dtypes()
    for name, width in _RECORD_LISTS.items():
        arrays[name] = (_list_column_to_array(table.column(name), width, dtypes[name]) if name in table.column_names
                        else np.full((table.num_rows, width), np.nan, dtypes[name]))
    scalar = table.select([c for c in table.column_names if c not in _RECORD_LISTS])
    df = scalar.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get)
    df["_row"] = np.arange(len(df), dtype=np.int64)
    return Records(df, arrays)


def _normalise_record_table(t: pa.Table, origin: Path) -> pa.Table:
    """The record columns a manifest uses, cast to RECORDS' types so parts of different runs concatenate.

    Fixed-size list columns become variable lists of the same value type (float32 landmarks stay
    float32): a row of the wrong length is then read as missing (NaN) rather than failing the build.
    """
    cols, names = [], []
    for name in t.column_names:
        if name not in RECORDS or name in _UNUSED_RECORD_COLUMNS:
            continue  # unknown extra columns are ignored, not an error
        col, target = t.column(name), RECORDS[name].type
        if name in _RECORD_LISTS:
            if pa.types.is_null(col.type):
                col = pa.chunked_array([pa.nulls(len(col), pa.list_(target.value_type))])
            elif (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
                  or pa.types.is_large_list(col.type)):
                col = col.cast(pa.list_(target.value_type))
            else:
                raise ManifestError(f"{origin}: column {name!r} should be a list of floats, found {col.type}",
                                    hint=_REREAD)
        else:
            try:
                col = col.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ManifestError(f"{origin}: column {name!r} has type {col.type}, expected {target} ({exc})",
                                    hint=_REREAD) from None
        cols.append(col)
        names.append(name)
    return pa.table(cols, names=names)


# ---------------------------------------------------------------- writing and reading the manifest

def _encode_meta(meta: dict[str, Any]) -> dict[bytes, bytes]:
    """JSON-encode values with sorted keys so the metadata bytes depend only on the content."""
    return {f"{META_PREFIX}{k}".encode(): json.dumps(v, sort_keys=True, separators=(",", ":")).encode()
            for k, v in sorted(meta.items())}


def _to_arrow(df: pd.DataFrame, arrays: dict[str, np.ndarray] | None) -> pa.Table:
    """Build the manifest table in schema order from a frame (+ optional list arrays indexed by `_row`)."""
    cols = []
    n = len(df)
    for c in MANIFEST.columns:
        if pa.types.is_fixed_size_list(c.type):
            width = c.type.list_size
            if arrays is not None and c.name in arrays and "_row" in df:
                values = arrays[c.name][df["_row"].to_numpy()]
            elif c.name in df:
                values = np.full((n, width), np.nan)
                for i, v in enumerate(df[c.name].tolist()):  # only for hand-edited frames; builds use arrays
                    if v is not None and len(v) == width:
                        values[i] = v
            else:
                values = np.full((n, width), np.nan)
            valid = ~np.isnan(values).any(axis=1)
            flat = pa.array(values.astype(c.type.value_type.to_pandas_dtype()).ravel())
            col = pa.FixedSizeListArray.from_arrays(flat, width, mask=pa.array(~valid))
        elif c.name in df:
            series = df[c.name]
            col = pa.array(series, type=c.type, from_pandas=True)
        elif c.nullable:
            col = pa.nulls(n, c.type)
        else:
            raise ValueError(f"manifest frame lacks required column {c.name!r}")  # a bug in the caller
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=MANIFEST.arrow)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, *, affects: tuple[str, ...] | list[str],
                   meta: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write `df` as a manifest Parquet file, atomically (a reader never sees half a file).

    `df` holds the schema's scalar columns; list columns come from `df` itself (sequences) or from
    `arrays[name][df._row]`. Metadata: `fex.schema_version`, `fex.affects`, `fex.identities` and
    whatever `meta` adds (JSON values).
    """
    path = Path(path)
    table = _to_arrow(df, arrays)
    identities = sorted(df["identity"].unique().tolist()) if len(df) else []
    full_meta = {"schema_version": SCHEMA_VERSION, "affects": list(affects), "identities": identities}
    full_meta.update(meta or {})
    table = table.replace_schema_metadata(_encode_meta(full_meta))
    # Fixed row-group size and codec: the bytes depend only on the table, never on the machine.
    parquet.write_table(table, path, compression="zstd", row_group_size=1 << 20, write_statistics=True)
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest's `fex.*` metadata, JSON-decoded, prefix stripped (the whole file is read and verified)."""
    try:
        return _decode_meta(parquet.read_schema(path, hint=_REBUILD))
    except ValueError as exc:  # metadata JSON fex did not write (the checksum held, so not damage)
        raise ManifestError(f"{path}: unreadable fex metadata ({exc})", hint=_REBUILD) from None


def _decode_meta(schema: pa.Schema) -> dict[str, Any]:
    raw = schema.metadata or {}
    meta = {}
    for k, v in raw.items():
        key = k.decode()
        if key.startswith(META_PREFIX):
            meta[key[len(META_PREFIX):]] = json.loads(v.decode())
    return meta


def read_manifest(path: str | os.PathLike, columns: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a manifest -> (DataFrame, meta). `meta["affects"]` is the affect index order.

    Nullable integer columns (`frame`, `fold`, `block`, `face_count`) come back as pandas nullable
    integers; list columns as object columns of numpy arrays (ask for fewer `columns` to skip them).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest", hint="build one with `fex build-manifest`")
    parquet_file = parquet.open_file(path, hint=_REBUILD)  # verified: damage raises, naming the file
    try:
        meta = _decode_meta(parquet_file.schema_arrow)
    except ValueError as exc:  # metadata JSON fex did not write (the checksum held, so not damage)
        raise ManifestError(f"{path}: unreadable fex metadata ({exc})", hint=_REBUILD) from None
    version = meta.get("schema_version")
    if version is None:
        raise ManifestError(f"{path}: not a fex manifest (no fex.schema_version metadata)",
                            hint="pass a file written by `fex build-manifest`")
    if int(version) > SCHEMA_VERSION:
        raise ManifestError(f"{path}: manifest schema version {version} is newer than this fex "
                            f"understands ({SCHEMA_VERSION})", hint="upgrade fex")
    missing = [c for c in columns or () if c not in parquet_file.schema_arrow.names]
    if missing:
        raise ManifestError(f"{path}: manifest lacks column(s) {', '.join(missing)}", hint=_REBUILD)
    table = parquet_file.read(columns=columns)
    mapper = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}
    nullable = [n for n in table.column_names if n in MANIFEST.nullable_ints()]
    df = table.drop_columns(nullable).to_pandas() if nullable else table.to_pandas()
    for n in nullable:
        df[n] = table.column(n).to_pandas(types_mapper=mapper.get)
    df = df[[n for n in table.column_names]]
    return df, meta


def manifest_image_prefix(ingest_dir: str | os.PathLike, manifest_dir: str | os.PathLike) -> str:
    """POSIX prefix that turns an ingest-relative crop path into a manifest-relative one.

    The manifest's folder must contain the ingest folder (paths may never leave the manifest's
    folder); otherwise a ManifestError names the folder to write the manifest into instead.
    """
    ingest_r = Path(ingest_dir).resolve()
    manifest_r = Path(manifest_dir).resolve()
    try:
        rel = ingest_r.relative_to(manifest_r).as_posix()
    except ValueError:
        common = os.path.commonpath([str(ingest_r), str(manifest_r)])
        raise ManifestError(
            f"ingest output {ingest_dir} is not inside the manifest's folder {manifest_r}, and manifest "
            f"paths may never point outside it",
            hint=f"write the manifest into a folder that contains every ingest output, "
                 f"e.g. --out {posixpath.join(common, 'manifest.parquet')}") from None
    return "" if rel == "." else rel
