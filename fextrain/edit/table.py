"""DIR/edits.parquet: its rows (columns: fexdata.edits.EDITS, the declaration of record), written per (input,
target) as parts in DIR/.parts/ after the output they describe and the input's grid (a part is that output's
"done" mark) and gathered into edits.parquet at the end of every run."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from fexdata import parquet
from fexdata.edits import EDITS
from fexdata.errors import EditError
from fexdata.ingest import records as R

PARTS_DIR = ".parts"
TABLE = "edits.parquet"
# For a damaged edits.parquet or part (fexdata.parquet names it): a run redoes the outputs of missing parts.
DAMAGED_HINT = "delete that file and re-run the same `fex edit` command: it redoes what the file recorded"


def edit_row(input_: str, kind: str, frame: int | None, time: float, face: Any, source: str, confidence: float,
             source_by: str, target: str, vector: Iterable[float], output: str, sharpness: float) -> dict[str, Any]:
    """One row; `face` is a fextrain.edit.faces.FaceCrop, `sharpness` paste.sharpness_ratio of its box."""
    return {"input": input_, "kind": kind, "frame": frame, "time": time, "face": face.index,
            "box": list(face.box), "transform": face.transform.reshape(-1).tolist(), "detector": face.detector,
            "source_affect": source, "source_confidence": float(confidence), "source_by": source_by,
            "target": target, "target_vector": [float(v) for v in vector], "output": output,
            "sharpness": float(sharpness)}


def write_part(path: Path, rows: list[dict[str, Any]]) -> None:
    """One (input, target)'s rows, atomically (ingest's part writer: `frame` reads back as Int64)."""
    R.write_part(path, rows, EDITS)


def gather(out: Path) -> int:
    """Write DIR/edits.parquet from every part (sorted by input, target, frame, face); returns its rows."""
    tables = [parquet.read_table(p, error=EditError, hint=DAMAGED_HINT)
              for p in sorted((out / PARTS_DIR).glob("*.parquet"))]
    if not tables:
        R.write_part(out / TABLE, [], EDITS)
        return 0
    table = pa.concat_tables(tables).sort_by([("input", "ascending"), ("target", "ascending"),
                                              ("frame", "ascending"), ("face", "ascending")])
    table = table.replace_schema_metadata(tables[0].schema.metadata)  # the parts' pandas metadata: `frame` is Int64
    parquet.write_table(table, out / TABLE)
    return table.num_rows
