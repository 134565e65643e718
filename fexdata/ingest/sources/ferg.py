"""FERG-DB (Facial Expression Research Group database): six stylised cartoon characters.

Expected tree (ROOT may be the FERG_DB_256 folder itself or the folder holding it)::

    ROOT/FERG_DB_256/
      aia/                      character: aia bonnie jules malcolm mery ray (identity `ferg:aia`)
        aia_anger/              <character>_<expression>: anger disgust fear joy neutral sadness surprise
          aia_anger_1.png       <character>_<expression>_<n>.png
          ...

A file whose name disagrees with its folders (another character or expression) is rejected rather
than trusted either way.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import Entry, has_base, list_dir, names_of, scan_bases, subdirs_of
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "ferg"
EXPECTS = "FERG_DB_256/<character>/<character>_<expression>/<character>_<expression>_<n>.png (aia, bonnie, ...)"
CHARACTERS = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
EXPRESSIONS: dict[str, str] = {"anger": "anger", "disgust": "disgust", "fear": "fear", "joy": "joy",
                               "neutral": "neutral", "sadness": "sadness", "surprise": "surprise"}
_FOLDER = re.compile(r"^(?P<character>[A-Za-z]+)_(?P<expression>[A-Za-z]+)$")
_FILE = re.compile(r"^(?P<character>[A-Za-z]+)_(?P<expression>[A-Za-z]+)_(?P<n>\d+)\.png$", re.IGNORECASE)


def _is_base(folder: Path) -> bool:
    for char in subdirs_of(folder, limit=16):
        for sub in names_of(char, limit=16):
            m = _FOLDER.match(sub)
            if m and m["character"].lower() == char.name.lower() and m["expression"].lower() in EXPRESSIONS:
                return True
    return False


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    return has_base(root, _is_base)


def scan(root: Path) -> Iterator[Item | Reject]:
    return scan_bases(root, NAME, _is_base, _scan_character)


def _scan_character(char: Entry, root: Path) -> Iterator[Item | Reject]:
    if not char.is_dir:
        return
    identity = f"{NAME}:{char.name.lower()}"
    folders, problems = list_dir(char.path, root, NAME)
    yield from problems
    for folder in folders:
        m = _FOLDER.match(folder.name) if folder.is_dir else None
        if m is None or m["character"].lower() != char.name.lower():
            yield Reject(folder.rel, f"expected expression folders named {char.name}_<expression>", NAME)
            continue
        expression = m["expression"].lower()
        if expression not in EXPRESSIONS:
            yield Reject(folder.rel, f"unknown FERG expression {m['expression']!r}; expected one of "
                                     f"{', '.join(EXPRESSIONS)}", NAME)
            continue
        files, problems = list_dir(folder.path, root, NAME)
        yield from problems
        for f in files:
            fm = None if f.is_dir else _FILE.match(f.name)
            if fm is None or fm["character"].lower() != char.name.lower() or fm["expression"].lower() != expression:
                yield Reject(f.rel, f"name does not match its folder: expected {folder.name}_<n>.png", NAME)
                continue
            yield Item(NAME, f.rel, identity, EXPRESSIONS[expression], m["expression"], kind="image",
                       precropped=True)  # cartoon faces dlib cannot detect, cropped by the dataset
