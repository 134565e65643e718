"""Generic folder tree: one folder per identity, one sub-folder per affect, stills (or clips) inside.

Expected tree::

    ROOT/
      alice/                    identity "folder:alice"
        joy/                    affect folder: any spelling fexdata.affects knows (joy, happy, HA, ...)
          IMG_0001.jpg          stills: png jpg jpeg tif tiff bmp webp ppm pgm (any names)
          take1.mp4             clips are accepted too: mp4 mov avi mkv webm m4v
        sadness/
          ...

Every still is its own item (no tracking between them). Files elsewhere in the tree, folders deeper
than ROOT/<identity>/<affect>/, unknown affect folders and files that are neither image nor video
become rejects that say where things should go; README, .DS_Store, Thumbs.db are skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from fexdata.ingest.sources._common import (
    Entry, affect_of, is_image, is_video, list_dir, names_of, scan_bases, subdirs_of,
)
from fexdata.ingest.sources.base import FOLDER, Item, Reject, layout

NAME = "folder"
EXPECTS = "ROOT/<identity>/<affect>/*.png|jpg|... (stills, or clips) — affect folders named anger, joy, sad, ..."


@layout(NAME, FOLDER)
def detect(root: Path) -> bool:
    """True if some identity folder has an affect-named sub-folder holding images or videos."""
    root = Path(root)
    if not root.is_dir():
        return False
    for ident in subdirs_of(root, limit=32):
        for sub in subdirs_of(ident, limit=32):
            if affect_of(sub.name)[0] is None:
                continue
            if any(is_image(n) or is_video(n) for n in names_of(sub, limit=32)):
                return True
    return False


def scan(root: Path) -> Iterator[Item | Reject]:
    return scan_bases(root, NAME, None, _scan_identity)


def _scan_identity(folder: Entry, root: Path) -> Iterator[Item | Reject]:
    if not folder.is_dir:
        yield Reject(folder.rel, "file at the root: expected ROOT/<identity>/<affect>/<image>", NAME)
        return
    identity = f"{NAME}:{folder.name}"
    entries, rejects = list_dir(folder.path, root, NAME)
    yield from rejects
    for e in entries:
        if not e.is_dir:
            yield Reject(e.rel, f"file outside an affect folder: expected {folder.name}/<affect>/{e.name}", NAME)
            continue
        affect, why = affect_of(e.name)
        if affect is None:
            yield Reject(e.rel, f"affect folder name not recognised: {why}", NAME)
            continue
        yield from _scan_affect(e, identity, affect, root)


def _scan_affect(folder: Entry, identity: str, affect: str, root: Path) -> Iterator[Item | Reject]:
    entries, rejects = list_dir(folder.path, root, NAME)
    yield from rejects
    for e in entries:
        if e.is_dir:
            yield Reject(e.rel, "folder nested too deep: expected files directly in <identity>/<affect>/", NAME)
        elif is_image(e.name):
            yield Item(NAME, e.rel, identity, affect, folder.name, kind="image")
        elif is_video(e.name):
            yield Item(NAME, e.rel, identity, affect, folder.name, kind="video")
        else:
            yield Reject(e.rel, "neither an image nor a video (by its extension)", NAME)
