"""JAFFE (Japanese Female Facial Expression database): one flat folder of TIFF stills.

Expected tree (ROOT may be the image folder itself or the folder that holds it)::

    ROOT/jaffedbase/            often `jaffe/` or `jaffedbase/`
      KA.AN1.39.tiff            <subject>.<expression><index>.<image id>.tiff
      KA.NE1.26.tiff            subjects: two letters (KA KL KM KR MK NA NM TM UY YM)
      ...                       expressions: AN anger, DI disgust, FE fear, HA joy, NE neutral, SA sadness, SU surprise
      README                    skipped
      <ratings>.txt             optional: the semantic ratings table ("# HAP SAD SUR ANG DIS FEA PIC")

Identity is `jaffe:<subject>`. When the semantic ratings table is present, an image's intensity is
the mean rating of its own posed expression mapped from the 1-5 scale to 0-1 (neutral images have
no rating column and keep no intensity). Any other image name is rejected with the expected pattern.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import find_bases, has_base, list_dir, names_of, require_dir, unknown_code
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "jaffe"
EXPECTS = "a flat folder (jaffe/ or jaffedbase/) of KA.AN1.39.tiff stills: subject.expression+index.imageid"
CODES: dict[str, str] = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "joy", "NE": "neutral",
                         "SA": "sadness", "SU": "surprise"}
_FILE = re.compile(r"^(?P<subject>[A-Za-z]{2})\.(?P<code>[A-Za-z]{2})(?P<index>\d+)\.(?P<image>\d+)\.tiff?$",
                   re.IGNORECASE)
# Column order of the semantic ratings table and the posed expression each column rates.
_RATING_COLUMNS = ("HA", "SA", "SU", "AN", "DI", "FE")
_RATING_ROW = re.compile(r"^\s*\d+\s+((?:\d+(?:\.\d+)?\s+){6})(?P<pic>[A-Za-z]{2}-[A-Za-z]{2}\d+)\s*$")


def _is_base(folder: Path) -> bool:
    return any(_FILE.match(n) for n in names_of(folder, limit=256))


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    return has_base(root, _is_base)


def read_ratings(folder: Path) -> dict[str, dict[str, float]]:
    """'KA-AN1' -> {'HA': 1.5, ...} from the first semantic-ratings table found among folder's .txt files.

    Only the first table is read: the distribution follows it with a 'fear excluded' table whose rows
    have one column fewer and stop the parse.
    """
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".txt"))
    except OSError:
        return {}
    for name in names:
        try:
            with open(folder / name, encoding="utf-8", errors="replace") as fh:
                text = fh.read(1 << 20)  # the table is ~10 KB; never slurp a stray huge file
        except OSError:
            continue
        lines = text.splitlines()
        header = next((i for i, ln in enumerate(lines) if "HAP" in ln and "PIC" in ln), None)
        if header is None:
            continue
        ratings: dict[str, dict[str, float]] = {}
        for line in lines[header + 1:]:
            m = _RATING_ROW.match(line)
            if m is None:
                if ratings:
                    break
                continue
            values = [float(v) for v in m.group(1).split()]
            ratings[m["pic"].upper()] = dict(zip(_RATING_COLUMNS, values))
        if ratings:
            return ratings
    return {}


def scan(root: Path) -> Iterator[Item | Reject]:
    root = require_dir(root)
    bases = find_bases(root, _is_base, max_depth=1) or [root]
    for base in bases:
        yield from _scan_folder(base, root)


def _scan_folder(folder: Path, root: Path) -> Iterator[Item | Reject]:
    entries, rejects = list_dir(folder, root, NAME)
    yield from rejects
    ratings = read_ratings(folder)
    for e in entries:
        if e.is_dir:
            continue  # only the flat image folder is JAFFE; other folders beside it are not ours
        m = _FILE.match(e.name)
        if m is None:
            yield Reject(e.rel, "name does not follow JAFFE's <subject>.<expression><index>.<image>.tiff "
                                "(e.g. KA.AN1.39.tiff)", NAME)
            continue
        code = m["code"].upper()
        if code not in CODES:
            yield unknown_code(e.rel, "JAFFE", m["code"], CODES, NAME)
            continue
        subject = m["subject"].upper()
        rating = ratings.get(f"{subject}-{code}{m['index']}", {}).get(code)
        intensity = None if rating is None else min(max((rating - 1.0) / 4.0, 0.0), 1.0)
        yield Item(NAME, e.rel, f"{NAME}:{subject}", CODES[code], m["code"], kind="image",
                   intensity=intensity, extra=(("image_id", m["image"]), ("pose_index", m["index"])))
