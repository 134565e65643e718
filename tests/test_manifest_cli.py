"""`fex build-manifest` and `fex manifest-info` through click: output, exit codes, metadata docs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
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


# ---- real `fex ingest` outputs: unfinished, empty, damaged (issue 19) ----

def _ingest(root: Path, out: Path, log=lambda _: None) -> dict:
    from fexdata.ingest import IngestOptions, ingest, resolve_sources

    sources = resolve_sources([str(root)], "folder", log=lambda _: None)
    return ingest(sources, out, IngestOptions(sizes=(128,), still_chunk=2), workers=1, progress=False, log=log)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A finished real ingest (dlib) of 4 stills in 2 units, and the manifest built from it."""
    from _ingest_fixtures import write_png
    from fexdata.sample import sample_face

    base = tmp_path_factory.mktemp("real")
    for ident in ("a", "b"):
        for affect in ("joy", "sadness"):
            write_png(base / "src" / ident / affect / "0.png", sample_face(0 if ident == "a" else 1, affect, 200))
    _ingest(base / "src", base / "data" / "ingest")
    r = run("build-manifest", base / "data" / "ingest", "--out", base / "data" / "manifest.parquet", "--split", "none")
    assert r.exit_code == 0, r.output
    return base


def _copy(ingested: Path, tmp_path: Path) -> Path:
    shutil.copytree(ingested / "data", tmp_path / "data")
    return tmp_path / "data" / "ingest"


def test_unfinished_ingest_is_refused_and_says_what_is_missing(ingested, tmp_path):
    """The issue: a stopped ingest (ingest.json 'running', one unit's part missing) built half a manifest
    with exit 0."""
    out = _copy(ingested, tmp_path)
    status = json.loads((out / "ingest.json").read_text())
    (out / "ingest.json").write_text(json.dumps({**status, "status": "running", "units": 2}))
    next((out / "records").glob("part-*.parquet")).unlink()  # the unit the stop cut short
    manifest = tmp_path / "data" / "m.parquet"
    r = run("build-manifest", out, "--out", manifest, "--split", "none")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "unfinished ingest" in r.output and "stopped after 1 of 2 units" in r.output
    assert "--partial" in r.output and not manifest.exists()

    r = run("build-manifest", out, "--out", manifest, "--split", "none", "--partial")
    assert r.exit_code == 0, r.output
    assert "warning: " in r.output and "1 of 2 units" in r.output and "(--partial)" in r.output
    assert len(read_manifest(manifest)[0]) == 2

    # a second ingest running: refused even if its ingest.json still says finished
    from fexdata.ingest.outdir import OutLock

    (out / "ingest.json").write_text(json.dumps(status))
    with OutLock(out, shared=False):
        r = run("build-manifest", out, "--out", manifest, "--split", "none")
    assert r.exit_code == 2 and "a fex ingest is writing it now" in r.output, r.output


def test_unfinished_shard_is_refused(ingested, tmp_path):
    out = _copy(ingested, tmp_path)
    (out / "shards").mkdir()
    (out / "shards" / "shard-1-of-2.json").write_text(json.dumps({"shard": "1/2", "status": "running"}))
    r = run("build-manifest", out, "--out", tmp_path / "data" / "m.parquet", "--split", "none")
    assert r.exit_code == 2 and "shard(s) not finished: 1/2 (running)" in r.output, r.output


def test_an_ingest_without_records_says_what_was_rejected(tmp_path):
    """It said 'several sizes ()'."""
    from _ingest_fixtures import no_face_image, write_png

    write_png(tmp_path / "src" / "kim" / "joy" / "0.png", no_face_image(256))
    summary = _ingest(tmp_path / "src", tmp_path / "data" / "ingest")
    assert summary["records"] == 0 and summary["rejects"] == 1
    r = run("build-manifest", tmp_path / "data" / "ingest", "--out", tmp_path / "data" / "m.parquet")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "holds no face crops" in r.output and "1 inputs rejected (1 no face, e.g. kim/joy/0.png" in r.output
    assert "several sizes" not in r.output


def test_a_damaged_records_part_names_itself_and_a_rerun_of_ingest_redoes_it(ingested, tmp_path):
    out = _copy(ingested, tmp_path)
    part = sorted((out / "records").glob("part-*.parquet"))[0]
    good = part.read_bytes()
    data = bytearray(good)
    data[len(data) // 2:len(data) // 2 + 200] = bytes(200)  # the file's end intact
    part.write_bytes(bytes(data))
    manifest = tmp_path / "data" / "manifest.parquet"
    r = run("build-manifest", out, "--out", manifest, "--split", "none")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"error: {part}: is damaged" in r.output and "re-run the same `fex ingest" in r.output

    said = []
    summary = _ingest(ingested / "src", out, log=said.append)
    assert summary["run"]["units_processed"] == 1 and any(str(part) in s and "runs again" in s for s in said)
    assert part.read_bytes() == good
    assert run("build-manifest", out, "--out", manifest, "--split", "none").exit_code == 0
    assert manifest.read_bytes() == (ingested / "data" / "manifest.parquet").read_bytes()
