"""`fex eval` end to end: a tiny run really trained on sample faces, evaluated through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch
from click.testing import CliRunner

from _eval_fixtures import train_tiny_run, write_face_manifest

from cli.main import main as fex
from fexdata.manifest import read_manifest, write_manifest
from fextrain.evaluate.run import EvalError, evaluate_run

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

    m = json.loads((out / "metrics.json").read_text())
    step = m["run"]["step"]
    assert step == 2
    for section in ("discriminator", "judge", "identity", "frechet"):
        assert m[section]["step"] == step
    # Discriminator table for every split present, with counts.
    assert set(m["discriminator"]["splits"]) == {"train", "val", "test"}
    assert m["discriminator"]["splits"]["test"]["real"]["binary"]["count"] == 8
    # Judge: trained on the 3 train identities (42 images: one batch, so 30 epochs reach the 30 minimum
    # steps), scored on all 28 test images, then on 4 sources x 7 affects generated images.
    judge = m["judge"]
    assert judge["trained_on"] == {"split": "train", "count": 42, "epochs": 30, "reused_from_cache": False}
    assert judge["real"]["count"] == 28 and judge["real"]["split"] == "test"
    assert judge["generated"]["count"] == 28 and judge["generated"]["sources"] == 4
    assert sum(map(sum, judge["real"]["confusion"]["counts"])) == 28
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
    # Figures decode; the report embeds each of them.
    names = {"random_samples.png", "identities.png", "mixed.png", "intensity.png"}
    assert {Path(p).name for p in m["run"]["figures"]} == names
    for name in names:
        img = cv2.imread(str(out / "figures" / name))
        assert img is not None and img.shape[0] > 50
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "Identity preservation" in html
    assert (out / "judge" / "judge.safetensors").is_file()


def test_a_run_still_training_is_evaluated_at_its_latest_checkpoint(trained, tmp_path):
    manifest, run = trained
    opts = dict(max_sources=2, max_table_images=4, judge_epochs=1, judge_min_steps=10, judge_size=32,
                identity=False, figure_identities=1, device="cpu", progress=False)
    first = evaluate_run(run, manifest, tmp_path / "eval", **opts)
    train_tiny_run(manifest, run, steps=3, resume=True)  # the run goes on; a new last.pt appears
    second = evaluate_run(run, manifest, tmp_path / "eval", **opts)
    assert (first["run"]["step"], second["run"]["step"]) == (2, 3)
    assert second["judge"]["trained_on"]["reused_from_cache"] is True
    assert second["identity"] == {"step": 3, "available": False, "reason": "identity metrics switched off"}


def test_fails_clearly_without_a_checkpoint(trained, tmp_path):
    manifest, _ = trained
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    res = CliRunner().invoke(fex, ["eval", str(empty), "--manifest", str(manifest), *SMALL])
    assert res.exit_code == 1 and "no checkpoint yet" in res.output


def test_fails_clearly_on_a_manifest_without_test_split(trained, tmp_path):
    manifest, run = trained
    df, meta = read_manifest(manifest)
    df["split"] = df["split"].replace({"test": "val"})
    bad = write_manifest(df, manifest.parent / "no_test.parquet", affects=meta["affects"])
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(bad), "--out", str(tmp_path), *SMALL])
    assert res.exit_code == 1 and "no test split" in res.output


def test_fails_clearly_when_affects_differ_from_the_run(trained, tmp_path):
    manifest, run = trained
    df, meta = read_manifest(manifest)
    affects = list(meta["affects"])
    swapped = affects[1:] + affects[:1]  # same names, another index order: every vector would be wrong
    df["affect_index"] = [swapped.index(a) for a in df["affect"]]
    bad = write_manifest(df, manifest.parent / "other_affects.parquet", affects=swapped)
    with pytest.raises(EvalError, match="differ from the run's"):
        evaluate_run(run, bad, tmp_path / "eval", device="cpu", progress=False)


class CopyGenerator(torch.nn.Module):
    """An oracle 'generator' that returns its source unchanged, whatever the target affect."""

    def encode(self, x: torch.Tensor, src_vec: torch.Tensor):
        return x.flatten(1), torch.zeros(len(x), 1)

    def decode(self, z: torch.Tensor, tgt_vec: torch.Tensor) -> torch.Tensor:
        return z.view(len(z), 3, 64, 64).clamp(-1, 1)


def test_known_answers_with_a_generator_that_copies_its_source(trained, tmp_path, monkeypatch):
    import fextrain.evaluate.run as run_module
    from fextrain.checkpoint import load_run

    manifest, run = trained
    cfg, _, disc, step = load_run(run)
    monkeypatch.setattr(run_module, "load_run", lambda run_dir, device: (cfg, CopyGenerator(), disc, step))
    m = evaluate_run(run, manifest, tmp_path / "eval", max_sources=4, max_table_images=4, judge_epochs=1,
                     judge_min_steps=10, judge_size=32, figure_identities=1, device="cpu", progress=False)
    # Each copy is judged as its source is, so exactly one of a source's 7 targets can match.
    assert m["judge"]["generated"]["accuracy"] == pytest.approx(1 / 7)
    # An unchanged face is the same person at distance 0, and dlib finds it exactly when it finds the source.
    idn = m["identity"]
    assert idn["generated_face_not_found"] == 7 * idn["sources_face_not_found"]
    assert idn["measured"] == 28 - 7 * idn["sources_face_not_found"] > 0
    assert idn["mean_distance"] == pytest.approx(0.0, abs=1e-9) and idn["share_under_threshold"] == 1.0
    # Same descriptors on both sides, only repeated 7 times on the generated side: equal means, and
    # covariances that differ by the factor c = 7(n-1)/(7n-1) of the unbiased estimate, so the distance
    # is tr(S)(1 - sqrt(c))^2, about 0.014 tr(S) for n = 4 (tr(S) of dlib descriptors is well under 1).
    assert m["frechet"]["dlib_descriptors"]["value"] < 0.01
