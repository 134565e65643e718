"""benchmarks/gpu_check.sh: its dry run on the CPU goes through every stage and leaves the files a GPU run
brings back (at most 8, each under 16 MiB, names the device machine accepts), and a budget too small for
the stages still writes the summary and fails."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STAGES = ["setup", "tests", "bench", "demo"]


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)


@pytest.fixture(scope="module")
def dry(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    return _run("--dry-run", "--out", str(out)), out


def test_dry_run_passes_every_stage(dry):
    proc, out = dry
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["dry_run"] and summary["seconds"] <= summary["budget"]
    assert [s["name"] for s in summary["stages"]] == STAGES
    assert all(s["status"] == "ok" for s in summary["stages"]), summary["stages"]
    notes = {s["name"]: s["note"] for s in summary["stages"]}
    assert re.match(r"[1-9]\d* passed, \d+ skipped, 0 failed", notes["tests"]), notes
    assert re.search(r"trained [1-9]\d* steps, evaluated, photo and clip edited", notes["demo"]), notes
    text = (out / "summary.txt").read_text()
    assert "result: PASS" in text and "headline" in text and "img/s" in text
    for stage in STAGES:  # each stage's seconds, printed as it ends
        assert re.search(rf"^== {stage}: ok in \d+ s", proc.stdout, re.M), stage


def test_dry_run_brings_back_the_headline_throughput_grid_and_report(dry):
    _, out = dry
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["summary.txt", "summary.json", "log.txt", "bench.json", "metrics.json", "report.html",
                            "grid.png", "edit.png"])
    assert all(p.is_file() and p.stat().st_size < 16 << 20 for p in out.iterdir())
    bench = json.loads((out / "bench.json").read_text())
    assert {r["precision"] for r in bench["rows"]} == {"fp32", "bf16"} and not bench["skipped"]
    assert all(r["img_per_s"] > 0 and 0 <= r["data_frac"] for r in bench["rows"])
    assert "expression" in json.loads((out / "metrics.json").read_text())["headline"]
    assert "<html" in (out / "report.html").read_text()[:500].lower()
    for grid in ("grid.png", "edit.png"):
        assert cv2.imread(str(out / grid)) is not None, grid


def test_a_budget_too_small_still_writes_the_summary_and_fails(tmp_path):
    proc = _run("--dry-run", "--out", str(tmp_path), "--budget", "30", timeout=60)
    assert proc.returncode == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not summary["ok"] and [s["name"] for s in summary["stages"]] == STAGES
    assert all(s["status"] == "skipped" for s in summary["stages"])
    assert summary["stages"][0]["note"].startswith("no time") and summary["stages"][1]["note"] == "set-up failed"
    assert "result: FAIL" in (tmp_path / "summary.txt").read_text()


def test_usage_errors_say_what_to_do(tmp_path):
    proc = _run("--dry-run", timeout=30)
    assert proc.returncode == 2 and "error: --out DIR is required" in proc.stderr and "hint:" in proc.stderr
    proc = _run("--out", str(tmp_path), "--budget", "soon", timeout=30)
    assert proc.returncode == 2 and "--budget takes whole seconds" in proc.stderr
