"""Path safety and atomic writes shared by every writer in fex.

Paths in records and manifests are relative to the folder that holds them and may never point
outside it; every file fex writes appears whole or not at all (write to a temp name, fsync, rename),
so a run killed at any moment leaves nothing half-written.
"""
from __future__ import annotations

import os
import posixpath
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from fexdata.errors import FexError


class UnsafePath(FexError):
    """A path that escapes the folder it must stay inside."""


def relative_inside(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """`path` as a POSIX path relative to `root`; raises UnsafePath if it resolves outside root.

    Symlinks are resolved, so a link pointing out of the dataset is caught too.
    """
    root_r = Path(root).resolve()
    p = Path(path)
    full = (p if p.is_absolute() else root_r / p).resolve()
    try:
        return full.relative_to(root_r).as_posix()
    except ValueError:
        raise UnsafePath(f"path {str(path)!r} is outside {str(root_r)!r}",
                         hint="keep data inside the folder (copy it in rather than linking out)") from None


def resolve_inside(rel: str, root: str | os.PathLike) -> Path:
    """Absolute path of `rel` under root, refusing absolute paths and '..' escapes."""
    if os.path.isabs(rel):
        raise UnsafePath(f"absolute path {rel!r} not allowed",
                         hint=f"give paths relative to {str(root)!r}")
    relative_inside(rel, root)
    return Path(root).resolve() / rel


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; on success it is fsynced and renamed onto dest.

    The temp file lives in the same folder so the rename is atomic, and its name starts with '.'
    and ends with '.tmp' so readers globbing for parts never see it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; outputs are meant to be shared and opened
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_json_or_empty(path: str | os.PathLike) -> dict:
    """A JSON object file written by an earlier run; {} when it is missing or unreadable (a run killed
    before its first write, a hand-edited file), so the caller treats the folder as made with other settings."""
    import json

    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def remove_temp_files(folder: str | os.PathLike) -> None:
    """Delete the temp files of writes a killed run never finished (atomic_path's `.<name>.*.tmp`)."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(dirpath, name))


@contextmanager
def locked(lock_file: str | os.PathLike, busy: FexError) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (released by the OS if the process dies); raise `busy` if
    another process holds it, so two runs never write into the same folder."""
    import fcntl

    fh = open(lock_file, "a")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield
    finally:
        fh.close()  # closing the file releases the lock


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


# --- vectorised forms, for whole columns of relative paths (manifests, records) ---


def unsafe_paths(paths: pd.Series) -> np.ndarray:
    """Absolute paths, Windows drive paths, backslashes or '..' components: they could leave the folder."""
    s = paths.astype(str)
    return (s.str.startswith("/") | s.str.contains(r"\\", regex=True) | s.str.match(r"^[A-Za-z]:")
            | s.str.contains(r"(?:^|/)\.\.(?:/|$)", regex=True)).to_numpy()


def existing_files(paths: pd.Series, root: Path) -> np.ndarray:
    """Mask of paths (relative to root) that are regular files, via one directory listing per folder.

    Symlinks count only when they resolve to a file inside `root`, so a link out of the dataset is
    reported as missing rather than followed. (Measured here: as fast as one stat per file.)
    """
    root_r = root.resolve()
    dirs = paths.str.rpartition("/")[0]
    present: set[str] = set()
    for d in sorted(set(dirs)):
        folder = root / d
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if e.is_file(follow_symlinks=False):
                present.add(posixpath.join(d, e.name) if d else e.name)
            elif e.is_symlink():
                target = Path(e.path).resolve()
                if target.is_file() and target.is_relative_to(root_r):
                    present.add(posixpath.join(d, e.name) if d else e.name)
    return paths.isin(present).to_numpy()
