"""The ingest output tables (`RECORDS`, `REJECTS`: the column tables of record), crop file names, atomic parts.

The contract (docs/ingest.md renders the tables): `pandas.read_parquet(OUT/'records')` is one row per crop
per size, `pandas.read_parquet(OUT/'rejects')` one row per rejected input. Every part is written with its
table's schema, so empty parts (a unit whose every input was rejected) still concatenate cleanly.
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from fexdata import parquet
from fexdata.errors import IngestError
from fexdata.schema import Column, Table

N_LANDMARKS = 68

RECORDS_DIR = "records"
REJECTS_DIR = "rejects"
CROPS_DIR = "crops"

# `required`: the columns a reader (build-manifest) cannot do without; the others are read when present.
# Every field stays nullable in the file (strict=False), so parts a resumed run wrote earlier still
# concatenate with new ones.
RECORDS = Table("records", "ingest.md", strict=False, columns=(
    Column("image", pa.string(), False, "crop path relative to OUT"),
    Column("crop_size", pa.int32(), False, "crop side in pixels; one row per crop per `--size`"),
    Column("source", pa.string(), False, "input layout that produced it (`studio`, `jaffe`, ...)"),
    Column("source_root", pa.string(), False, "the SRC as typed on the command line", required=False),
    Column("source_path", pa.string(), False,
           "the input file relative to its dataset root; for sequences the frame's file"),
    Column("item", pa.string(), False, "unit of work: all frames of one clip, segment or sequence share it"),
    Column("frame", pa.int64(), True, "frame number within the video or sequence; null for stills"),
    Column("time", pa.float64(), False, "seconds from the start of the video; NaN for stills"),
    Column("identity", pa.string(), False, "namespaced identity, e.g. `jaffe:KA`, `studio:ada`"),
    Column("affect", pa.string(), False, "canonical affect (`contempt` included)"),
    Column("affect_raw", pa.string(), False, "the label as the dataset spells it"),
    Column("intensity", pa.float64(), False, "expression intensity when the dataset gives one, else NaN",
           required=False),
    Column("bbox", pa.list_(pa.float64(), 4), False, "face box x0, y0, x1, y1 in frame pixels", required=False),
    Column("det_score", pa.float64(), False, "detector score; NaN for tracked and whole-frame faces",
           required=False),
    Column("face_count", pa.int32(), False, "faces the detector found in the frame", required=False),
    Column("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS), False,
           "68 points x0, y0, x1, y1, ... in frame pixels; NaN for whole-frame faces", required=False),
    Column("transform", pa.list_(pa.float64(), 6), False, "2x3 affine frame -> crop, row-major", required=False),
    Column("sharpness", pa.float64(), False, "variance of the Laplacian of the crop (low means blurred)",
           required=False),
    Column("pad_share", pa.float64(), False, "fraction of the crop's area outside the source frame, filled by "
           "`--pad` (0: none)", required=False),
    Column("align", pa.string(), False, "`ffhq` (landmarks), `bbox`, or `frame` (the whole image is the face)",
           required=False),
    Column("detector", pa.string(), False, "`hog`, `cnn`, `track` or `frame`", required=False),
    Column("frame_width", pa.int32(), False, "width of the frame or still in pixels", required=False),
    Column("frame_height", pa.int32(), False, "height of the frame or still in pixels", required=False),
    Column("extra", pa.string(), False, "layout-specific facts (pose, gaze, session, CK+ frame role) as a JSON object",
           required=False),
))

REJECTS = Table("rejects", "ingest.md", strict=False, columns=(
    Column("source", pa.string(), False, "input layout", required=False),
    Column("source_root", pa.string(), False, "the SRC as typed on the command line", required=False),
    Column("source_path", pa.string(), False, "the rejected input (file or folder) relative to its dataset root"),
    Column("item", pa.string(), False, "the unit of work it belonged to; empty for inputs rejected while scanning",
           required=False),
    Column("category", pa.string(), False, "short class of the problem, for summaries (below)", required=False),
    Column("reason", pa.string(), False, "a sentence a person understands"),
))

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


def write_part(path: Path, rows: list[dict[str, Any]], table: Table) -> None:
    """Write rows as one Parquet file of `table`'s schema, atomically and checksummed (fexdata.parquet)."""
    data = pa.Table.from_pylist(rows, schema=table.arrow).replace_schema_metadata(_pandas_metadata(table))
    parquet.write_table(data, path)


@functools.cache
def _pandas_metadata(table: Table) -> dict:
    """pandas metadata that makes read_parquet give nullable integers (`frame`) as Int64, not float64 with NaN."""
    import pandas as pd

    nullable_ints = set(table.nullable_ints())
    template = pd.DataFrame({name: pd.Series([], dtype="Int64" if name in nullable_ints else object)
                             for name in table.names})
    for c in table.columns:
        if pa.types.is_floating(c.type):
            template[c.name] = template[c.name].astype("float64")
        elif pa.types.is_integer(c.type) and c.name not in nullable_ints:
            template[c.name] = template[c.name].astype("int64")
    return pa.Table.from_pandas(template, schema=table.arrow, preserve_index=False).schema.metadata


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


# A damaged part names itself; `fex ingest` redoes the unit of a damaged part when run again, and `fex edit`
# the input of a missing one.
PART_HINT = "re-run the same `fex ingest` command (for `fex edit` output: delete that file first, then re-run)"


def read_table(folder: Path, columns: Iterable[str] | None = None, hint: str = PART_HINT,
               require_digest: bool = True) -> pa.Table | None:
    """All parts in a records/rejects folder as one table (None when there are none), each verified:
    a damaged one raises IngestError naming it (`require_digest=False`: parts fex may not have written)."""
    parts = sorted(p for p in folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not parts:
        return None
    cols = list(columns) if columns is not None else None
    return pa.concat_tables([parquet.read_table(p, cols, error=IngestError, hint=hint, require_digest=require_digest)
                             for p in parts])


def reject_summary(folder: Path, hint: str = PART_HINT, require_digest: bool = True) -> dict[str, Any]:
    """`rejects`, `rejects_by_category` and up to three `reject_examples` per category from a rejects folder."""
    table = read_table(folder, ["category", "reason", "source_path"], hint, require_digest)
    if table is None or not table.num_rows:
        return {"rejects": 0, "rejects_by_category": {}, "reject_examples": {}}
    df = table.to_pandas()
    return {"rejects": int(len(df)),
            "rejects_by_category": {str(k): int(v) for k, v in df["category"].value_counts().items()},
            "reject_examples": {str(cat): [f"{r.source_path}: {r.reason}" for r in grp.head(3).itertuples()]
                                for cat, grp in df.groupby("category", sort=True)}}


def reject_lines(summary: dict[str, Any], title: str) -> list[str]:
    """The summary's rejects as printed lines: `title`, then one line per category with an example."""
    if not summary["rejects"]:
        return ["nothing rejected"]
    return [title] + [f"  {n:6d}  {cat}  (e.g. {summary['reject_examples'][cat][0]})"
                      for cat, n in summary["rejects_by_category"].items()]
