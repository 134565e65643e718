"""The manifest's schema of record: one `Column` per Parquet column, in file order.

`docs/manifest.md` documents the same columns (a test keeps the two in step). Readers, writers and
the build derive their types from `COLUMNS`; the ingest record types a manifest reads are here too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1
META_PREFIX = "fex."
N_LANDMARKS = 68


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    doc: str


# The schema of record, in file order. Nullable integer columns are read back as pandas Int64/Int32.
COLUMNS: tuple[Column, ...] = (
    Column("image", pa.string(), False, "crop path, POSIX, relative to the manifest's folder"),
    Column("identity", pa.string(), False, "namespaced identity, e.g. `jaffe:KA`, `studio:ada`"),
    Column("identity_index", pa.int32(), False, "position of `identity` in metadata `fex.identities` (sorted)"),
    Column("affect", pa.string(), False, "canonical affect name"),
    Column("affect_index", pa.int32(), False, "position of `affect` in metadata `fex.affects`"),
    Column("split", pa.string(), False, "`train`, `val` or `test`"),
    Column("fold", pa.int32(), True, "identity-disjoint fold 0..K-1 (`--folds K`), null without folds"),
    Column("block", pa.int32(), True, "time block of a video item under `--split frame`, else null"),
    Column("weight", pa.float64(), False, "sampling weight (`--balance weight`; 1.0 otherwise); mean 1 per split"),
    Column("source", pa.string(), False, "input layout that produced the record (`studio`, `jaffe`, ...)"),
    Column("source_path", pa.string(), False, "input path relative to its dataset root"),
    Column("item", pa.string(), False, "unit of ingest work; all frames of one clip or segment share it"),
    Column("ingest", pa.string(), False, "the ingest output folder, relative to the manifest's folder"),
    Column("frame", pa.int64(), True, "frame number within the video, null for stills"),
    Column("time", pa.float64(), True, "seconds from the start of the video, NaN for stills"),
    Column("affect_raw", pa.string(), True, "the label as the dataset spells it"),
    Column("intensity", pa.float64(), True, "expression intensity when the dataset gives one, else NaN"),
    Column("det_score", pa.float64(), True, "face detector score (NaN when the detector gives none)"),
    Column("face_count", pa.int32(), True, "faces the detector found in the frame"),
    Column("sharpness", pa.float64(), True, "variance of the Laplacian of the crop"),
    Column("pad_share", pa.float64(), True, "fraction of the crop outside the source frame (padded); NaN if unknown"),
    Column("crop_size", pa.int32(), False, "crop side in pixels; one value per manifest"),
    Column("align", pa.string(), True, "`ffhq` (landmarks), `bbox`, or `frame` (the whole image is the face)"),
    Column("detector", pa.string(), True, "`hog`, `cnn`, `track` or `frame`"),
    Column("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS), True,
           "68 points x0,y0,x1,y1,... in **crop** pixels; null when the crop has no landmarks"),
    Column("transform", pa.list_(pa.float64(), 6), True, "2x3 affine frame -> crop, row-major"),
)
SCHEMA = pa.schema([pa.field(c.name, c.type, c.nullable) for c in COLUMNS])
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
ARRAY_COLUMNS = ("landmarks", "transform")  # fixed-size lists, carried as 2-D numpy arrays while building
NULLABLE_INTS = {c.name: c.type for c in COLUMNS if c.nullable and pa.types.is_integer(c.type)}

# Record columns a manifest cannot be built without (docs/design.md "Ingest output").
REQUIRED_RECORD_COLUMNS = ("image", "crop_size", "source", "source_path", "item", "frame", "time",
                           "identity", "affect", "affect_raw")
RECORD_TYPES: dict[str, pa.DataType] = {
    "image": pa.string(), "crop_size": pa.int32(), "source": pa.string(), "source_path": pa.string(),
    "item": pa.string(), "frame": pa.int64(), "time": pa.float64(), "identity": pa.string(),
    "affect": pa.string(), "affect_raw": pa.string(), "intensity": pa.float64(),
    "det_score": pa.float64(), "face_count": pa.int32(), "sharpness": pa.float64(),
    "pad_share": pa.float64(), "align": pa.string(), "detector": pa.string(), "frame_width": pa.float64(),
    "frame_height": pa.float64(),
}
RECORD_LISTS = {"landmarks": 2 * N_LANDMARKS, "transform": 6}
# Landmarks are pixel coordinates: float32 is exact enough and halves the memory of a 1M-row build.
LIST_DTYPES = {"landmarks": np.float32, "transform": np.float64}
