"""`--from auto` on faces whose affect is known: the judge estimate beats chance on an identity the run never
saw, and is recorded with its confidence; every registered model runs through `fex edit`."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from _edit_fixtures import HELD_OUT_IDENTITY, build_run, canvas_photo

from cli.main import main as fex
from fexdata.affects import AFFECTS
from fexdata.images import read_rgb, write_png
from fextrain.models import MODELS


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "edit-pipeline"


def test_auto_source_beats_chance_on_known_affects(root, tmp_path):
    run = build_run(root)
    faces = tmp_path / "faces"
    for affect in AFFECTS:
        for k, identity in enumerate((HELD_OUT_IDENTITY, HELD_OUT_IDENTITY + 1)):
            write_png(faces / f"{affect}_{k}.png", canvas_photo(identity, affect))
    out = tmp_path / "out"
    result = CliRunner().invoke(fex, ["edit", str(run), str(faces), "--to", "neutral", "--out", str(out), "--quiet",
                                      "--from", "auto", "--estimator", "judge", "--judge-epochs", "4",
                                      "--judge-min-steps", "100", "--threads", "1",
                                      # three train identities: holding one out leaves too weak a judge
                                      "--judge-holdout", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    edits = pd.read_parquet(out / "edits.parquet")
    truth = edits["input"].map(lambda p: Path(p).stem.split("_")[0])
    accuracy = float((edits["source_affect"] == truth).mean())
    assert len(edits) == 2 * len(AFFECTS)
    assert accuracy >= 3 / len(AFFECTS), (accuracy, list(zip(truth, edits["source_affect"])))  # chance: 1/7
    assert (edits["source_by"] == "judge").all()
    assert edits["source_confidence"].between(1 / len(AFFECTS), 1).all()
    assert (run / "eval" / "judge" / "judge.json").is_file()   # cached beside the run, for edit and eval


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_registered_model_runs_through_fex_edit(root, tmp_path, model):
    run = build_run(root, model=model)
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    result = CliRunner().invoke(fex, ["edit", str(run), str(photo), "--to", "0.5*joy+surprise", "--out", str(out),
                                      "--quiet", "--threads", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    edited = read_rgb(out / "me" / "0.5xjoy+surprise.png")
    assert edited.shape == read_rgb(photo).shape
    assert pd.read_parquet(out / "edits.parquet")["output"].tolist() == ["me/0.5xjoy+surprise.png"]


def test_edit_and_eval_train_the_same_judge_by_default():
    """Both cache it in RUN/eval/judge: other settings would make each command retrain over the other's."""
    from fextrain.edit.source import JudgeOptions
    from fextrain.evaluate.options import EvalOptions

    assert JudgeOptions().settings() == EvalOptions().judge_settings()
