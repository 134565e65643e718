"""The one place errors are caught: `cli.main` turns a FexError into `error:` + `hint:` and exit status 2,
and lets anything else (a bug) out with its traceback. Run as a user runs fex: a real process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _proc import run as proc_run

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return proc_run([sys.executable, "-c", code], cwd=REPO, timeout=120)


def _fex(*args: str) -> subprocess.CompletedProcess:
    return proc_run([sys.executable, "-m", "cli.main", *args], cwd=REPO, timeout=120)


def test_a_user_error_is_one_line_and_a_hint_with_status_2(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _fex("build-manifest", str(tmp_path / "empty"), "--out", str(tmp_path / "m.parquet"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: ") and "no records" in lines[0]
    assert lines[1].startswith("hint: ") and "fex ingest" in lines[1]
    assert "Traceback" not in done.stderr and not (tmp_path / "m.parquet").exists()


def test_a_layout_error_from_ingest(tmp_path):
    (tmp_path / "bad.csv").write_text("file,person\na.png,x\n")
    done = _fex("ingest", str(tmp_path / "bad.csv"), "--layout", "csv", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: " in done.stderr and "missing column(s) path, identity, affect" in done.stderr
    assert "hint: give the CSV a header path,identity,affect" in done.stderr


def test_a_bug_keeps_its_traceback():
    # A fault inside the library (here: a ZeroDivisionError planted in the manifest build) is not the
    # user's to fix, so it is not dressed up as `error:`; Python prints the traceback and exits 1.
    done = _python("import cli.build_manifest as cmd\n"
                   "def broken(*args, **kwargs):\n    return 1 / 0\n"
                   "cmd.build = broken\n"
                   "from cli.main import main\n"
                   "main(['build-manifest', '.', '--out', 'never.parquet'], prog_name='fex')\n")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "error: " not in done.stderr
    assert not (REPO / "never.parquet").exists()


def test_a_failing_demo_stage_stops_the_demo(tmp_path):
    # The demo runs each stage through `fex`; a stage's FexError is printed there, and the demo stops with
    # status 2 instead of going on to stages that cannot work.
    out = tmp_path / "demo"
    (out / "captures").mkdir(parents=True)  # no sample clips: ingest cannot recognise any layout
    (out / "demo.json").write_text(json.dumps({"characters": 3, "seconds": 0.6, "fps": 10.0, "size": "64",
                                               "full": False}))
    done = _fex("demo", "--smallest", "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: could not recognise the layout" in done.stderr
    assert "== ingest" in done.stdout and "== build-manifest" not in done.stdout
