"""The manifest's column table of record (`MANIFEST`), in file order, and its metadata keys.

docs/manifest.md renders the table (`make docs`; a test keeps the two in step). The writer takes its
Arrow schema from it and the reader its nullable integers; the ingest records a build reads are
`fexdata.ingest.records.RECORDS`.
"""
from __future__ import annotations

import pyarrow as pa

from fexdata.ingest.records import N_LANDMARKS
from fexdata.schema import Column, Table

SCHEMA_VERSION = 1
META_PREFIX = "fex."

MANIFEST = Table("manifest", "manifest.md", columns=(
    Column("image", pa.string(), False, "crop path, POSIX, relative to the manifest's folder"),
    Column("identity", pa.string(), False, "namespaced identity, e.g. `jaffe:KA`, `studio:ada` "
                                           "(`source:` is prefixed when ingest left it bare)"),
    Column("identity_index", pa.int32(), False, "position of `identity` in metadata `fex.identities` (sorted)"),
    Column("affect", pa.string(), False, "canonical affect name"),
    Column("affect_index", pa.int32(), False, "position of `affect` in metadata `fex.affects`"),
    Column("split", pa.string(), False, "`train`, `val` or `test`"),
    Column("fold", pa.int32(), True, "identity-disjoint fold 0..K-1 (`--folds K`); null without folds"),
    Column("block", pa.int32(), True, "time block 0..blocks-1 of a video frame under `--split frame`; null otherwise"),
    Column("weight", pa.float64(), False,
           "sampling weight (`--balance weight`; 1.0 otherwise); mean 1 within each split"),
    Column("source", pa.string(), False, "input layout that produced the record (`studio`, `jaffe`, ...)"),
    Column("source_path", pa.string(), False, "input path relative to its dataset root"),
    Column("item", pa.string(), False, "unit of ingest work; all frames of one clip or segment share it "
                                       "(unique within `ingest` + `source`)"),
    Column("ingest", pa.string(), False,
           "the ingest output folder, relative to the manifest's folder (`.` when the same)"),
    Column("frame", pa.int64(), True, "frame number within the video; null for stills"),
    Column("time", pa.float64(), True, "seconds from the start of the video; NaN for stills"),
    Column("affect_raw", pa.string(), True, "the label as the dataset spells it"),
    Column("intensity", pa.float64(), True, "expression intensity 0..1 when the dataset gives one, or, with "
                                            "`--ramp SECONDS`, min(1, seconds since the clip started / SECONDS) "
                                            "for video frames; else NaN"),
    Column("det_score", pa.float64(), True, "face detector score (NaN when the detector gives none)"),
    Column("face_count", pa.int32(), True, "faces the detector found in the frame"),
    Column("sharpness", pa.float64(), True, "variance of the Laplacian of the crop"),
    Column("pad_share", pa.float64(), True, "fraction of the crop's area outside the source frame, filled by "
                                            "`fex ingest --pad` (0: none); NaN for records that predate it"),
    Column("crop_size", pa.int32(), False, "crop side in pixels; one value per manifest"),
    Column("align", pa.string(), True, "`ffhq` (landmark alignment), `bbox`, or `frame` "
                                       "(the whole image is the face: datasets of crops)"),
    Column("detector", pa.string(), True, "`hog`, `cnn`, `track` or `frame`"),
    Column("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS), True,
           "68 points x0,y0,x1,y1,... in **crop** pixels; null when the crop has no landmarks"),
    Column("transform", pa.list_(pa.float64(), 6), True,
           "the 2x3 affine frame -> crop, row-major (invert it to map crop points back to the frame)"),
))
