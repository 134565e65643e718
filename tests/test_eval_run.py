"""`fex eval` end to end: a tiny run really trained on sample faces, evaluated through the CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _eval_fixtures import FunctionEditor, train_tiny_run, write_face_manifest

from cli.main import main as fex
from fexdata.errors import EvalError
from fexdata.manifest import read_manifest, write_manifest
from fextrain.evaluate.run import evaluate_run

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SMALL = ["--max-sources", "4", "--max-table-images", "8", "--judge-epochs", "2", "--judge-min-steps", "30",
         "--judge-size", "32", "--figure-identities", "2", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    manifest = write_face_manifest(root / "data")
    run = train_tiny_run(manifest, root / "run", steps=2)
    return manifest, run


def _pool_torchscript(path: Path) -> Path:
    class Pool(torch.nn.Module):  # stands in for a user's local Inception TorchScript file
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    torch.jit.save(torch.jit.script(Pool()), str(path))
    return path


def test_cli_writes_metrics_figures_report_and_summary(trained, tmp_path):
    manifest, run = trained
    out = tmp_path / "eval"
    inception = _pool_torchscript(tmp_path / "pool.pt")
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(manifest), "--out", str(out),
                                   "--inception", str(inception), *SMALL])
    assert res.exit_code == 0, res.output
    assert "judge accuracy" in res.output and str(out / "report.html") in res.output
    # The headline comes first, with one line per quality (after the progress log).
    summary = res.output[res.output.index("headline"):].splitlines()
    assert [line.split()[0] for line in summary[1:7]] == ["expression", "edit", "sharpness", "identity", "collapse",
                                                          "colour"]

    m = json.loads((out / "metrics.json").read_text())
    step = m["run"]["step"]
    assert step == 2 and m["schema_version"] == 5 and m["run"]["model"] == "fexgan"
    assert m["run"]["config"]["arch"]["latent_dim"] == 16  # the report names the model and its config
    assert list(m)[:3] == ["schema_version", "headline", "run"]
    assert {"expression", "edit_strength", "sharpness", "identity", "collapse", "colour"} <= set(m["headline"])
    for section in ("discriminator", "judge", "edit_strength", "sharpness", "identity", "collapse", "colour", "frechet",
                    "figures"):
        assert m[section]["step"] == step
    # Discriminator table (the model can classify) for every split present, with counts.
    assert set(m["discriminator"]["splits"]) == {"train", "val", "test"}
    assert m["discriminator"]["splits"]["test"]["real"]["multi"]["count"] == 8
    assert m["discriminator"]["splits"]["test"]["fake"]["binary"]["count"] == 8  # D's binary head (real_fake)
    # Judge: 1 of the 3 train identities held out (14 images), trained on the other 28 (one batch, so at
    # most 30 epochs reach the 30 minimum steps, fewer when the held-out accuracy stops improving), scored
    # on all 28 test images, then on 4 sources x 7 affects generated images.
    judge = m["judge"]
    trained = judge["trained_on"]
    assert {k: trained[k] for k in ("split", "count", "fitted_on", "epochs", "patience", "reused_from_cache")} == \
        {"split": "train", "count": 42, "fitted_on": 28, "epochs": 30, "patience": 5, "reused_from_cache": False}
    assert 1 <= trained["best_epoch"] <= trained["epochs_run"] <= 30
    held = judge["held_out"]
    assert (held["by"], held["count"], held["identities"]) == ("identities", 14, 1)
    assert held["accuracy"] == held["correct"] / 14
    assert held["interval_95"][0] <= held["accuracy"] <= held["interval_95"][1]
    assert judge["real"]["interval_95"][0] <= judge["real"]["accuracy"] <= judge["real"]["interval_95"][1]
    assert 0 <= judge["calibration"]["value"] <= 1 and sum(b["count"] for b in judge["calibration"]["bins"]) == 28
    assert judge["real"]["count"] == 28 and judge["real"]["split"] == "test"
    assert judge["generated"]["count"] == 28 and judge["generated"]["sources"] == 4
    assert sum(map(sum, judge["real"]["confusion"]["counts"])) == 28
    assert judge["real_blurred"]["count"] == 28 and judge["real_blurred"]["sigma_px"] == 1.0
    assert judge["generated_over_real"] == pytest.approx(judge["generated"]["accuracy"] / judge["real"]["accuracy"])
    assert m["headline"]["expression"]["value"] == judge["generated_over_real"]
    # Sharpness and collapse read the same 28 edits of 4 sources.
    assert m["sharpness"]["edits"] == 28 and m["sharpness"]["sources"] == 4
    assert set(m["sharpness"]["per_affect"]) == set(m["run"]["affects"])
    col = m["collapse"]  # its known answers (a copy: 1, one face for all: 0) are tested below
    assert col["sources"] == 4 and col["source_spread"] > 0 and set(col["per_affect"]) == set(m["run"]["affects"])
    assert col["ratio"] == pytest.approx(float(np.mean(list(col["per_affect"].values()))))
    assert col["collapsed"] == (col["ratio"] < col["threshold"]) and m["headline"]["collapse"]["value"] == col["ratio"]
    # Identity: every pair accounted for; sources are real faces dlib finds.
    idn = m["identity"]
    assert idn["pairs"] == 28 and idn["source_face_not_found"] == 0
    assert idn["measured"] + idn["generated_face_not_found"] == 28
    assert sum(s["pairs"] for s in idn["per_affect"].values()) == 28
    # Fréchet distances named by space, with counts; the Inception one from the local file.
    fr = m["frechet"]
    assert fr["judge_features"]["value"] is not None and fr["judge_features"]["generated_count"] == 28
    assert fr["inception"]["dims"] == 12 and fr["inception"]["real_count"] == 28
    assert fr["dlib_descriptors"]["real_count"] == 4
    # Figures decode; the report embeds each of them, below the headline.
    names = {"identities.png", "mixed.png", "intensity.png"}
    assert {Path(f["file"]).name for f in m["figures"]["files"]} == names
    for name in names:
        img = cv2.imread(str(out / "figures" / name))
        assert img is not None and img.shape[0] > 50
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Identity preservation" in html
    assert html.index("<h2>Headline</h2>") < html.index("<h2>Run</h2>") < html.index("<h2>Judge classifier</h2>")
    assert (out / "judge" / "judge.safetensors").is_file()


def test_a_run_still_training_is_evaluated_at_its_latest_checkpoint(trained, tmp_path):
    manifest, run = trained
    opts = dict(max_sources=2, max_table_images=4, judge_epochs=1, judge_min_steps=10, judge_size=32,
                identity=False, figure_identities=1, device="cpu", progress=False)
    first = evaluate_run(run, manifest, tmp_path / "eval", sections=["judge"], **opts).metrics
    train_tiny_run(manifest, run, steps=3, resume=True)  # the run goes on; a new last.pt appears
    second = evaluate_run(run, manifest, tmp_path / "eval", sections=["judge", "identity"], **opts).metrics
    assert (first["run"]["step"], second["run"]["step"]) == (2, 3)
    assert second["judge"]["trained_on"]["reused_from_cache"] is True
    assert second["identity"] == {"step": 3, "available": False, "reason": "identity metrics switched off"}


def test_fails_clearly_without_a_checkpoint(trained, tmp_path):
    manifest, _ = trained
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    res = CliRunner().invoke(fex, ["eval", str(empty), "--manifest", str(manifest), *SMALL])
    assert res.exit_code == 2 and "error: " in res.output and "no checkpoint yet" in res.output
    assert "hint: a run writes its first one" in res.output


def test_fails_clearly_on_a_manifest_without_test_split(trained, tmp_path):
    manifest, run = trained
    df, meta = read_manifest(manifest)
    df["split"] = df["split"].replace({"test": "val"})
    bad = write_manifest(df, manifest.parent / "no_test.parquet", affects=meta["affects"])
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(bad), "--out", str(tmp_path), *SMALL])
    assert res.exit_code == 2 and "no test split" in res.output and "hint: rebuild it with a test share" in res.output
    # the options the hint names are build-manifest's own
    named = set(re.findall(r"--[a-z-]+", res.output[res.output.index("hint:"):]))
    build = fex.get_command(click.Context(fex), "build-manifest")  # cli.main loads commands lazily
    options = {o for p in build.params for o in p.opts}
    assert named and named <= options, named - options


def test_refuses_crops_smaller_than_the_run_as_train_does(trained, tmp_path):
    """A 64 px run on 32 px crops: train refuses to enlarge them, and so does eval (no silent upscaling)."""
    _, run = trained
    small = write_face_manifest(tmp_path / "small", size=32, per_affect=1, splits={0: "train", 1: "train", 4: "test"})
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(small), "--out", str(tmp_path / "eval"),
                                   *SMALL])
    assert res.exit_code == 2 and "crops are 32x32, smaller than the model's 64 px" in res.output, res.output
    assert "hint: evaluate on crops of 64 px or more" in res.output
    assert not (tmp_path / "eval").exists()


def test_fails_clearly_when_affects_differ_from_the_run(trained, tmp_path):
    manifest, run = trained
    df, meta = read_manifest(manifest)
    affects = list(meta["affects"])
    swapped = affects[1:] + affects[:1]  # same names, another index order: every vector would be wrong
    df["affect_index"] = [swapped.index(a) for a in df["affect"]]
    bad = write_manifest(df, manifest.parent / "other_affects.parquet", affects=swapped)
    with pytest.raises(EvalError, match="differ from the run's"):
        evaluate_run(run, bad, tmp_path / "eval", device="cpu", progress=False)


def _oracle_eval(trained, tmp_path, monkeypatch, fn, sections, **opts):
    """evaluate_run on the tiny run's manifest with the model replaced by an oracle editor."""
    import fextrain.evaluate.run as run_module
    from fexdata.affects import AFFECTS

    manifest, run = trained
    monkeypatch.setattr(run_module, "load_editor", lambda run_dir, device: FunctionEditor(fn, AFFECTS, 64))
    return evaluate_run(run, manifest, tmp_path / "eval", sections=sections, max_sources=4, judge_epochs=1,
                        judge_min_steps=10, judge_size=32, figure_identities=1, device="cpu", progress=False,
                        **opts).metrics


def test_known_answers_of_a_copy(trained, tmp_path, monkeypatch):
    m = _oracle_eval(trained, tmp_path, monkeypatch, lambda x, s, t: x.clone(),
                     ["judge", "sharpness", "identity", "collapse", "frechet", "discriminator"])
    # Each copy is judged as its source is, so exactly one of a source's 7 targets can match.
    assert m["judge"]["generated"]["accuracy"] == pytest.approx(1 / 7)
    # The copies are the sources' very pixels: as sharp, as varied.
    assert m["sharpness"]["ratio"] == pytest.approx(1.0) and m["sharpness"]["equivalent_blur_sigma"] == 0.0
    assert all(v == pytest.approx(1.0) for v in m["sharpness"]["per_affect"].values())
    assert m["collapse"]["ratio"] == pytest.approx(1.0) and not m["collapse"]["collapsed"]
    # An unchanged face is the same person at distance 0, and dlib finds it exactly when it finds the source.
    idn = m["identity"]
    assert idn["generated_face_not_found"] == 7 * idn["sources_face_not_found"]
    assert idn["measured"] == 28 - 7 * idn["sources_face_not_found"] > 0
    assert idn["mean_distance"] == pytest.approx(0.0, abs=1e-9) and idn["share_under_threshold"] == 1.0
    assert m["headline"]["identity"]["value"] == 1.0
    # Same descriptors on both sides, only repeated 7 times on the generated side: equal means, and
    # covariances that differ by the factor c = 7(n-1)/(7n-1) of the unbiased estimate, so the distance
    # is tr(S)(1 - sqrt(c))^2, about 0.014 tr(S) for n = 4 (tr(S) of dlib descriptors is well under 1).
    assert m["frechet"]["dlib_descriptors"]["value"] < 0.01
    # An editor without a discriminator: Table 1 says why it is missing instead of failing.
    assert m["discriminator"]["available"] is False and "no discriminator" in m["discriminator"]["reason"]


class _MarkingEditor(FunctionEditor):
    """Edits carry a white 4x4 corner; its 'discriminator' calls exactly those fake (and every face anger)."""

    def __init__(self, binary: bool) -> None:
        from fexdata.affects import AFFECTS

        super().__init__(self._mark, AFFECTS, 64)
        self.binary = binary

    @staticmethod
    def _mark(x, s, t):
        x = x.clone()
        x[:, :, :4, :4] = 1.0
        return x

    def classify(self, x):
        return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), len(self.affects)).float()

    def real_fake(self, x):
        if not self.binary:
            return None
        marked = (x[:, :, :4, :4] > 0.999).flatten(1).all(1)
        return torch.where(marked, -2.0, 2.0)


@pytest.mark.parametrize("binary", [True, False])
def test_table_1_known_answers(trained, tmp_path, monkeypatch, binary):
    """Real/fake columns from `real_fake` where the model has it; left out, with the reason, where not."""
    import fextrain.evaluate.run as run_module

    manifest, run = trained
    monkeypatch.setattr(run_module, "load_editor", lambda run_dir, device: _MarkingEditor(binary))
    m = evaluate_run(run, manifest, tmp_path / "eval", sections=["discriminator"], max_table_images=8, device="cpu",
                     progress=False).metrics["discriminator"]
    test = m["splits"]["test"]
    assert test["real"]["multi"]["count"] == test["fake"]["multi"]["count"] == 8
    report = (tmp_path / "eval" / "report.html").read_text()
    if binary:
        assert test["real"]["binary"]["accuracy"] == test["fake"]["binary"]["accuracy"] == 1.0 and "binary" not in m
        assert "real binary" in report and "fake binary" in report
    else:
        assert test["real"]["binary"] is None and test["fake"]["binary"] is None
        assert "no real/fake logit" in m["binary"] and "real binary" not in report
        assert "no real/fake output with a threshold" in report


def test_known_answers_of_a_blurred_copy(trained, tmp_path, monkeypatch):
    from fextrain.evaluate.degrade import gaussian_blur

    m = _oracle_eval(trained, tmp_path, monkeypatch, lambda x, s, t: gaussian_blur(x, 1.0),
                     ["sharpness", "collapse"], identity=False)
    sharp = m["sharpness"]
    # Blurrier than its sources, and read off the reference curve as the sigma-1 blur it is (the
    # reference blurs the uint8 sources, the edit blurs floats: the same filter up to rounding).
    assert sharp["ratio"] < 0.6 and sharp["ratio"] == pytest.approx(sharp["blur_reference"]["1"], rel=0.05)
    assert sharp["equivalent_blur_sigma"] == pytest.approx(1.0, abs=0.05)
    # Softness is not collapse: coarse structure still differs between people.
    assert m["collapse"]["ratio"] > 0.9 and not m["collapse"]["collapsed"]
    assert set(m) >= {"sharpness", "collapse"} and "judge" not in m and "identity" not in m


def test_a_constant_generator_is_flagged_as_collapsed(trained, tmp_path, monkeypatch):
    def one_face_per_target(x, s, t):  # every source gives the same face for a given target
        return (t[:, :3, None, None] * 2 - 1).expand(-1, -1, 64, 64).clone() * 0.5

    m = _oracle_eval(trained, tmp_path, monkeypatch, one_face_per_target, ["collapse"], identity=False)
    assert m["collapse"]["ratio"] == 0.0 and m["collapse"]["collapsed"] is True
    assert m["headline"]["collapse"]["flag"] == "COLLAPSED"


def test_sections_subset_and_unknown_names(trained, tmp_path):
    manifest, run = trained
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(manifest), "--out", str(tmp_path),
                                   "--sections", "judge,nonsense", *SMALL])
    assert res.exit_code == 2 and "error: unknown section(s) nonsense" in res.output
    assert "hint: choose from: judge, edit_strength, sharpness" in res.output
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(manifest), "--out", str(tmp_path),
                                   "--sections", "sharpness", *SMALL])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert [k for k in m if k not in ("schema_version", "headline", "run")] == ["sharpness"]
    assert list(m["headline"]) == ["sharpness"] and not (tmp_path / "judge").exists()


def test_every_registered_model_is_evaluated_through_its_editor(trained, tmp_path):
    """Every other model goes through the same sections; Table 1 appears where the model classifies."""
    from fextrain.models import MODELS

    manifest, _ = trained
    for model in sorted(set(MODELS) - {"fexgan"}):  # fexgan: the CLI test above
        run = train_tiny_run(manifest, tmp_path / model, steps=2, model=model)
        m = evaluate_run(run, manifest, tmp_path / f"{model}-eval", sections=["judge", "discriminator", "figures"],
                         max_sources=2, max_table_images=4, judge_epochs=1, judge_min_steps=10, judge_size=32,
                         figure_identities=1, device="cpu", progress=False)
        assert m.metrics["run"]["model"] == model and m.metrics["run"]["config"]["model"] == model
        assert m.metrics["judge"]["generated"]["count"] == 2 * 7
        disc = m.metrics["discriminator"]
        if disc.get("available", True):
            table = disc["splits"]["test"]
            assert table["real"]["multi"]["count"] == 4 and table["fake"]["multi"]["count"] == 4
            # binary columns where D has a real/fake output with a threshold; StarGAN's WGAN critic has none
            assert (table["real"]["binary"] is None) == (model == "stargan") == ("binary" in disc)
        else:  # ExprGAN's image discriminator is conditioned on the label: it has no affect head
            assert model == "exprgan" and "no discriminator with an affect head" in disc["reason"]
        assert f"({model}) at step 2" in (tmp_path / f"{model}-eval" / "report.html").read_text()


def test_help_lists_every_registered_section():
    from fextrain.evaluate.sections import SECTIONS

    res = CliRunner().invoke(fex, ["eval", "--help"])
    assert res.exit_code == 0
    assert all(name in " ".join(res.output.split()) for name in SECTIONS)
