"""What fex says about the machine it runs on: `fex --version` lists the versions that shape outputs, and an
output folder the user cannot write to is one `error:` line for every command, never a traceback."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from _edit_fixtures import build_run
from _manifest_fixtures import write_ingest
from _proc import run as proc_run
from _train_fixtures import write_tiny_manifest

from fexdata.sample import write_image_tree

REPO = Path(__file__).resolve().parents[1]


def _fex(*args: str) -> subprocess.CompletedProcess:
    return proc_run([sys.executable, "-m", "cli.main", *args], cwd=REPO, timeout=300)


def test_version_lists_fex_and_the_libraries_that_shape_outputs():
    done = _fex("--version")
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["fex", "python", "torch", "opencv", "dlib", "numpy", "pandas", "pyarrow", "ffmpeg"]
    import cv2
    import numpy

    assert f"opencv   {cv2.__version__}" in done.stdout and f"numpy    {numpy.__version__}" in done.stdout
    assert "unavailable" not in done.stdout and "not installed" not in done.stdout


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[Path]:
    """`folder` (kept readable) made unwritable: mode 0555 for a normal user; root ignores modes, so for root
    the folder is bind-mounted read-only onto itself instead."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"root cannot bind-mount here: {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _command(name: str, tmp: Path, shared: Path) -> tuple[Path, list[str]]:
    """The folder to make read-only, and a command that must write into it."""
    out = tmp / "out"
    out.mkdir()
    if name == "ingest":
        stills = write_image_tree(tmp / "stills", identities=1, per_affect=1, size=192)
        return out, ["ingest", str(stills), "--out", str(out / "ingest")]
    if name == "build-manifest":  # the manifest must sit above its ingest folders
        return out, ["build-manifest", str(write_ingest(out / "ingest")), "--out",
                     str(out / "manifest.parquet")]
    if name == "train":
        manifest = write_tiny_manifest(tmp / "data")
        return out, ["train", "--manifest", str(manifest), "--out", str(out / "run"), "--steps", "1", "--size", "64",
                     "--device", "cpu"]
    if name == "edit":
        photo = write_image_tree(tmp / "photos", identities=1, affects=("neutral",), size=192)
        return out, ["edit", str(build_run(shared / "edit-pipeline")), str(photo), "--to", "joy", "--out",
                     str(out / "edits")]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["ingest", "build-manifest", "train", "edit"])
def test_a_read_only_output_folder_is_a_user_error(tmp_path, tmp_path_factory, name):
    folder, args = _command(name, tmp_path, tmp_path_factory.getbasetemp())
    with _read_only(folder) as out:
        done = _fex(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("error: cannot write ") and str(out) in lines[-2], done.stderr
    assert lines[-1].startswith("hint: ") and "--out" in lines[-1]
