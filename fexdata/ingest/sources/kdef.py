"""KDEF (Karolinska Directed Emotional Faces): one folder per session+person, seven poses x five angles.

Expected tree (ROOT may be the KDEF folder itself or the folder holding it)::

    ROOT/KDEF/
      AF01/                     <session A|B><gender F|M><id 01-35>
        AF01ANS.JPG             <session><gender><id><expression><angle>.JPG
        AF01ANFL.JPG
        ...

Expressions: AF afraid (fear), AN angry, DI disgusted, HA happy, NE neutral, SA sad, SU surprised.
Angles: FL full left profile, HL half left, S straight, HR half right, FR full right.

Identity is gender + id (`kdef:F01`): sessions A and B photograph the same person, so they must
share an identity (and a split). Session and angle are kept in `extra`. The extension is matched
case-insensitively (the release mixes .JPG and .jpg), and file names are read case-insensitively;
the folder a file sits in is not used for its labels. Profile angles (FL, FR) are kept here: the
frontal face detector will reject them downstream unless a profile-capable detector is chosen.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import (
    Entry, has_base, list_dir, names_of, scan_bases, subdirs_of, unknown_code,
)
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "kdef"
EXPECTS = "KDEF/AF01/AF01ANS.JPG: <session A|B><gender F|M><id><AF|AN|DI|HA|NE|SA|SU><FL|HL|S|HR|FR>.JPG"
CODES: dict[str, str] = {"AF": "fear", "AN": "anger", "DI": "disgust", "HA": "joy", "NE": "neutral",
                         "SA": "sadness", "SU": "surprise"}
ANGLES: dict[str, str] = {"FL": "full left", "HL": "half left", "S": "straight", "HR": "half right",
                          "FR": "full right"}
_FOLDER = re.compile(r"^[AB][FM]\d{2}$", re.IGNORECASE)
_FILE = re.compile(r"^(?P<session>[AB])(?P<gender>[FM])(?P<id>\d{2})(?P<code>[A-Z]{2})(?P<angle>FL|HL|S|HR|FR)"
                   r"\.jpe?g$", re.IGNORECASE)


def _is_base(folder: Path) -> bool:
    for sub in subdirs_of(folder, limit=8):
        if _FOLDER.match(sub.name) and any(_FILE.match(n) for n in names_of(sub, limit=16)):
            return True
    return False


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    return has_base(root, _is_base)


def scan(root: Path) -> Iterator[Item | Reject]:
    return scan_bases(root, NAME, _is_base, _scan_person)


def _scan_person(folder: Entry, root: Path) -> Iterator[Item | Reject]:
    if not folder.is_dir:
        return  # documentation and spreadsheets beside the person folders are not ours
    if not _FOLDER.match(folder.name):
        yield Reject(folder.rel, "not a KDEF person folder; expected names like AF01 "
                                 "(session A|B, gender F|M, two-digit id)", NAME)
        return
    files, problems = list_dir(folder.path, root, NAME)
    yield from problems
    for f in files:
        m = None if f.is_dir else _FILE.match(f.name)
        if m is None:
            yield Reject(f.rel, "name does not follow KDEF's <session><gender><id><expression><angle>.JPG "
                                "(e.g. AF01ANS.JPG)", NAME)
            continue
        code = m["code"].upper()
        if code not in CODES:
            yield unknown_code(f.rel, "KDEF", m["code"], CODES, NAME)
            continue
        gender, angle = m["gender"].upper(), m["angle"].upper()
        yield Item(NAME, f.rel, f"{NAME}:{gender}{m['id']}", CODES[code], m["code"], kind="image",
                   extra=(("session", m["session"].upper()), ("angle", angle), ("angle_name", ANGLES[angle])))
