"""`fex ingest --shard I/N`: N processes into one OUT give exactly one whole run's output, and resume alone."""
import json
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
from _proc import finish, run as proc_run, start

from cli.main import main
from fexdata.ingest import IngestError, Shard, ingest, resolve_sources
from fexdata.ingest.plan import IngestOptions, Source, make_plan, unit_key
from fexdata.ingest.sources.base import Item
from fexdata.manifest import build_manifest
from fexdata.manifest.build import BuildOptions
from fexdata.sample import write_studio_tree

REPO = Path(__file__).resolve().parents[1]


def fex_ingest(*args) -> list[str]:
    return [sys.executable, "-m", "cli.main", "ingest", *map(str, args)]


def records(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "records").sort_values("image").reset_index(drop=True)


def rejects(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "rejects").sort_values(["source_path", "reason"]).reset_index(drop=True)


def files(out: Path, folder: str) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / folder).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """Six short clips of three characters and one broken file, and one whole run of them."""
    base = tmp_path_factory.mktemp("shard")
    root = write_studio_tree(base / "studio", identities=3, affects=("joy", "anger"), seconds=0.3, fps=30, size=192)
    (root / "ada" / "fear.mp4").write_bytes(b"")  # a reject, so rejects parts take part too
    whole = base / "whole"
    ingest(resolve_sources([str(root)], "studio", log=lambda _: None), whole, IngestOptions(), workers=1,
           progress=False, log=lambda _: None)
    return root, whole


def test_shard_partition_is_stable_and_complete(tmp_path):
    items = [Item("folder", f"{who}/{aff}/{i}.png", f"folder:{who}", aff, aff) for who in "abcdefgh"
             for aff in ("joy", "fear") for i in range(20)]
    plan = make_plan([(Source(tmp_path, "x", "folder"), items)], IngestOptions(still_chunk=1))
    other = make_plan([(Source(tmp_path / "elsewhere", "y", "folder"), items)], IngestOptions(still_chunk=1, sizes=(512,)))
    assert [unit_key(u) for u in plan.units] == [unit_key(u) for u in other.units]  # same work, other host/options
    assert [u.id for u in plan.units] != [u.id for u in other.units]
    for n in (1, 2, 3, 5):
        shards = [Shard(i, n) for i in range(n)]
        owners = [[s for s in shards if s.owns(u)] for u in plan.units]
        assert all(len(o) == 1 for o in owners)  # every unit in exactly one shard
        assert [o[0] for o in owners] == [[s for s in shards if s.owns(u)][0] for u in other.units]
    sizes = [sum(Shard(i, 3).owns(u) for u in plan.units) for i in range(3)]
    assert sum(sizes) == len(plan.units) == 320 and min(sizes) > 80, sizes  # even, as a hash spreads them


@pytest.mark.parametrize("spec, message", [("3/2", "shard 3 does not exist, shards of 2 are 0 to 1"),
                                           ("1/0", "at least 1"), ("half", "expected I/N")])
def test_bad_shard_gets_one_line_and_a_hint(tmp_path, spec, message):
    result = CliRunner().invoke(main, ["ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--shard", spec])
    assert result.exit_code == 2, result.output
    first, hint = result.output.strip().splitlines()
    assert first.startswith("error: --shard") and message in first
    assert hint.startswith("hint: ")
    assert not (tmp_path / "o").exists()


def test_three_concurrent_shards_equal_one_run(studio, tmp_path):
    root, whole = studio
    out = tmp_path / "sharded"
    procs = [start(fex_ingest(root, "--out", out, "--shard", f"{i}/3", "-j", "1", "-q"), cwd=REPO,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [finish(p, timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
    processed = [json.loads((out / "shards" / f"shard-{i}-of-3.json").read_text())["summary"]["run"]
                 for i in range(3)]
    assert sum(r["units_processed"] for r in processed) == 7 and all(r["units"] >= 1 for r in processed)
    assert any("this run (shard 1/3)" in stdout for stdout, _ in outputs)

    pd.testing.assert_frame_equal(records(out), records(whole))
    pd.testing.assert_frame_equal(rejects(out), rejects(whole))
    assert crop_pixels(out) == crop_pixels(whole) and len(crop_pixels(whole)) == 6 * 9
    assert files(out, "records") == files(whole, "records")  # the very same parts, byte for byte
    status = json.loads((out / "ingest.json").read_text())  # written by the last shard to finish
    assert status["status"] == "finished" and status["units"] == status["units_finished"] == 7
    assert status["shards"] == {f"{i}/3": "finished" for i in range(3)}
    assert status["summary"]["records"] == len(records(whole))

    manifests = [build_manifest([o], o / "manifest.parquet", BuildOptions(split="frame", seed=1)) for o in (out, whole)]
    assert manifests[0] is not None
    assert (out / "manifest.parquet").read_bytes() == (whole / "manifest.parquet").read_bytes()
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []


def test_killed_shard_reruns_without_duplicates(studio, tmp_path):
    root, whole = studio
    out = tmp_path / "killed"
    proc = subprocess.Popen(fex_ingest(root, "--out", out, "--shard", "0/2", "-j", "2", "-q"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "crops").is_dir() and any(p.is_file() for p in (out / "crops").rglob("*")):
            break  # a unit is writing its crops: its records part comes only after them
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    mine = json.loads((out / "shards" / "shard-0-of-2.json").read_text())
    assert mine["status"] == "running"  # killed mid-run

    again = proc_run(fex_ingest(root, "--out", out, "--shard", "0/2", "-q"), cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "this run (shard 0/2)" in again.stdout
    sources = resolve_sources([str(root)], "studio", log=lambda _: None)
    ingest(sources, out, IngestOptions(), workers=1, progress=False, log=lambda _: None, shard=Shard(1, 2))

    got = records(out)
    assert got.image.is_unique
    pd.testing.assert_frame_equal(got, records(whole))
    pd.testing.assert_frame_equal(rejects(out), rejects(whole))
    assert crop_pixels(out) == crop_pixels(whole)
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []


def test_a_whole_run_resumes_what_shards_did(studio, tmp_path):
    """Parts are per unit, so a shard's work counts for any later run of the same job, sharded or not."""
    root, whole = studio
    out = tmp_path / "mixed"
    sources = resolve_sources([str(root)], "studio", log=lambda _: None)
    first = ingest(sources, out, IngestOptions(), workers=1, progress=False, log=lambda _: None, shard=Shard(2, 3))
    rest = ingest(sources, out, IngestOptions(), workers=1, progress=False, log=lambda _: None)
    assert rest["run"]["units_resumed"] == first["run"]["units_processed"] >= 1
    assert rest["run"]["units_processed"] == 7 - first["run"]["units_processed"]
    pd.testing.assert_frame_equal(records(out), records(whole))
    assert json.loads((out / "ingest.json").read_text())["status"] == "finished"


def test_shards_refuse_other_options_and_overwrite(tmp_path):
    from fexdata.sample import sample_face
    from tests._ingest_fixtures import write_png

    root, out = tmp_path / "faces", tmp_path / "opts"
    write_png(root / "kim" / "joy" / "0.png", sample_face(0, "joy", 160))
    sources = resolve_sources([str(root)], "folder", log=lambda _: None)
    quiet = dict(workers=1, progress=False, log=lambda _: None)
    ingest(sources, out, IngestOptions(), shard=Shard(0, 4), **quiet)
    ingest(sources, out, IngestOptions(), shard=Shard(3, 4), **quiet)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-0-of-4.json", "shard-3-of-4.json"]
    with pytest.raises(IngestError, match="different options sizes"):
        ingest(sources, out, IngestOptions(sizes=(128,)), shard=Shard(1, 4), **quiet)
    with pytest.raises(IngestError, match="--overwrite cannot be used with --shard"):
        ingest(sources, out, IngestOptions(sizes=(128,)), shard=Shard(1, 4), overwrite=True, **quiet)
    ingest(sources, out, IngestOptions(sizes=(128,)), overwrite=True, **quiet)  # a whole run may replace it
    assert not (out / "shards").exists() and set(records(out).crop_size) == {128}
