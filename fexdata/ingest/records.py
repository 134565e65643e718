"""The ingest output tables: their schemas, crop file names, and atomic Parquet parts.

docs/design.md "Ingest output" is the contract: `pandas.read_parquet(OUT/'records')` is one row per crop
per size, `pandas.read_parquet(OUT/'rejects')` one row per rejected input. Every part is written with
an explicit schema, so empty parts (a unit whose every input was rejected) still concatenate cleanly.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from fexdata.paths import atomic_path

RECORDS_DIR = "records"
REJECTS_DIR = "rejects"
CROPS_DIR = "crops"

RECORD_SCHEMA = pa.schema([
    ("image", pa.string()),            # crop path relative to OUT
    ("crop_size", pa.int32()),
    ("source", pa.string()),           # layout name
    ("source_root", pa.string()),      # the SRC folder as given on the command line
    ("source_path", pa.string()),      # the input file, relative to its dataset root
    ("item", pa.string()),             # unit-of-work key: all frames of one clip/segment/sequence share it
    ("frame", pa.int64()),             # null for stills
    ("time", pa.float64()),            # seconds; NaN for stills
    ("identity", pa.string()),
    ("affect", pa.string()),
    ("affect_raw", pa.string()),
    ("intensity", pa.float64()),       # NaN when the dataset gives none
    ("bbox", pa.list_(pa.float64(), 4)),         # x0, y0, x1, y1, frame pixels
    ("det_score", pa.float64()),       # NaN for tracked and whole-frame faces
    ("face_count", pa.int32()),
    ("landmarks", pa.list_(pa.float32(), 136)),  # x0, y0, x1, y1, ... frame pixels
    ("transform", pa.list_(pa.float64(), 6)),    # 2x3 affine frame -> crop, row-major
    ("sharpness", pa.float64()),
    ("pad_share", pa.float64()),       # fraction of the crop's area outside the frame (padded)
    ("align", pa.string()),
    ("detector", pa.string()),         # hog | cnn | track | frame
    ("frame_width", pa.int32()),
    ("frame_height", pa.int32()),
    ("extra", pa.string()),            # layout-specific facts (pose, session, ...) as a JSON object
])

REJECT_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("source_root", pa.string()),
    ("source_path", pa.string()),
    ("item", pa.string()),
    ("category", pa.string()),         # short class of the problem, for summaries
    ("reason", pa.string()),           # a sentence a person understands
])

# Reject categories (the summary groups by these).
BAD_IMAGE = "unreadable image"
BAD_VIDEO = "unreadable video"
TRUNCATED_VIDEO = "truncated video"
NO_FACE = "no face"
UNSAFE_PATH = "path outside dataset"
LAYOUT = "layout"
DUPLICATE = "duplicate item"
ERROR = "unexpected error"


def part_name(unit_id: str) -> str:
    return f"part-{unit_id}.parquet"


def write_part(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Write rows as one Parquet file, atomically (temp name, fsync, rename)."""
    table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata(_pandas_metadata(schema))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


_PANDAS_META: dict[pa.Schema, dict] = {}


def _pandas_metadata(schema: pa.Schema) -> dict:
    """pandas metadata that makes read_parquet give `frame` as nullable Int64 (not float64 with NaN)."""
    if schema not in _PANDAS_META:
        import pandas as pd

        template = pd.DataFrame({name: pd.Series([], dtype="Int64" if name == "frame" else object)
                                 for name in schema.names})
        for field in schema:
            if pa.types.is_floating(field.type):
                template[field.name] = template[field.name].astype("float64")
            elif pa.types.is_integer(field.type) and field.name != "frame":
                template[field.name] = template[field.name].astype("int64")
        _PANDAS_META[schema] = pa.Table.from_pandas(template, schema=schema, preserve_index=False).schema.metadata
    return _PANDAS_META[schema]


def stable_hash(*parts: str, length: int = 16) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:length]


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def slug(text: str, max_len: int = 80) -> str:
    """A file-name-safe version of `text` (readable, not necessarily unique)."""
    s = _UNSAFE.sub("_", text).strip("._") or "x"
    return s[:max_len]


def crop_relpath(size: int, source: str, identity: str, item_key: str, frame: int | None) -> str:
    """`crops/<size>/<source>/<identity>/<item-key-slug>[_f<frame:06d>].png`, relative to OUT.

    The identity folder drops the `source:` namespace (the source folder already says it); the item slug
    ends with a short hash of the exact key, so two keys that slug alike never share a file.
    """
    ident = identity.split(":", 1)[1] if identity.startswith(f"{source}:") else identity
    stem = item_key.rsplit(".", 1)[0] if "@" not in item_key else item_key
    name = f"{slug(stem)}-{stable_hash(item_key, length=8)}"
    if frame is not None:
        name += f"_f{frame:06d}"
    return f"{CROPS_DIR}/{size}/{slug(source)}/{slug(ident)}/{name}.png"


def reject_row(source: str, source_root: str, source_path: str, item: str, category: str, reason: str) -> dict[str, Any]:
    return {"source": source, "source_root": source_root, "source_path": source_path, "item": item,
            "category": category, "reason": reason}


def read_table(folder: Path, columns: Iterable[str] | None = None) -> pa.Table | None:
    """All parts in a records/rejects folder as one table (None when there are none)."""
    parts = sorted(p for p in folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not parts:
        return None
    cols = list(columns) if columns is not None else None
    return pa.concat_tables([pq.read_table(p, columns=cols) for p in parts])
