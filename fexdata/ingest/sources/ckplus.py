"""CK+ (Extended Cohn-Kanade): the full release with Emotion label files, or the CK+48 folders.

Full release (ROOT may be the release folder or the folder holding it)::

    ROOT/
      cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
      Emotion/S005/001/S005_001_00000011_emotion.txt      one float code: 0 neutral, 1 anger, 2 contempt,
                                                          3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
      Landmarks/ FACS/                                    not used

Every CK+ sequence runs from a neutral face to the peak of the expression, and only about half of them
carry an Emotion label. From each *labelled* sequence fex takes
  * the last `PEAK_FRAMES` (3) frames, labelled with the sequence's emotion (the label file names the
    last one, the peak), and
  * the first `NEUTRAL_FRAMES` (1) frame, labelled neutral;
unlabelled sequences are skipped without a reject (they are unlabelled by design, not broken).
Pass other counts with `scan(root, peak_frames=..., neutral_frames=...)`.

CK+48 (a common 48x48 pre-cropped export)::

    ROOT/CK+48/<anger|contempt|disgust|fear|happy|sadness|surprise>/S010_004_00000017.png

Identity is the subject number in both forms (`ckplus:S005`), so they name the same people.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import (
    Entry, affect_of, find_bases, list_dir, names_of, natural_key, rel_of, require_dir, subdirs_of,
)
from fexdata.ingest.sources.base import DATASET, Item, Reject, layout

NAME = "ckplus"
EXPECTS = ("CK+ release: cohn-kanade-images/S005/001/S005_001_00000011.png with "
           "Emotion/S005/001/S005_001_00000011_emotion.txt; or CK+48/<anger|...|surprise>/S010_004_00000017.png")
PEAK_FRAMES = 3
NEUTRAL_FRAMES = 1
IMAGES_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"
CODES: dict[int, str] = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy",
                         6: "sadness", 7: "surprise"}
CK48_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
_FRAME = re.compile(r"^(?P<subject>S\d{3})_(?P<seq>\d{3})_(?P<frame>\d{8})\.png$", re.IGNORECASE)
_EMOTION = re.compile(r"^(?P<subject>S\d{3})_(?P<seq>\d{3})_(?P<frame>\d{8})_emotion\.txt$", re.IGNORECASE)


def _is_release(folder: Path) -> bool:
    return (folder / IMAGES_DIR).is_dir()


def _is_ck48(folder: Path) -> bool:
    subs = [s for s in subdirs_of(folder, limit=16) if s.name.lower() in CK48_FOLDERS]
    return any(any(_FRAME.match(n) for n in names_of(s, limit=16)) for s in subs)


@layout(NAME, DATASET)
def detect(root: Path) -> bool:
    root = Path(root)
    if not root.is_dir():
        return False
    return bool(find_bases(root, lambda f: _is_release(f) or _is_ck48(f), max_depth=1, limit=64))


def scan(root: Path, peak_frames: int = PEAK_FRAMES, neutral_frames: int = NEUTRAL_FRAMES) -> Iterator[Item | Reject]:
    root = require_dir(root)
    if peak_frames < 1 or neutral_frames < 0:
        raise ValueError("peak_frames must be >= 1 and neutral_frames >= 0")
    bases = find_bases(root, lambda f: _is_release(f) or _is_ck48(f), max_depth=1)
    if not bases:
        yield Reject(".", f"no CK+ data here: expected {EXPECTS}", NAME)
        return
    for base in bases:
        if _is_release(base):
            yield from _scan_release(base, root, peak_frames, neutral_frames)
        else:
            yield from _scan_ck48(base, root)


# ---------------------------------------------------------------- full release


def read_emotion(path: Path) -> tuple[int | None, str]:
    """(code, '') from an Emotion file ('   3.0000000e+00'), or (None, reason)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read(256).strip()
    except OSError as exc:
        return None, f"cannot read emotion file: {exc.strerror or exc}"
    try:
        value = float(text)
    except ValueError:
        return None, f"emotion file should hold one number 0-7, got {text[:30]!r}"
    if not math.isfinite(value) or value != int(value) or int(value) not in CODES:
        return None, f"emotion code {text!r} is not one of 0-7 ({', '.join(f'{k} {v}' for k, v in CODES.items())})"
    return int(value), ""


def _labels(base: Path, root: Path) -> tuple[dict[str, tuple[int, Entry]], list[Reject]]:
    """'S005/001' -> (code, emotion-file entry) for every readable label file under Emotion/."""
    labels: dict[str, tuple[int, Entry]] = {}
    rejects: list[Reject] = []
    emotion = base / EMOTION_DIR
    if not emotion.is_dir():
        rejects.append(Reject(rel_of(base / IMAGES_DIR, root), f"no {EMOTION_DIR}/ folder beside it: CK+ labels "
                                                              f"come from Emotion/S005/001/*_emotion.txt", NAME))
        return labels, rejects
    subjects, problems = list_dir(emotion, root, NAME)
    rejects += problems
    for subject in (s for s in subjects if s.is_dir):
        seqs, problems = list_dir(subject.path, root, NAME)
        rejects += problems
        for seq in (s for s in seqs if s.is_dir):
            files, problems = list_dir(seq.path, root, NAME, keep=_EMOTION.match)
            rejects += problems
            found = [f for f in files if not f.is_dir and _EMOTION.match(f.name)]
            if len(found) > 1:
                rejects.append(Reject(seq.rel, "several emotion files for one sequence; expected one", NAME))
                continue
            if not found:
                continue
            code, why = read_emotion(found[0].path)
            if code is None:
                rejects.append(Reject(found[0].rel, why, NAME))
                continue
            labels[f"{subject.name}/{seq.name}"] = (code, found[0])
    return labels, rejects


def _scan_release(base: Path, root: Path, peak_frames: int, neutral_frames: int) -> Iterator[Item | Reject]:
    labels, rejects = _labels(base, root)
    yield from rejects
    images = base / IMAGES_DIR
    subjects, problems = list_dir(images, root, NAME)
    yield from problems
    seen: set[str] = set()
    for subject in subjects:
        if not subject.is_dir:
            continue
        seqs, problems = list_dir(subject.path, root, NAME)
        yield from problems
        for seq in seqs:
            key = f"{subject.name}/{seq.name}"
            if not seq.is_dir or key not in labels:
                continue
            seen.add(key)
            yield from _scan_sequence(seq, subject.name, labels[key], root, peak_frames, neutral_frames)
    for key, (_, label_file) in sorted(labels.items(), key=lambda kv: natural_key(kv[0])):
        if key not in seen:
            yield Reject(label_file.rel, f"emotion label without images: expected {rel_of(images, root)}/{key}/",
                         NAME)


def _scan_sequence(seq: Entry, subject: str, label: tuple[int, Entry], root: Path,
                   peak_frames: int, neutral_frames: int) -> Iterator[Item | Reject]:
    code, label_file = label
    files, problems = list_dir(seq.path, root, NAME)
    yield from problems
    frames = []
    for f in files:
        if f.is_dir or not _FRAME.match(f.name):
            yield Reject(f.rel, "name does not follow CK+'s S005_001_00000011.png", NAME)
        else:
            frames.append(f)
    peak_name = label_file.name[: -len("_emotion.txt")] + ".png"
    if not frames or frames[-1].name.lower() != peak_name.lower():
        yield Reject(label_file.rel, f"the labelled peak frame {peak_name} is not the last frame of {seq.rel}", NAME)
        return
    if len(frames) <= neutral_frames:
        yield Reject(seq.rel, f"sequence has {len(frames)} frame(s): too short to take a neutral start and a peak",
                     NAME)
        return
    raw = CODES[code]
    affect, _ = affect_of(raw)
    sequence = f"{subject}/{seq.name}"
    for f in frames[:neutral_frames]:
        yield Item(NAME, f.rel, f"{NAME}:{subject.upper()}", "neutral", "sequence onset", kind="image",
                   extra=(("sequence", sequence), ("role", "onset")))
    for f in frames[max(neutral_frames, len(frames) - peak_frames):]:
        yield Item(NAME, f.rel, f"{NAME}:{subject.upper()}", affect, str(code), kind="image",
                   extra=(("sequence", sequence), ("role", "peak")))


# ---------------------------------------------------------------- CK+48


def _scan_ck48(base: Path, root: Path) -> Iterator[Item | Reject]:
    folders, problems = list_dir(base, root, NAME)
    yield from problems
    for folder in folders:
        if not folder.is_dir:
            yield Reject(folder.rel, f"file outside the expression folders ({', '.join(CK48_FOLDERS)})", NAME)
            continue
        affect, why = affect_of(folder.name)
        if affect is None or folder.name.lower() not in CK48_FOLDERS:
            yield Reject(folder.rel, f"not a CK+48 expression folder; expected one of {', '.join(CK48_FOLDERS)}",
                         NAME)
            continue
        files, problems = list_dir(folder.path, root, NAME)
        yield from problems
        for f in files:
            m = _FRAME.match(f.name)
            if f.is_dir or m is None:
                yield Reject(f.rel, "name does not follow CK+'s S010_004_00000017.png", NAME)
                continue
            yield Item(NAME, f.rel, f"{NAME}:{m['subject'].upper()}", affect, folder.name, kind="image",
                       extra=(("sequence", f"{m['subject'].upper()}/{m['seq']}"), ("variant", "CK+48")),
                       precropped=True)
