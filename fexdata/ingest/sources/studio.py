"""Studio recordings (Unreal MetaHuman renders, as in FExGAN-Meta): clips, frame sequences, long takes.

Expected tree (any mix of the three forms)::

    ROOT/
      ada/                      one folder per character (identity "studio:ada")
        joy.mp4                 a clip per affect: <affect>.<mp4|mov|avi|mkv|webm|m4v>
        anger_02.mov            ... a numeric suffix allows several clips of one affect
        sadness/                an image sequence per affect, as a render queue writes it:
          frame.0001.png        numbered frames (frame.0001.png, Shot_0001.jpg, 0001.png), natural order
          frame.0002.png
          fps.txt               optional: the sequence's frame rate (one number); may also sit in ada/ or ROOT/
      bo.mp4                    one long take per character ...
      bo.csv                    ... with its segment sheet: header `affect,start,end` (seconds; optional
                                `intensity`), one row per segment

Affect names are any spelling `fexdata.affects` knows (joy, happy, HA, ...). Every item is labelled
from its name only; an unknown affect, a take without a sheet, a sheet without a take, a bad sheet row
(missing columns, negative times, end <= start, overlapping segments, unknown affect) each become a
reject that names the file and line.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import (
    Entry, affect_of, is_image, is_video, list_dir, names_of, natural_key, rel_of, require_dir, subdirs_of,
)
from fexdata.ingest.sources.base import Item, Reject, STUDIO, layout

NAME = "studio"
EXPECTS = ("ROOT/<identity>/<affect>.mp4 clips, ROOT/<identity>/<affect>/frame.0001.png sequences, "
           "or ROOT/<identity>.mp4 takes with ROOT/<identity>.csv (affect,start,end)")
FPS_SIDECAR = "fps.txt"
SHEET_COLUMNS = ("affect", "start", "end")

_CLIP_SUFFIX = re.compile(r"^(?P<label>.+?)[ _.-]?\d+$")       # joy_02 -> joy
_FRAME = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)\.[A-Za-z0-9]+$")  # frame.0001.png / Shot_0001.jpg / 0001.png
# detect() only: a render queue pads frame numbers to 4+ digits (frame.0001.png); 000.png-style
# names of three digits are left to the generic folder layout.
_RENDER_FRAME = re.compile(r"^(?P<prefix>.*?)(?P<num>\d{4,})\.[A-Za-z0-9]+$")


def _label_of(stem: str) -> tuple[str | None, str, str]:
    """(affect, raw label, reason) for a clip or sequence name, allowing a numeric take suffix."""
    affect, why = affect_of(stem)
    if affect is not None:
        return affect, stem, ""
    m = _CLIP_SUFFIX.match(stem)
    if m:
        affect, _ = affect_of(m["label"])
        if affect is not None:
            return affect, m["label"], ""
    return None, stem, why


# ---------------------------------------------------------------- detect


def _looks_like_render(folder: Path) -> bool:
    names = [n for n in names_of(folder, limit=64) if is_image(n)]
    matches = [_RENDER_FRAME.match(n) for n in names]
    return len(names) >= 2 and all(matches) and len({m["prefix"] for m in matches}) == 1


@layout(NAME, STUDIO)
def detect(root: Path) -> bool:
    root = Path(root)
    if not root.is_dir():
        return False
    top = names_of(root)
    lowered = {n.lower() for n in top}
    if any(is_video(n) and f"{Path(n).stem.lower()}.csv" in lowered for n in top):
        return True
    for ident in subdirs_of(root, limit=32):
        for name in names_of(ident, limit=64):
            if is_video(name) and _label_of(Path(name).stem)[0] is not None:
                return True
            sub = ident / name
            if _label_of(name)[0] is not None and sub.is_dir() and _looks_like_render(sub):
                return True
    return False


# ---------------------------------------------------------------- scan


def scan(root: Path) -> Iterator[Item | Reject]:
    root = require_dir(root)
    entries, rejects = list_dir(root, root, NAME)
    yield from rejects
    files = {e.name: e for e in entries if not e.is_dir}
    sheets = {Path(n).stem: e for n, e in files.items() if Path(n).suffix.lower() == ".csv"}
    takes = {Path(n).stem for n in files if is_video(n)}
    for e in entries:
        if e.is_dir:
            yield from _scan_identity(e, root)
        elif is_video(e.name):
            yield from _scan_take(e, sheets.get(e.path.stem), root)
        elif Path(e.name).suffix.lower() == ".csv":
            if Path(e.name).stem not in takes:
                yield Reject(e.rel, f"segment sheet without a take: expected a video named {Path(e.name).stem}.mp4 "
                                    f"(or .mov/.avi/.mkv/.webm) beside it", NAME)
        elif e.name != FPS_SIDECAR:
            yield Reject(e.rel, "unexpected file at the root: expected <identity>/ folders, or <identity>.mp4 "
                                "with a segment sheet <identity>.csv", NAME)


def _scan_identity(folder: Entry, root: Path) -> Iterator[Item | Reject]:
    identity = f"{NAME}:{folder.name}"
    entries, rejects = list_dir(folder.path, root, NAME)
    yield from rejects
    for e in entries:
        if e.is_dir:
            yield from _scan_sequence(e, identity, root)
        elif is_video(e.name):
            affect, raw, why = _label_of(e.path.stem)
            if affect is None:
                yield Reject(e.rel, f"clip name is not an affect: {why}", NAME)
            else:
                yield Item(NAME, e.rel, identity, affect, raw, kind="video")
        elif e.name == FPS_SIDECAR:
            continue
        elif is_image(e.name):
            yield Reject(e.rel, f"loose image: put sequence frames in {folder.name}/<affect>/ "
                                f"(e.g. {folder.name}/joy/frame.0001.png)", NAME)
        else:
            yield Reject(e.rel, f"unexpected file: expected {folder.name}/<affect>.mp4 clips or "
                                f"{folder.name}/<affect>/ frame folders", NAME)


def _read_fps(folder: Path, root: Path) -> tuple[float | None, str]:
    """Frame rate from the nearest fps.txt (sequence folder, then identity folder, then root)."""
    for where in (folder, folder.parent, root):
        side = where / FPS_SIDECAR
        if not side.is_file():
            continue
        try:
            text = side.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            return None, f"cannot read {rel_of(side, root)}: {exc}"
        try:
            fps = float(text)
        except ValueError:
            fps = math.nan
        if not math.isfinite(fps) or fps <= 0:
            return None, f"{rel_of(side, root)} must hold one positive number (frames per second), got {text[:20]!r}"
        return fps, ""
    return None, ""


def _scan_sequence(folder: Entry, identity: str, root: Path) -> Iterator[Item | Reject]:
    affect, raw, why = _label_of(folder.name)
    if affect is None:
        yield Reject(folder.rel, f"sequence folder name is not an affect: {why}", NAME)
        return
    entries, rejects = list_dir(folder.path, root, NAME)
    yield from rejects
    numbered: list[tuple[Entry, str, int]] = []
    for e in entries:
        if e.name == FPS_SIDECAR:
            continue
        m = _FRAME.match(e.name) if (not e.is_dir and is_image(e.name)) else None
        if m is None:
            yield Reject(e.rel, "not a numbered frame: a sequence folder holds render frames named like "
                                "frame.0001.png or Shot_0001.jpg", NAME)
            continue
        numbered.append((e, m["prefix"], int(m["num"])))
    prefixes: dict[str, str] = {}
    for e, prefix, _ in numbered:
        prefixes.setdefault(prefix, e.name)
    if len(prefixes) > 1:
        shown = ", ".join(f"{p or '(none)'}* (e.g. {n})" for p, n in prefixes.items())
        yield Reject(folder.rel, f"frames with different name prefixes ({shown}); keep one render pass "
                                 f"per folder", NAME)
        return
    frames: list[Entry] = []
    seen: dict[int, str] = {}
    for e, _, num in numbered:
        if num in seen:  # e.g. frame.0001.png beside frame.0001.jpg: which one plays is unknowable
            yield Reject(e.rel, f"frame number {num} appears twice in the sequence (also {seen[num]})", NAME)
            continue
        seen[num] = e.name
        frames.append(e)
    if not frames:
        yield Reject(folder.rel, "sequence folder holds no frames", NAME)
        return
    fps, fps_problem = _read_fps(folder.path, root)
    if fps_problem:
        yield Reject(folder.rel, fps_problem, NAME)
        return
    frames.sort(key=lambda e: natural_key(e.name))
    yield Item(NAME, folder.rel, identity, affect, raw, kind="sequence",
               frames=tuple(e.rel for e in frames), fps=fps)


# ---------------------------------------------------------------- long takes


def _scan_take(take: Entry, sheet: Entry | None, root: Path) -> Iterator[Item | Reject]:
    identity = f"{NAME}:{take.path.stem}"
    if sheet is None:
        yield Reject(take.rel, f"long take without a segment sheet: expected {take.path.stem}.csv beside it "
                               f"with columns {','.join(SHEET_COLUMNS)} (seconds)", NAME)
        return
    segments, problems = read_sheet(sheet.path, sheet.rel)
    yield from problems
    for seg in segments:
        yield Item(NAME, take.rel, identity, seg["affect"], seg["raw"], kind="video",
                   start=seg["start"], end=seg["end"], intensity=seg["intensity"],
                   extra=(("sheet", sheet.rel), ("line", str(seg["line"]))))


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def read_sheet(path: Path, rel: str) -> tuple[list[dict], list[Reject]]:
    """Parse a segment sheet into valid segments (sorted by start) and one reject per bad row.

    Overlapping segments are both rejected: the overlap would carry two labels and we never pick one.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeError, csv.Error) as exc:
        return [], [Reject(rel, f"cannot read segment sheet: {exc}", NAME)]
    if not rows:
        return [], [Reject(rel, f"segment sheet is empty: expected a header {','.join(SHEET_COLUMNS)}", NAME)]
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in SHEET_COLUMNS if c not in header]
    if missing:
        return [], [Reject(rel, f"segment sheet lacks column(s) {', '.join(missing)}: expected a header "
                                f"{','.join(SHEET_COLUMNS)}[,intensity], got {','.join(header) or 'nothing'}",
                           NAME)]
    col = {name: header.index(name) for name in header}
    segments: list[dict] = []
    rejects: list[Reject] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        where = f"line {line} ({cells['affect']},{cells['start']},{cells['end']})"
        affect, why = affect_of(cells["affect"])
        try:
            if affect is None:
                raise ValueError(why)
            start = _number(cells["start"], "start")
            end = _number(cells["end"], "end")
            if start < 0 or end < 0:
                raise ValueError("times must not be negative")
            if end <= start:
                raise ValueError(f"end {end:g} is not after start {start:g}")
            intensity = None
            if cells.get("intensity"):
                intensity = _number(cells["intensity"], "intensity")
        except ValueError as exc:
            rejects.append(Reject(rel, f"segment sheet {where}: {exc}", NAME))
            continue
        segments.append(dict(line=line, affect=affect, raw=cells["affect"], start=start, end=end,
                             intensity=intensity))
    segments.sort(key=lambda s: (s["start"], s["end"], s["line"]))
    clashes: dict[int, list[dict]] = {}
    for i, seg in enumerate(segments):
        for other in segments[i + 1:]:
            if other["start"] >= seg["end"]:
                break  # sorted by start: nothing later can overlap seg
            clashes.setdefault(seg["line"], []).append(other)
            clashes.setdefault(other["line"], []).append(seg)
    for seg in sorted((s for s in segments if s["line"] in clashes), key=lambda s: s["line"]):
        others = ", ".join(f"line {o['line']} ({o['start']:g}-{o['end']:g}s)" for o in clashes[seg["line"]])
        rejects.append(Reject(rel, f"segment sheet line {seg['line']} ({seg['raw']},{seg['start']:g},{seg['end']:g}) "
                                   f"overlaps {others}; overlapping segments are left out", NAME))
    return [s for s in segments if s["line"] not in clashes], rejects
