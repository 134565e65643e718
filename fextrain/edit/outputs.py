"""Where `fex edit` writes, and the grid figure of one input.

    DIR/<input>/<target>.png | .mp4      the edited photo or video, full resolution
    DIR/<input>/grid.png                 the source and every target side by side, around the faces
                                         (one frame of a video)
    DIR/<input>/crops/...                with --crops: the aligned input and output crops
    DIR/.parts/<input+target>-<input signature>.parquet   that output's rows; its presence means done
    DIR/edits.parquet, DIR/rejects/, DIR/edit.json

Parts are named by a hash of (input key, target) plus a signature of the input file (size, mtime), so a
re-run skips what is done, and an input that changed since is edited again (its old part replaced).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fexdata.images import write_png
from fexdata.ingest.records import stable_hash
from fextrain.edit.inputs import EditInput
from fextrain.edit.table import PARTS_DIR
from fextrain.edit.targets import Target

GRID_NAME = "grid.png"
GRID_HEIGHT = 256   # tile height in the grid figure
LABEL_PX = 22


def output_path(out: Path, item: EditInput, target: Target) -> Path:
    return out / item.key / f"{target.name}{'.mp4' if item.kind == 'video' else '.png'}"


def grid_path(out: Path, item: EditInput) -> Path:
    return out / item.key / GRID_NAME


def crop_path(out: Path, item: EditInput, frame: int | None, face: int, what: str) -> Path:
    where = f"f{frame:06d}_" if frame is not None else ""
    return out / item.key / "crops" / f"{where}face{face}_{what}.png"


def signature(path: Path) -> str:
    st = os.stat(path)
    return stable_hash(str(st.st_size), str(st.st_mtime_ns), length=8)


def part_path(out: Path, item: EditInput, target: Target, sig: str) -> Path:
    return out / PARTS_DIR / f"{stable_hash(item.key, target.name)}-{sig}.parquet"


def done(out: Path, item: EditInput, target: Target, sig: str) -> bool:
    return part_path(out, item, target, sig).is_file() and output_path(out, item, target).is_file()


def drop_stale_parts(out: Path, item: EditInput, target: Target, sig: str) -> None:
    """Remove the parts of this (input, target) written for an earlier version of the input."""
    keep = part_path(out, item, target, sig).name
    for p in (out / PARTS_DIR).glob(f"{stable_hash(item.key, target.name)}-*.parquet"):
        if p.name != keep:
            p.unlink()


def face_region(boxes: list[tuple[float, float, float, float]], shape: tuple[int, ...],
                margin: float = 0.6) -> tuple[int, int, int, int]:
    """The frame region around the faces (their union grown by `margin` of its size on each side), so a
    grid of a large photo shows the faces, not a thumbnail where they are a few pixels wide."""
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    grow = margin * max(x1 - x0, y1 - y0)
    h, w = shape[:2]
    return (max(0, int(x0 - grow)), max(0, int(y0 - grow)), min(w, int(x1 + grow + 1)), min(h, int(y1 + grow + 1)))


def write_grid(dest: Path, tiles: list[tuple[str, np.ndarray]], region: tuple[int, int, int, int] | None = None,
               per_row: int = 8) -> Path:
    """The tiles (label, RGB frame) side by side at GRID_HEIGHT, cut to `region` (x0, y0, x1, y1) when given,
    labelled, `per_row` to a row."""
    cells = []
    for label, img in tiles:
        if region is not None:
            x0, y0, x1, y1 = region
            img = img[y0:y1, x0:x1]
        h, w = img.shape[:2]
        width = max(1, int(round(w * GRID_HEIGHT / h)))
        interp = cv2.INTER_AREA if h > GRID_HEIGHT else cv2.INTER_CUBIC
        cell = np.full((GRID_HEIGHT + LABEL_PX, width, 3), 255, np.uint8)
        cell[:GRID_HEIGHT] = cv2.resize(img, (width, GRID_HEIGHT), interpolation=interp)
        cv2.putText(cell, label[: max(4, width // 9)], (4, GRID_HEIGHT + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    rows = [np.hstack(cells[i:i + per_row]) for i in range(0, len(cells), per_row)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return write_png(dest, np.vstack(rows))
