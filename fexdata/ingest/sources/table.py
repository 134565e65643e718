"""The `csv` layout: a table that lists every file with its identity and affect.

SRC is the CSV file itself, or a folder holding exactly one CSV with these columns::

    path,identity,affect,intensity
    shots/alice_01.png,alice,happy,0.8
    shots/alice_02.png,alice,neutral,
    clips/bob.mp4,bob,surprise,

* `path`: relative to the CSV's folder (absolute paths and paths leaving that folder are rejected);
  images become stills, videos whole clips; optional `start`,`end` (seconds) cut a video segment.
* `identity`: namespaced as `csv:<identity>`, unless it already carries a namespace (`jaffe:KA`).
* `affect`: any spelling `fexdata.affects` knows; `intensity` (optional) a number.

Missing columns raise LayoutError (the whole table is unusable); a bad row (empty path, unknown
affect, a path escaping the folder, a missing file, a duplicate) becomes a reject naming its line.
Rows are yielded in natural order of their paths.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Iterator

from fexdata.errors import LayoutError
from fexdata.paths import UnsafePath, resolve_inside
from fexdata.ingest.sources._common import affect_of, is_image, is_video, natural_key
from fexdata.ingest.sources.base import Item, Reject, TABLE, layout

NAME = "csv"
EXPECTS = "a CSV file (or a folder with exactly one) with columns path,identity,affect[,intensity]"
REQUIRED = ("path", "identity", "affect")
OPTIONAL = ("intensity", "start", "end")


def _header(path: Path) -> list[str] | None:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader([fh.readline()]), None)
    except (OSError, UnicodeError, csv.Error):
        return None
    return [c.strip().lower() for c in row] if row else None


def _is_table(path: Path) -> bool:
    header = _header(path)
    return header is not None and all(c in header for c in REQUIRED)


def find_table(src: Path) -> Path:
    """The CSV to read for a SRC argument; LayoutError saying what was expected otherwise."""
    src = Path(src)
    if src.is_file():
        return src
    if not src.is_dir():
        raise LayoutError(f"{src}: no such file or folder", hint="check the path")
    tables = sorted(p for p in src.iterdir() if p.suffix.lower() == ".csv" and p.is_file() and _is_table(p))
    if len(tables) != 1:
        found = ", ".join(p.name for p in tables) or "none"
        raise LayoutError(f"{src}: expected exactly one CSV with columns {','.join(REQUIRED)} in this folder, "
                          f"found {found}", hint="pass the CSV file itself")
    return tables[0]


@layout(NAME, TABLE)
def detect(root: Path) -> bool:
    root = Path(root)
    if root.is_file():
        return root.suffix.lower() == ".csv" and _is_table(root)
    try:
        find_table(root)
    except (LayoutError, OSError):
        return False
    return True


def scan(root: Path) -> Iterator[Item | Reject]:
    table = find_table(Path(root))
    base = table.parent
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeError, csv.Error) as exc:
        raise LayoutError(f"{table}: cannot read the CSV: {exc}", hint="save it as UTF-8 CSV") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LayoutError(f"{table}: missing column(s) {', '.join(missing)}; got {','.join(header) or 'nothing'}",
                          hint=f"give the CSV a header {','.join(REQUIRED)}[,intensity][,start,end]")
    col = {name: header.index(name) for name in REQUIRED + OPTIONAL if name in header}
    results: list[tuple[tuple, Item | Reject]] = []
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        result = _row(cells, line, base, table.name, first_line)
        results.append((natural_key(cells["path"]) + ((3, line, ""),), result))
    for _, result in sorted(results, key=lambda r: r[0]):
        yield result


def _number(text: str, what: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def _row(cells: dict[str, str], line: int, base: Path, table: str, first_line: dict[str, int]) -> Item | Reject:
    where = f"{table} line {line}"
    raw_path = cells["path"]
    if not raw_path:
        return Reject(f"{table}:{line}", f"{where}: empty path", NAME)
    try:
        full = resolve_inside(raw_path, base)
    except UnsafePath as exc:
        return Reject(raw_path, f"{where}: {exc}", NAME)
    rel = Path(os.path.normpath(raw_path)).as_posix()
    affect, why = affect_of(cells["affect"])
    if affect is None:
        return Reject(rel, f"{where}: {why}", NAME)
    identity = cells["identity"]
    if not identity:
        return Reject(rel, f"{where}: empty identity", NAME)
    if not full.exists():
        return Reject(rel, f"{where}: file not found", NAME)
    try:
        intensity = _number(cells.get("intensity", ""), "intensity")
        start = _number(cells.get("start", ""), "start")
        end = _number(cells.get("end", ""), "end")
    except ValueError as exc:
        return Reject(rel, f"{where}: {exc}", NAME)
    if (start is None) != (end is None):
        return Reject(rel, f"{where}: give both start and end, or neither", NAME)
    if start is not None and (start < 0 or end <= start):
        return Reject(rel, f"{where}: segment {start:g}-{end:g}s must have 0 <= start < end", NAME)
    if is_video(rel):
        kind = "video"
    elif is_image(rel) and start is None:
        kind = "image"
    else:
        return Reject(rel, f"{where}: not an image or a video (by its extension)" if not is_image(rel)
                      else f"{where}: start/end only apply to videos", NAME)
    key = rel if start is None else f"{rel}@{start:g}-{end:g}"
    if key in first_line:
        return Reject(rel, f"{where}: duplicate of line {first_line[key]}", NAME)
    first_line[key] = line
    if ":" not in identity:
        identity = f"{NAME}:{identity}"
    return Item(NAME, rel, identity, affect, cells["affect"], kind=kind, start=start, end=end,
                intensity=intensity)
