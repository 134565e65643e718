"""`fex demo --smallest`: every stage of the real pipeline, end to end, as a user runs it."""
import json
import subprocess
import sys
from html.parser import HTMLParser

import pandas as pd
from test_edit_report import report_figures


def _fex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=600)


def test_demo_smallest_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    first = _fex("demo", "--smallest", "--out", str(out))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"Report: {out / 'report.html'}" in first.stdout

    records = pd.read_parquet(out / "ingest" / "records")
    assert len(records) == 3 * 7 * 6  # 3 characters x 7 affects x 6 frames, every face found
    assert set(records["detector"]) <= {"hog", "track"}
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["split"]) == {"train", "test"} and manifest["affect"].nunique() == 7

    config = json.loads((out / "run" / "config.json").read_text())  # the demo's model at its narrow widths
    assert config["model"] == "warp-refine" and config["preset"] == "cpu-64"
    assert config["arch"]["widths"] == [16, 32, 64, 128] and config["arch"]["d_widths"] == [32, 64, 128]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"headline", "discriminator", "judge", "sharpness", "identity", "collapse", "frechet",
            "paired_truth"} <= set(metrics)
    assert metrics["paired_truth"].get("available", True) and metrics["paired_truth"]["scored_pairs"] > 0
    assert metrics["judge"]["step"] == 4
    HTMLParser().feed((out / "report.html").read_text())
    assert {p.name for p in (out / "figures").glob("*.png")} == {"identities.png", "mixed.png", "intensity.png"}
    # The last stage edits one clip and one photo; the report opens with them, before and after at full
    # resolution (the photo 896x704, the clip's middle edited frame at 256x256), and links the outputs.
    edits = pd.read_parquet(out / "edit" / "edits.parquet")
    assert set(edits["output"]) == {"photo/joy.png", "photo/surprise.png", "neutral/joy.mp4", "neutral/surprise.mp4"}
    report = (out / "report.html").read_text()
    assert 'href="edit/photo/joy.png"' in report and 'href="edit/neutral/surprise.mp4"' in report
    page = report_figures(report)
    assert page.headings[1:3] == ["Edits of a photo and a clip (fex edit)", "Headline"]
    shapes = {caption: image.shape for caption, image in page.figures}
    for shot in ("before (photo.png", "after: joy (joy.png", "after: surprise (surprise.png"):
        assert shapes[f"{shot}, 896x704 px)"] == (704, 896, 3)
    for shot in ("before (neutral.mp4", "after: joy (joy.mp4", "after: surprise (surprise.mp4"):
        assert shapes[f"{shot}, frame 3, 256x256 px)"] == (256, 256, 3)

    # A second run redoes nothing: ingest resumes, training is already at its step count.
    second = _fex("demo", "--smallest", "--out", str(out))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "0 units processed, 21 already done" in second.stdout
    assert len(pd.read_parquet(out / "ingest" / "records")) == len(records)


def test_demo_refuses_an_out_made_with_other_settings(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(json.dumps({"characters": 9}))
    result = _fex("demo", "--smallest", "--out", str(out))
    assert result.returncode == 2 and "error: " in result.stderr and "holds a demo made with other settings" in result.stderr
    assert "hint: use another --out" in result.stderr


def test_demo_refuses_an_older_demos_run_of_another_model(tmp_path):
    # Demos before issue 23 trained fexgan: their data is reused, their run cannot be resumed as warp-refine.
    out = tmp_path / "demo"
    (out / "run").mkdir(parents=True)
    (out / "demo.json").write_text(json.dumps({"characters": 3, "seconds": 0.6, "fps": 10.0, "size": "64",
                                               "full": False}))
    (out / "run" / "config.json").write_text(json.dumps({"model": "fexgan"}))
    result = _fex("demo", "--smallest", "--out", str(out))
    assert result.returncode == 2 and "holds a fexgan run of an older demo" in result.stderr
    assert f"hint: delete {out / 'run'} to train warp-refine on the same data" in result.stderr
    assert "== ingest" not in result.stdout
