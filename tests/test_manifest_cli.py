"""`fex build-manifest` and `fex manifest-info` through click: output, exit codes, metadata docs."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from _manifest_fixtures import write_ingest
from cli.main import main
from fexdata.manifest import read_manifest


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_for_both_commands():
    for cmd in ("build-manifest", "manifest-info"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Usage:" in r.output
    assert "--min-gap" in run("build-manifest", "--help").output


def test_build_then_info_then_break_it(tmp_path):
    src = write_ingest(tmp_path / "data" / "studio", identities=4, frames=6)
    out = tmp_path / "data" / "manifest.parquet"
    r = run("build-manifest", src, "--out", out, "--split", "identity", "--folds", "2",
            "--report", tmp_path / "report.json")
    assert r.exit_code == 0, r.output
    assert "dropped:" in r.output and "split x affect" in r.output
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["rows_out"] == 4 * 7 * 6 and rep["checks"]["problems"] == []

    info = run("manifest-info", out)
    assert info.exit_code == 0 and "ok: no leakage" in info.output and "folds:" in info.output
    as_json = json.loads(run("manifest-info", out, "--json").output)
    assert as_json["rows"] == 4 * 7 * 6 and as_json["missing_files"] == 0

    df, _ = read_manifest(out)
    (out.parent / df["image"].iloc[0]).unlink()
    info = run("manifest-info", out)
    assert info.exit_code == 1 and "1 crop files are missing" in info.output
    assert run("manifest-info", out, "--no-files").exit_code == 0


def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("build-manifest", tmp_path / "empty", "--out", tmp_path / "m.parquet")
    assert r.exit_code == 2 and r.output.startswith("error: ") and "fex ingest" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "m.parquet").exists()
    r = run("manifest-info", tmp_path / "nope.parquet")
    assert r.exit_code == 2 and "no such manifest" in r.output


def test_docs_describe_the_metadata():  # the column table: test_schema_docs.py
    doc = (Path(__file__).parents[1] / "docs" / "manifest.md").read_text()
    for key in ("fex.schema_version", "fex.affects", "fex.identities", "fex.split", "fex.options"):
        assert key in doc
