"""Helpers every layout adapter shares: file kinds, natural order, safe listing, label checks.

Adapters look at names only, so the few things that can go wrong while *listing* a tree live here:
a folder we may not read, a symlink that leads out of the dataset, a loop of links. Each becomes a
`Reject` for that entry and the scan goes on with the rest.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from fexdata.affects import UnknownAffect, canonical_affect
from fexdata.errors import LayoutError
from fexdata.paths import UnsafePath, relative_inside
from fexdata.ingest.sources.base import Item, Reject

IMAGE_EXTS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".pnm"}
)
VIDEO_EXTS: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

# Files that travel with datasets but are not data: OS litter and documentation. They are skipped
# silently, because rejecting every README would drown the real problems in the reject table.
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "icon\r", "__macosx"})
_DOC_EXTS = frozenset({".txt", ".md", ".pdf", ".doc", ".docx", ".rtf", ".html", ".htm", ".odt"})
_DOC_STEMS = ("readme", "license", "licence", "copying", "citation", "changelog")


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()  # not Path(): scans call this once per file


def is_image(name: str) -> bool:
    return _ext(name) in IMAGE_EXTS


def is_video(name: str) -> bool:
    return _ext(name) in VIDEO_EXTS


def is_stray(name: str) -> bool:
    """True for files that are never data: hidden files, OS litter, documentation."""
    low = name.lower()
    if low.startswith(".") or low in _JUNK_NAMES:
        return True
    if is_image(low) or is_video(low):
        return False
    if low.startswith(_DOC_STEMS):
        return True
    return _ext(low) in _DOC_EXTS


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders 'frame2' before 'frame10'; the raw name breaks ties deterministically."""
    parts = _DIGITS.split(name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "") + ((2, 0, name),)


@dataclass(frozen=True)
class Entry:
    """One listed child of a folder, already checked to stay inside the dataset root."""

    folder: Path  # the folder it was listed in
    name: str
    rel: str      # POSIX path relative to the root, as listed (a symlink keeps its own name)
    is_dir: bool

    @property
    def path(self) -> Path:
        """The path as listed (root / ... / name), not resolved. Built on demand: most entries never need it."""
        return self.folder / self.name


def rel_of(path: Path, root: Path) -> str:
    """Lexical POSIX path of `path` under `root` (for reject rows), falling back to the path itself."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def list_dir(folder: Path, root: Path, source: str,
             keep: Callable[[str], object] | None = None) -> tuple[list[Entry], list[Reject]]:
    """Children of `folder` in natural order, minus strays; problems become rejects, never exceptions.

    `keep(name)` exempts names from the stray filter (label files that look like documentation,
    such as CK+'s *_emotion.txt).

    * a folder we cannot read (PermissionError and other OSErrors) -> one reject for the folder;
    * a symlink resolving outside `root` or into a loop -> one reject for that entry;
    * a dangling symlink -> one reject (a missing file).
    """
    try:
        with os.scandir(folder) as it:
            listed = list(it)
    except OSError as exc:
        why = exc.strerror or exc.__class__.__name__
        return [], [Reject(rel_of(folder, root) or ".", f"cannot read folder: {why}", source)]
    entries: list[Entry] = []
    rejects: list[Reject] = []
    base = rel_of(folder, root)
    prefix = "" if base in ("", ".") else base + "/"
    for d in sorted(listed, key=lambda d: natural_key(d.name)):
        name = d.name
        if is_stray(name) and not (keep and keep(name)):
            continue
        rel = prefix + name
        try:
            # Only a symlink can lead out of a folder we already know is inside the root, so only
            # links pay for path resolution (the listing stays at ~100k entries/s).
            if d.is_symlink():
                path = folder / name
                try:
                    relative_inside(path, root)
                except UnsafePath:
                    rejects.append(Reject(rel, "symlink points outside the dataset root; copy the data in instead",
                                          source))
                    continue
                except RuntimeError:  # symlink loop (raised by Path.resolve before Python 3.13)
                    rejects.append(Reject(rel, "symlink loop; cannot follow it", source))
                    continue
                if not path.exists():
                    rejects.append(Reject(rel, "broken symlink: the file it points to is missing", source))
                    continue
            is_dir = d.is_dir()
        except OSError as exc:
            rejects.append(Reject(rel, f"cannot read: {exc.strerror or exc}", source))
            continue
        entries.append(Entry(folder, name, rel, is_dir))
    return entries, rejects


def names_of(folder: Path, limit: int | None = None) -> list[str]:
    """Cheap, exception-free listing for `detect()`: names only, strays dropped, at most `limit`."""
    try:
        with os.scandir(folder) as it:
            names = []
            for e in it:
                if not is_stray(e.name):
                    names.append(e.name)
                    if limit is not None and len(names) >= limit:
                        break
            return names
    except OSError:
        return []


def subdirs_of(folder: Path, limit: int | None = None) -> list[Path]:
    """Sub-folders of `folder` (names only, no recursion) for `detect()`; empty on any error."""
    out = []
    for name in names_of(folder):
        p = folder / name
        try:
            if p.is_dir():
                out.append(p)
        except OSError:
            continue
        if limit is not None and len(out) >= limit:
            break
    return sorted(out, key=lambda p: natural_key(p.name))


def affect_of(label: str) -> tuple[str | None, str]:
    """(canonical affect, '') or (None, reason) — the reason quotes the label, nothing is guessed."""
    try:
        return canonical_affect(label), ""
    except UnknownAffect as exc:
        return None, str(exc)


def require_dir(root: Path) -> Path:
    """The root as a Path; LayoutError when it is missing or not a folder."""
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"{root}: no such folder", hint="check the path")
    if not root.is_dir():
        raise LayoutError(f"{root}: expected a folder", hint="pass the dataset's folder, or --layout csv for a CSV list")
    return root


def find_bases(root: Path, is_base, max_depth: int = 2, limit: int | None = None) -> list[Path]:
    """Folders at most `max_depth` levels under root (root included) for which `is_base(folder)` holds.

    Public datasets unpack into a conventional top folder (`jaffedbase/`, `KDEF/`, `CK+48/`), and
    users point fex either at that folder or at the one holding it; this finds the dataset either way.
    A match is not searched inside, and the result is in natural order. `limit` caps how many
    sub-folders are looked at per level (detect() uses it to stay cheap on big unrelated trees).
    """
    found: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        if is_base(folder):
            found.append(folder)
            return
        if depth < max_depth:
            for sub in subdirs_of(folder, limit=limit):
                visit(sub, depth + 1)

    visit(Path(root), 0)
    return found


def has_base(root: Path, is_base, max_depth: int = 1, limit: int = 64) -> bool:
    """detect() for datasets recognised by a base folder (see find_bases), kept cheap by `limit`."""
    root = Path(root)
    return root.is_dir() and bool(find_bases(root, is_base, max_depth=max_depth, limit=limit))


def scan_bases(root: Path, source: str, is_base: Callable[[Path], bool] | None,
               entry: Callable[[Entry, Path], Iterator[Item | Reject]]) -> Iterator[Item | Reject]:
    """The skeleton of most scans: check the root, find the dataset's top folders (`is_base`, one level down;
    the root itself when none matches or `is_base` is None), list each, and hand every entry to
    `entry(e, root)`. Listing problems become rejects, in listing order."""
    root = require_dir(root)
    for base in (find_bases(root, is_base, max_depth=1) if is_base else []) or [root]:
        entries, problems = list_dir(base, root, source)
        yield from problems
        for e in entries:
            yield from entry(e, root)


def unknown_code(rel: str, dataset: str, code: str, codes: dict[str, str], source: str) -> Reject:
    """The reject of a file whose expression code is not one of the dataset's `codes` (code -> affect)."""
    return Reject(rel, f"unknown {dataset} expression code {code!r}; expected one of "
                       f"{', '.join(f'{c} ({a})' for c, a in codes.items())}", source)
