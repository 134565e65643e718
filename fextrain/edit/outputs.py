"""Where `fex edit` writes, and the grid figure of one input.

    DIR/<input>/<target>.png | .mp4      the edited photo or video, full resolution
    DIR/<input>/grid.png                 the source and every target side by side, around the faces
                                         (one frame of a video)
    DIR/<input>/crops/...                with --crops: the aligned input and output crops
    DIR/.parts/<input+target>-<input signature>.parquet   that output's rows; its presence means done
    DIR/edits.parquet, DIR/rejects/, DIR/edit.json

`<input>` is the input's readable key (fextrain.edit.inputs), and belongs to that one input file in DIR for
good: edit.json's `inputs` records each folder's owner (the file's absolute path), so a later run into DIR
finds the same input's outputs again, and gives a different file whose key is taken (by a recorded owner,
or by a folder with files fex did not record) its key plus a short hash of its path. No output is ever
overwritten by a different input.

Parts are named by a hash of (input key, target) plus a signature of the input file (size, mtime), so a
re-run skips what is done, and an input that changed since is edited again (its old part replaced).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

from fexdata.errors import EditError
from fexdata.images import write_png
from fexdata.ingest.records import stable_hash
from fextrain.edit.inputs import EditInput
from fextrain.edit.table import PARTS_DIR
from fextrain.edit.targets import Target

GRID_NAME = "grid.png"
GRID_HEIGHT = 256   # tile height in the grid figure
LABEL_PX = 22


def claim_folders(out: Path, items: list[EditInput], owners: dict[str, str]
                  ) -> tuple[list[EditInput], dict[str, str]]:
    """The inputs with their output folder under DIR, and the owners (key -> absolute input path) with theirs
    added. An input recorded before keeps its folder; a new one takes its key if free, else key-<hash>."""
    owners = dict(owners)
    key_of = {path: key for key, path in owners.items()}
    claimed = []
    for item in items:
        path = str(item.path)
        key = key_of.get(path)
        if key is None:
            candidates = [item.key] + [f"{item.key}-{stable_hash(path, length=n)}" for n in (8, 16, 40)]
            key = next((k for k in candidates if _free(out, k, owners)), None)
            if key is None:  # only a hash collision on every length, or folders made to collide
                raise EditError(f"{out}: no free output folder for {item.shown}", hint="use another --out")
            owners[key], key_of[path] = path, key
        claimed.append(dataclasses.replace(item, key=key))
    return claimed, owners


def _free(out: Path, key: str, owners: dict[str, str]) -> bool:
    """Unrecorded, and nothing (but sub-folders: other inputs' keys may nest) is in DIR/key."""
    folder = out / key
    if key in owners or (folder.exists() and not folder.is_dir()):
        return False
    return not folder.is_dir() or not any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


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
