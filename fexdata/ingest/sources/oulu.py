"""Oulu-CASIA NIR&VIS facial expressions: per-person folders of neutral-to-peak sequences.

Expected tree (ROOT may be any level down to the folder holding the P### folders)::

    ROOT/
      OriginalImg/              and/or Cropped/ (the release's face crops)
        VL/                     VL visible light, NI near infrared
          Strong/               illumination: Strong, Weak, Dark
            P001/               person (identity `oulu:P001`, the same across VL/NI and illuminations)
              Anger/            Anger Disgust Fear Happiness Sadness Surprise
                000.jpeg        frames of one sequence, neutral first, peak last
                001.jpeg
                ...

Each expression folder is one sequence from a neutral face to the peak, like CK+. fex takes the last
`PEAK_FRAMES` (3) frames with the folder's expression and the first `NEUTRAL_FRAMES` (1) frame as
neutral; change them with `scan(root, peak_frames=..., neutral_frames=...)`. The folders above the
person folder (e.g. `OriginalImg/VL/Strong`) are kept as `variant` in `extra`, with `spectrum` and
`illumination` when they are named. Point ROOT at one variant to ingest only it: every variant holds
the same sequences again.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import (
    Entry, find_bases, has_base, is_image, list_dir, names_of, rel_of, require_dir, subdirs_of,
)
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "oulu"
EXPECTS = "OriginalImg/VL/Strong/P001/Anger/000.jpeg (also NI, Weak/Dark, Cropped/): P###/<Expression>/<frame>"
PEAK_FRAMES = 3
NEUTRAL_FRAMES = 1
EXPRESSIONS: dict[str, str] = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "joy",
                               "sadness": "sadness", "surprise": "surprise"}
_PERSON = re.compile(r"^P\d{3}$", re.IGNORECASE)
_FRAME = re.compile(r"^\d+\.[A-Za-z]+$")
_SPECTRA = {"vl": "VL", "ni": "NI"}
_LIGHTS = {"strong": "Strong", "weak": "Weak", "dark": "Dark"}


def _is_base(folder: Path) -> bool:
    for person in subdirs_of(folder, limit=8):
        if _PERSON.match(person.name) and any(n.lower() in EXPRESSIONS for n in names_of(person)):
            return True
    return False


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    return has_base(root, _is_base, max_depth=4, limit=16)


def scan(root: Path, peak_frames: int = PEAK_FRAMES, neutral_frames: int = NEUTRAL_FRAMES) -> Iterator[Item | Reject]:
    root = require_dir(root)
    if peak_frames < 1 or neutral_frames < 0:
        raise ValueError("peak_frames must be >= 1 and neutral_frames >= 0")
    bases = find_bases(root, _is_base, max_depth=4)
    if not bases:
        yield Reject(".", f"no Oulu-CASIA person folders here: expected {EXPECTS}", NAME)
        return
    for base in bases:
        variant = rel_of(base, root)
        extra = [("variant", "" if variant == "." else variant)]
        parts = [p.lower() for p in base.relative_to(root).parts] if base != root else []
        extra += [("spectrum", _SPECTRA[p]) for p in parts if p in _SPECTRA][:1]
        extra += [("illumination", _LIGHTS[p]) for p in parts if p in _LIGHTS][:1]
        people, problems = list_dir(base, root, NAME)
        yield from problems
        for person in people:
            if not person.is_dir:
                continue
            if not _PERSON.match(person.name):
                yield Reject(person.rel, "not an Oulu-CASIA person folder; expected names like P001", NAME)
                continue
            yield from _scan_person(person, root, tuple(extra), peak_frames, neutral_frames)


def _scan_person(person: Entry, root: Path, extra: tuple, peak_frames: int,
                 neutral_frames: int) -> Iterator[Item | Reject]:
    identity = f"{NAME}:{person.name.upper()}"
    seqs, problems = list_dir(person.path, root, NAME)
    yield from problems
    for seq in seqs:
        if not seq.is_dir:
            yield Reject(seq.rel, "file outside an expression folder: expected P###/<Expression>/000.jpeg", NAME)
            continue
        if seq.name.lower() not in EXPRESSIONS:
            yield Reject(seq.rel, f"not an Oulu-CASIA expression folder; expected one of "
                                  f"{', '.join(e.capitalize() for e in EXPRESSIONS)}", NAME)
            continue
        files, problems = list_dir(seq.path, root, NAME)
        yield from problems
        frames = []
        for f in files:
            if f.is_dir or not (is_image(f.name) and _FRAME.match(f.name)):
                yield Reject(f.rel, "not a sequence frame: expected numbered images like 000.jpeg", NAME)
            else:
                frames.append(f)
        if len(frames) <= neutral_frames:
            yield Reject(seq.rel, f"sequence has {len(frames)} frame(s): too short to take a neutral start and "
                                  f"a peak", NAME)
            continue
        affect = EXPRESSIONS[seq.name.lower()]
        for f in frames[:neutral_frames]:
            yield Item(NAME, f.rel, identity, "neutral", "sequence onset", kind="image",
                       extra=extra + (("sequence", seq.rel), ("role", "onset")))
        for f in frames[max(neutral_frames, len(frames) - peak_frames):]:
            yield Item(NAME, f.rel, identity, affect, seq.name, kind="image",
                       extra=extra + (("sequence", seq.rel), ("role", "peak")))
