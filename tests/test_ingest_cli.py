"""`fex ingest` as a user runs it: kill -9 in the middle and run again, --strict, layout detection."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from _ingest_fixtures import crop_pixels
from _proc import run as proc_run, start
from cli.ingest import ingest as ingest_cmd
from cli.main import main
from fexdata.sample import write_studio_tree

REPO = Path(__file__).resolve().parents[1]


def _fex(*args):
    return [sys.executable, "-m", "cli.main", "ingest", *map(str, args)]


def _records(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "records").sort_values(["image"]).reset_index(drop=True)


def test_sigkill_mid_run_then_rerun_equals_uninterrupted_run(tmp_path):
    root = write_studio_tree(tmp_path / "studio", identities=2, affects=("joy", "anger"),
                             seconds=0.4, fps=30, size=256)
    (root / "ada" / "fear.mp4").write_bytes(b"")  # one bad input: the run goes on, --strict fails
    a, b = tmp_path / "a", tmp_path / "b"

    done = proc_run(_fex(root, "--out", a, "-j", "1", "--strict", "-q"), cwd=REPO)
    assert done.returncode == 1, done.stderr
    assert "detected layout 'studio'" in done.stdout and "--strict: 1 inputs were rejected" in done.stderr
    assert "1 rejected" in done.stdout and "file is empty" in done.stdout

    proc = start(_fex(root, "--out", b, "-j", "2", "-q"), cwd=REPO, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((b / "records").glob("part-*.parquet"))) >= 1:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # the ingest process alone: its workers must notice and end
    proc.wait(timeout=60)
    parts_after_kill = len(list((b / "records").glob("part-*.parquet")))
    assert 1 <= parts_after_kill < 5, "the kill did not land mid-run"  # 5 units: 4 clips + the bad one

    again = proc_run(_fex(root, "--out", b, "-j", "2", "-q"), cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout

    pd.testing.assert_frame_equal(_records(a), _records(b))
    pd.testing.assert_frame_equal(pd.read_parquet(a / "rejects"), pd.read_parquet(b / "rejects"))
    assert crop_pixels(a) == crop_pixels(b)
    assert len(crop_pixels(a)) == 4 * 12
    leftovers = [p for p in b.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_unrecognised_tree_lists_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "could not recognise the layout" in result.output and "studio" in result.output


def test_help_lists_options():
    result = CliRunner().invoke(ingest_cmd, ["--help"])
    assert result.exit_code == 0
    for opt in ("--layout", "--size", "--align", "--detector", "--fps", "--every", "--workers", "--strict",
                "--redetect-every", "--pad", "--zoom"):
        assert opt in result.output


def test_pool_workers_end_when_the_ingest_process_is_killed():
    """Workers come from multiprocessing's fork server, not from the ingest process, so they watch
    their owner themselves: once it is killed they exit (and the fork server with them)."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    worker = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from fexdata.ingest.worker import _exit_when_gone; "
                               f"_exit_when_gone({owner.pid}, poll_s=0.05); time.sleep(600)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            worker.wait(timeout=1)  # alive while its owner is
        owner.kill()  # not reaped yet: a zombie counts as gone
        assert worker.wait(timeout=60) == 1
    finally:
        for p in (owner, worker):
            p.kill()
            p.wait()
