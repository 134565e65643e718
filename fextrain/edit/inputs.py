"""What `fex edit` was given: image and video files, folders searched recursively, CSV lists of `path[,affect]`.

Each input becomes an `EditInput` with a `key`: the folder its outputs go to under DIR, readable (a named
file's name, a folder's files by their path from the folder's parent, a CSV row's path as listed; extension
dropped) and unique in this command (a short hash is added when two inputs would share one);
fextrain.edit.outputs.claim_folders then keeps it unique across every run into the same DIR. Folder
contents are sorted, so the same command lists the same inputs in the same order, and a folder that holds
DIR is searched without it (a rerun never edits its own outputs). A CSV row whose affect is not a known
label becomes a reject; a listed file that does not exist is rejected when it is read, with the reason
ingest would give.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from fexdata.affects import UnknownAffect, canonical_affect
from fexdata.errors import EditError
from fexdata.ingest import records as R

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
TABLE_EXTS = (".csv",)
# Names DIR holds beside the input folders; an input key starting with one gets a leading '_'.
RESERVED = ("edits.parquet", "edit.json", "rejects", ".parts", ".edit.lock")


@dataclass(frozen=True)
class EditInput:
    path: Path              # absolute
    shown: str              # the path as the user gave it (CSV rows: relative to the CSV's folder)
    kind: str               # image | video
    root: str               # the INPUT argument it came from (ingest's `source_root`)
    affect: str | None = None   # source affect from a CSV row (canonical); None: --from decides
    key: str = ""           # output folder under DIR (POSIX, relative)


def collect_inputs(args: Sequence[str | os.PathLike], out: str | os.PathLike | None = None
                   ) -> tuple[list[EditInput], list[dict[str, Any]]]:
    """(inputs, reject rows) for the INPUT arguments, in order, each file once; folders are searched without
    the output folder `out` (DIR), and a folder inside DIR is refused: its files are fex's outputs."""
    found: list[EditInput] = []
    rejects: list[dict[str, Any]] = []
    dest = Path(out).resolve() if out is not None else None
    for arg in args:
        path = Path(arg)
        if not path.exists():
            raise EditError(f"{arg}: no such file or folder", hint="check the path")
        if path.is_dir():
            if dest is not None and path.resolve().is_relative_to(dest):
                raise EditError(f"{arg}: this folder is inside the output folder {out}",
                                hint="name the input files themselves, or copy them out of the output folder")
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))):
                kind = _kind(file)
                if kind and not (dest is not None and file.resolve().is_relative_to(dest)):
                    rel = file.relative_to(path.parent).as_posix()
                    found.append(EditInput(file.resolve(), str(Path(arg) / file.relative_to(path)), kind, str(arg),
                                           key=_stem(rel)))
        elif path.suffix.lower() in TABLE_EXTS:
            rows, bad = _read_table(path, str(arg))
            found += rows
            rejects += bad
        else:
            # Any other named file is taken as a photo: read_rgb then says what it is not.
            found.append(EditInput(path.resolve(), str(arg), _kind(path) or "image", str(arg), key=_stem(path.name)))
    return _unique(found), rejects


def _kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _stem(rel_posix: str) -> str:
    p = PurePosixPath(rel_posix)
    parts = [R.slug(x) for x in (*p.parent.parts, p.stem) if x not in ("", ".", "/")]
    parts = [x for x in parts if x not in ("..",)] or ["input"]
    if parts[0] in RESERVED:
        parts[0] = "_" + parts[0]
    return "/".join(parts)


def _read_table(path: Path, given: str) -> tuple[list[EditInput], list[dict[str, Any]]]:
    """Rows of `path[,affect]` (a header row `path,affect` is optional); paths relative to the CSV's folder."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeError, csv.Error) as exc:
        raise EditError(f"{given}: cannot read the input list ({exc})",
                        hint="an input list is a UTF-8 CSV of path[,affect] rows") from None
    if rows and rows[0] and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
    inputs, rejects = [], []
    for line, row in enumerate(rows, start=1):
        listed = row[0].strip()
        target = Path(listed) if os.path.isabs(listed) else path.parent / listed
        affect = None
        if len(row) > 1 and row[1].strip():
            try:
                affect = canonical_affect(row[1])
            except UnknownAffect as exc:
                rejects.append(R.reject_row("csv", given, listed, listed, R.LAYOUT, f"{given} row {line}: {exc}"))
                continue
        kind = _kind(target) or "image"
        key = _stem(listed if not os.path.isabs(listed) else target.name)
        inputs.append(EditInput(target.resolve(), listed, kind, given, affect, key))
    return inputs, rejects


def _unique(inputs: list[EditInput]) -> list[EditInput]:
    """Each file once (the first mention wins); keys made unique by a hash of the path where they clash."""
    seen: set[Path] = set()
    kept = []
    for it in inputs:
        if it.path not in seen:
            seen.add(it.path)
            kept.append(it)
    counts: dict[str, int] = {}
    for it in kept:
        counts[it.key] = counts.get(it.key, 0) + 1
    return [it if counts[it.key] == 1 else
            EditInput(it.path, it.shown, it.kind, it.root, it.affect, f"{it.key}-{R.stable_hash(str(it.path), length=8)}")
            for it in kept]
