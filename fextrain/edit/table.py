"""DIR/edits.parquet: one row per edited face per frame per target. The one declaration of its columns.

`COLUMNS` is the schema of record: the Parquet schema and the table in docs/edit.md both come from it
(`python -m fextrain.edit.table` prints the docs table). Rows are written per (input, target) as parts in
DIR/.parts/ right after the output they describe (a part is that output's "done" mark), and gathered
into edits.parquet at the end of every run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fexdata.ingest import records as R
from fexdata.paths import atomic_path

# name, Arrow type, meaning
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("input", pa.string(), "the input file as given on the command line (CSV rows: as listed)"),
    ("kind", pa.string(), "`image` or `video`"),
    ("frame", pa.int64(), "video frame index (0-based, in the whole file); null for photos"),
    ("time", pa.float64(), "seconds from the start of the video (frame / fps); NaN for photos"),
    ("face", pa.int32(), "face number in the frame, 0 = the largest"),
    ("box", pa.list_(pa.float64(), 4), "detector box x0, y0, x1, y1 in frame pixels"),
    ("transform", pa.list_(pa.float64(), 6), "2x3 affine frame -> model crop, row-major (paste-back inverts it)"),
    ("detector", pa.string(), "`hog`, `cnn`, `track` (video frames between detections) or `frame` (whole-image fallback)"),
    ("source_affect", pa.string(), "the source affect given or estimated (an affect spec)"),
    ("source_confidence", pa.float64(), "probability of the estimated source affect; NaN when it was given"),
    ("source_by", pa.string(), "`given` (--from), `csv` (the input list), `discriminator` (the model's head) or `judge`"),
    ("target", pa.string(), "target name: the output's file stem"),
    ("target_vector", pa.list_(pa.float64()), "target affect weights in the run's affect order (edit.json `affects`)"),
    ("output", pa.string(), "the output file, relative to DIR"),
)
SCHEMA = pa.schema([(name, kind) for name, kind, _ in COLUMNS])
PARTS_DIR = ".parts"
TABLE = "edits.parquet"


def write_part(path: Path, rows: list[dict[str, Any]]) -> None:
    """One (input, target)'s rows, atomically (ingest's part writer: `frame` reads back as Int64)."""
    R.write_part(path, rows, SCHEMA)


def gather(out: Path) -> int:
    """Write DIR/edits.parquet from every part (sorted by input, target, frame, face); returns its rows."""
    tables = [pq.read_table(p) for p in sorted((out / PARTS_DIR).glob("*.parquet"))]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    if table.num_rows:
        table = table.sort_by([("input", "ascending"), ("target", "ascending"), ("frame", "ascending"),
                               ("face", "ascending")])
    with atomic_path(out / TABLE) as tmp:
        pq.write_table(table.replace_schema_metadata((tables[0].schema.metadata if tables else None)), tmp,
                       compression="zstd")
    return table.num_rows


def docs_table(columns: Iterable[tuple[str, pa.DataType, str]] = COLUMNS) -> str:
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {meaning} |" for name, kind, meaning in columns]
    return "\n".join(lines)


def read_edits(out: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(out) / TABLE)


def edit_row(input_: str, kind: str, frame: int | None, time: float, face: Any, source: str, confidence: float,
             source_by: str, target: str, vector: Iterable[float], output: str) -> dict[str, Any]:
    """One row; `face` is a fextrain.edit.faces.FaceCrop."""
    return {"input": input_, "kind": kind, "frame": frame, "time": time, "face": face.index,
            "box": list(face.box), "transform": face.transform.reshape(-1).tolist(), "detector": face.detector,
            "source_affect": source, "source_confidence": float(confidence), "source_by": source_by,
            "target": target, "target_vector": [float(v) for v in vector], "output": output}


if __name__ == "__main__":
    print(docs_table())
