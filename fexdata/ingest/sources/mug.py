"""MUG Facial Expression Database: per-subject takes of each expression as numbered JPEG frames.

Expected tree (ROOT may be the folder holding the subject folders, e.g. `subjects3/`, or one above)::

    ROOT/
      001/                      subject (identity `mug:001`)
        [session1/]             optional session level (same person)
          anger/                anger disgust fear happiness neutral sadness surprise
            take000/            one recording: onset -> apex -> offset
              img_0000.jpg
              img_0001.jpg
              ...

A take starts and ends near neutral and peaks in the middle, and MUG gives no per-frame labels. fex
takes the middle `APEX_FRACTION` (a third) of each take's frames with the folder's expression
(`role=apex`) and its first `NEUTRAL_FRAMES` (1) frame as neutral (`role=onset`); a `neutral` take is
neutral throughout. Change them with `scan(root, apex_fraction=..., neutral_frames=...)`. Use
`fex ingest --every N` on top to thin the 19 fps takes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import Entry, find_bases, has_base, is_image, list_dir, require_dir, subdirs_of
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "mug"
EXPECTS = "subjects3/001/anger/take000/img_0000.jpg: <subject ###>/[session#/]<expression>/<take>/<frame>.jpg"
APEX_FRACTION = 1 / 3
NEUTRAL_FRAMES = 1
EXPRESSIONS: dict[str, str] = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "joy",
                               "neutral": "neutral", "sadness": "sadness", "surprise": "surprise"}
_SUBJECT = re.compile(r"^\d{3}$")
_SESSION = re.compile(r"^session\d*$", re.IGNORECASE)
_TAKE = re.compile(r"^take\d+$", re.IGNORECASE)


def _expression_dirs(subject: Path) -> list[Path]:
    """The subject's expression folders, looking through an optional session level."""
    found = []
    for sub in subdirs_of(subject, limit=16):
        if sub.name.lower() in EXPRESSIONS:
            found.append(sub)
        elif _SESSION.match(sub.name):
            found += [s for s in subdirs_of(sub, limit=16) if s.name.lower() in EXPRESSIONS]
    return found


def _is_base(folder: Path) -> bool:
    for subject in subdirs_of(folder, limit=8):
        if _SUBJECT.match(subject.name):
            for expr in _expression_dirs(subject):
                if any(_TAKE.match(t.name) for t in subdirs_of(expr, limit=8)):
                    return True
    return False


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    return has_base(root, _is_base)


def scan(root: Path, apex_fraction: float = APEX_FRACTION, neutral_frames: int = NEUTRAL_FRAMES) -> Iterator[Item | Reject]:
    root = require_dir(root)
    if not 0 < apex_fraction <= 1 or neutral_frames < 0:
        raise ValueError("apex_fraction must be in (0, 1] and neutral_frames >= 0")
    for base in find_bases(root, _is_base, max_depth=1) or [root]:
        subjects, problems = list_dir(base, root, NAME)
        yield from problems
        for subject in subjects:
            if not subject.is_dir:
                continue  # the release's documents beside the subject folders
            if not _SUBJECT.match(subject.name):
                yield Reject(subject.rel, "not a MUG subject folder; expected three digits like 001", NAME)
                continue
            yield from _scan_folder(subject, root, f"{NAME}:{subject.name}", apex_fraction, neutral_frames)


def _scan_folder(folder: Entry, root: Path, identity: str, apex_fraction: float,
                 neutral_frames: int) -> Iterator[Item | Reject]:
    """A subject (or session) folder: expression folders, or session folders holding them."""
    entries, problems = list_dir(folder.path, root, NAME)
    yield from problems
    for e in entries:
        if not e.is_dir:
            yield Reject(e.rel, f"file outside a take folder: expected {EXPECTS}", NAME)
        elif _SESSION.match(e.name):
            yield from _scan_folder(e, root, identity, apex_fraction, neutral_frames)
        elif e.name.lower() in EXPRESSIONS:
            yield from _scan_expression(e, root, identity, apex_fraction, neutral_frames)
        else:
            yield Reject(e.rel, f"not a MUG expression folder; expected one of {', '.join(EXPRESSIONS)}", NAME)


def _scan_expression(expr: Entry, root: Path, identity: str, apex_fraction: float,
                     neutral_frames: int) -> Iterator[Item | Reject]:
    takes, problems = list_dir(expr.path, root, NAME)
    yield from problems
    affect = EXPRESSIONS[expr.name.lower()]
    for take in takes:
        if not take.is_dir:
            yield Reject(take.rel, f"file outside a take folder: expected {EXPECTS}", NAME)
            continue
        files, problems = list_dir(take.path, root, NAME)
        yield from problems
        frames = [f for f in files if not f.is_dir and is_image(f.name)]
        yield from (Reject(f.rel, "not a take frame: expected images like img_0000.jpg", NAME)
                    for f in files if f.is_dir or not is_image(f.name))
        if not frames:
            yield Reject(take.rel, "take holds no frames", NAME)
            continue
        extra = (("take", take.rel),)
        if affect == "neutral":
            picked = [(f, "neutral", "whole") for f in frames]
        else:
            n = len(frames)
            width = max(1, round(n * apex_fraction))
            start = (n - width) // 2
            onset = [(f, "neutral", "onset") for f in frames[:min(neutral_frames, start)]]
            picked = onset + [(f, affect, "apex") for f in frames[start:start + width]]
        for f, label, role in picked:
            raw = "take onset" if role == "onset" else expr.name
            yield Item(NAME, f.rel, identity, label, raw, kind="image", extra=extra + (("role", role),))
