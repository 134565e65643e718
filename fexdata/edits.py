"""The column table of `fex edit`'s DIR/edits.parquet (written by fextrain.edit; rendered in docs/edit.md).

One row per edited face per frame per target: where the face was, how it was framed (the transform
paste-back inverts), which source affect the encoder was given and why, what it was edited to, and the
output file. Frames and photos that were not edited (no face, outside --start/--end, a schedule gap) have
no row.
"""
from __future__ import annotations

import pyarrow as pa

from fexdata.schema import Column, Table

EDITS = Table("edits", "edit.md", strict=False, columns=(
    Column("input", pa.string(), False, "the input file as given on the command line (input lists: as listed)"),
    Column("kind", pa.string(), False, "`image` or `video`"),
    Column("frame", pa.int64(), True, "video frame index (0-based, in the whole file); null for photos"),
    Column("time", pa.float64(), False, "seconds from the start of the video (frame / fps); NaN for photos"),
    Column("face", pa.int32(), False,
           "face number: in a photo 0 = the largest; in a video its track (numbered by first appearance, then left to right)"),
    Column("box", pa.list_(pa.float64(), 4), False, "detector box x0, y0, x1, y1 in frame pixels"),
    Column("transform", pa.list_(pa.float64(), 6), False,
           "2x3 affine frame -> model crop, row-major (paste-back goes through its inverse)"),
    Column("detector", pa.string(), False,
           "`hog`, `cnn`, `track` (video frames between detections) or `frame` (whole-image fallback)"),
    Column("source_affect", pa.string(), False, "the source affect the encoder was given (an affect spec)"),
    Column("source_confidence", pa.float64(), False, "probability of the estimated source affect; NaN when given"),
    Column("source_by", pa.string(), False,
           "`given` (--from), `csv` (the input list), `discriminator` (the model's head) or `judge`"),
    Column("target", pa.string(), False, "target name: the output's file stem"),
    Column("target_vector", pa.list_(pa.float64()), False,
           "target affect weights in the run's affect order (`affects` in edit.json)"),
    Column("output", pa.string(), False, "the output file, relative to DIR"),
    Column("sharpness", pa.float64(), False,
           "Laplacian variance of the face box in the output frame over the same box in the input, at full "
           "resolution (1 = as sharp; NaN for a box under 3 px or a flat input box)"),
))
