"""RaFD (Radboud Faces Database): one flat folder; every fact is in the file name.

Expected tree (ROOT may be the image folder, or a folder whose sub-folders hold the images)::

    ROOT/
      Rafd090_01_Caucasian_female_angry_frontal.jpg
      Rafd<angle>_<model>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg

* angle: 000 045 090 135 180 (camera position; 090 is frontal)
* model: the person's number (identity `rafd:01`)
* ethnicity: Caucasian, Moroccan, Kid; gender: female, male
* emotion: angry contemptuous disgusted fearful happy neutral sad surprised
* gaze: frontal left right

Angle, gaze, ethnicity and gender are kept in `extra`; `contemptuous` maps to `contempt`, which
ingest keeps and manifests leave out unless asked.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import Entry, has_base, names_of, scan_bases
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "rafd"
EXPECTS = "Rafd090_01_Caucasian_female_angry_frontal.jpg: Rafd<angle>_<model>_<ethnicity>_<gender>_<emotion>_<gaze>"
EMOTIONS: dict[str, str] = {"angry": "anger", "contemptuous": "contempt", "disgusted": "disgust",
                            "fearful": "fear", "happy": "joy", "neutral": "neutral", "sad": "sadness",
                            "surprised": "surprise"}
ANGLES = ("000", "045", "090", "135", "180")
GAZES = ("frontal", "left", "right")
_FILE = re.compile(r"^Rafd(?P<angle>\d{3})_(?P<model>\d+)_(?P<ethnicity>[A-Za-z]+)_(?P<gender>female|male)_"
                   r"(?P<emotion>[A-Za-z]+)_(?P<gaze>[A-Za-z]+)\.(?:jpe?g|png)$", re.IGNORECASE)


def _is_base(folder: Path) -> bool:
    return any(_FILE.match(n) for n in names_of(folder, limit=256))


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    return has_base(root, _is_base)


def scan(root: Path) -> Iterator[Item | Reject]:
    return scan_bases(root, NAME, _is_base, _parse)


def _parse(f: Entry, root: Path) -> Iterator[Item | Reject]:
    if f.is_dir:
        return
    m = _FILE.match(f.name)
    if m is None:
        yield Reject(f.rel, "name does not follow RaFD's Rafd<angle>_<model>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg "
                            "(e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg)", NAME)
        return
    emotion, angle, gaze = m["emotion"].lower(), m["angle"], m["gaze"].lower()
    if emotion not in EMOTIONS:
        yield Reject(f.rel, f"unknown RaFD emotion {m['emotion']!r}; expected one of {', '.join(EMOTIONS)}", NAME)
    elif angle not in ANGLES:
        yield Reject(f.rel, f"unknown RaFD camera angle {angle!r}; expected one of {', '.join(ANGLES)}", NAME)
    elif gaze not in GAZES:
        yield Reject(f.rel, f"unknown RaFD gaze {m['gaze']!r}; expected one of {', '.join(GAZES)}", NAME)
    else:
        yield Item(NAME, f.rel, f"{NAME}:{int(m['model']):02d}", EMOTIONS[emotion], m["emotion"], kind="image",
                   extra=(("angle", angle), ("gaze", gaze), ("ethnicity", m["ethnicity"]),
                          ("gender", m["gender"].lower())))
