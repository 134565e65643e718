"""The papers' own protocols under `fex eval`: ExprGAN's intensity check and augmentation study (Table 1),
DE-GAN's recognition over identity-disjoint folds. Known answers through oracle editors, then real tiny
runs through the CLI and the library."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _eval_fixtures import FunctionEditor, train_tiny_run, write_face_manifest

from cli.main import main as fex
from fexdata.dataset import FaceDataset
from fexdata.errors import EvalError
from fexdata.manifest import read_manifest, write_manifest
from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.judge import JudgeSettings, effective_epochs
from fextrain.evaluate.options import EvalOptions
from fextrain.evaluate.run import evaluate_run
from fextrain.evaluate.sections.augment import AugmentSection
from fextrain.evaluate.sections.intensity import IntensitySection, rises_monotonically

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SMALL = dict(max_sources=2, max_table_images=4, judge_epochs=1, judge_min_steps=60, judge_size=32,
             figure_identities=1, device="cpu", progress=False, intensity_sources=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The eval fixture's faces (3 train, 1 val, 2 test identities) with 3 identity-disjoint folds."""
    root = tmp_path_factory.mktemp("protocols")
    manifest = write_face_manifest(root / "data")
    df, meta = read_manifest(manifest)
    df["fold"] = df["identity_index"] % 3
    return write_manifest(df, root / "data" / "folds.parquet", affects=meta["affects"])


def _context(editor, manifest: Path, out: Path, **opts) -> EvalContext:
    return EvalContext(editor, manifest, ["train", "val", "test"], EvalOptions(**{**SMALL, **opts}), out, "cpu",
                       lambda msg: None)


def _real_faces_by_affect(manifest: Path) -> dict[int, torch.Tensor]:
    """One real train face per affect, as the model input range."""
    train = FaceDataset(manifest, "train", 64, progress=False)
    out = {}
    for a in range(len(train.affects)):
        i = int(np.flatnonzero(train.affect_ids == a)[0])
        out[a] = torch.from_numpy(np.array(train.image_array(i))).permute(2, 0, 1).float() / 127.5 - 1
    return out


def test_rises_monotonically():
    assert rises_monotonically([0.1, 0.2, 0.2, 0.5]) and not rises_monotonically([0.1, 0.3, 0.2])
    assert not rises_monotonically([0.3, 0.3, 0.3])  # flat: the magnitude does nothing
    assert rises_monotonically([0.1, 0.1 - 1e-9, 0.4])  # float noise is not a fall


def test_rises_monotonically_judges_each_step_on_its_pairs():
    """Per-pair confidences: a dip within the pairs' own noise, or a saturated plateau, is not a fall; the
    same mean dip taken by every pair is; a rise as large as the noise is no rise."""
    rng = np.random.default_rng(0)
    base = np.array([0.2, 0.5, 0.7, 0.78, 0.76])                       # mean dips by 0.02 at the end
    noisy = np.clip(base + rng.normal(0, 0.3, (20, 5)), 0, 1)
    noisy += base - noisy.mean(0)                                      # exactly that mean curve
    assert rises_monotonically(noisy)                                  # the dip is well within 2 SE
    consistent = np.tile(base, (20, 1)) + rng.normal(0, 0.001, (20, 5))
    assert not rises_monotonically(consistent)                         # every pair falls by 0.02
    saturated = np.tile([0.6, 0.99, 0.9972, 0.9971, 0.9970], (16, 1))
    assert rises_monotonically(saturated)                              # 1e-4 moves are below RESOLUTION
    weak = rng.normal(0, 0.3, (10, 3)) + [0.4, 0.42, 0.45]
    assert not rises_monotonically(weak)                               # 0.05 rise inside 2 SE of 10 pairs


def test_intensity_known_answers(data, tmp_path):
    """An oracle that shows a real face of the target affect once the target's weight reaches 0.5 (else the
    source unchanged) rises; the reversed oracle falls."""
    faces = _real_faces_by_affect(data)
    affects = read_manifest(data, ["affect"])[1]["affects"]

    def oracle(reverse: bool):
        def fn(x, src, tgt):
            weight, target = tgt.max(dim=1)
            show = (weight >= 0.5) != reverse
            return torch.stack([faces[int(t)] if s else xi for xi, t, s in zip(x, target, show)])
        return fn

    results = {}
    for reverse in (False, True):
        # every train identity: with 3 of them a held-out one would leave the judge too few to read faces
        ctx = _context(FunctionEditor(oracle(reverse), affects), data, tmp_path, judge_min_steps=300,
                       judge_holdout=0.0)
        results[reverse] = IntensitySection().compute(ctx)
    up, down = results[False], results[True]
    assert up["intensities"] == [0.2, 0.4, 0.6, 0.8, 1.0] and up["sources"] == 4 and up["pairs"] == 4 * 6
    assert up["monotonic"] and up["mean_confidence"][-1] > up["mean_confidence"][0] + 0.2
    assert up["mean_confidence"][0] == pytest.approx(up["mean_confidence"][1])  # below 0.5: the source itself
    assert not down["monotonic"] and down["mean_confidence"][0] > down["mean_confidence"][-1]
    assert sum(v["pairs"] for v in up["per_affect"].values()) == up["pairs"]


def test_augment_generates_from_train_faces_only(data, tmp_path):
    """The generated images start from train faces (the test identities stay unseen), N per affect."""
    affects = tuple(read_manifest(data, ["affect"])[1]["affects"])
    train = FaceDataset(data, "train", 64, progress=False)
    test = FaceDataset(data, "test", 64, progress=False)
    train_keys = {np.asarray(img).tobytes() for img in train.images}
    test_keys = {np.asarray(img).tobytes() for img in test.images}
    seen: list[bytes] = []

    def copy(x, src, tgt):
        seen.extend(((xi + 1) * 127.5).round().byte().permute(1, 2, 0).numpy().tobytes() for xi in x)
        return x

    ctx = _context(FunctionEditor(copy, affects), data, tmp_path, augment=(3,))
    images, labels = AugmentSection().generate(ctx, 3)
    assert images.shape == (3 * 7, 32, 32, 3) and np.bincount(labels).tolist() == [3] * 7
    assert len(seen) == 21 and set(seen) <= train_keys and not set(seen) & test_keys


def test_exprgan_run_intensity_and_augment_through_the_cli(data, tmp_path):
    run = train_tiny_run(data, tmp_path / "run", steps=3, model="exprgan")
    out = tmp_path / "eval"
    res = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(data), "--out", str(out), "--sections",
                                   "intensity,augment", "--augment", "2,4", "--intensities", "0.2,0.6,1",
                                   "--intensity-sources", "2", "--judge-epochs", "3", "--judge-min-steps", "0",
                                   "--judge-size", "32", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "rises monotonically" in res.output and "N=0:" in res.output and "N=4:" in res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["intensity"]["intensities"] == [0.2, 0.6, 1.0] and len(m["intensity"]["mean_confidence"]) == 3
    assert all(0 <= c <= 1 for c in m["intensity"]["mean_confidence"])
    rows = m["augment"]["rows"]
    assert [r["per_affect"] for r in rows] == [0, 2, 4] and [r["generated"] for r in rows] == [0, 14, 28]
    assert all(r["real"] == 42 and r["test"]["count"] == 28 and 0 <= r["test"]["accuracy"] <= 1 for r in rows)
    assert rows[0]["gain"] == 0 and (out / "augment" / "n4" / "judge.safetensors").is_file()
    # every judge of the study trains as long as the largest set's (3 epochs of 70 images = 6 updates), so
    # a row differs from N = 0 by its data, not by more updates
    updates = []
    for n in (0, 2, 4):
        meta = json.loads((out / "augment" / f"n{n}" / "judge.json").read_text())
        settings = JudgeSettings(**meta["settings"])
        updates.append(effective_epochs(meta["train_count"], settings) * -(-meta["train_count"] // settings.batch_size))
    assert updates == [6, 6, 6] and m["augment"]["judge_updates"] == 6
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Augmentation study" in html
    bad = CliRunner().invoke(fex, ["eval", str(run), "--manifest", str(data), "--augment", "0"])
    assert bad.exit_code == 2 and "at least 1" in bad.output


def test_opt_in_sections_run_only_when_asked(data, tmp_path):
    from fextrain.evaluate.run import select_sections
    from fextrain.evaluate.sections import SECTIONS

    defaults = [n for n in select_sections(None) if SECTIONS[n].requested(EvalOptions())]
    assert "intensity" in defaults and "augment" not in defaults and "fer_folds" not in defaults
    assert SECTIONS["augment"].requested(EvalOptions(augment=(10,))) and SECTIONS["fer_folds"].requested(
        EvalOptions(fer_folds=True))
    run = train_tiny_run(data, tmp_path / "run", steps=1, model="exprgan")
    with pytest.raises(EvalError, match="generated-image counts"):
        evaluate_run(run, data, tmp_path / "eval", sections=["augment"], **SMALL)


def test_degan_fold_protocol(data, tmp_path):
    """Every fold: DE-GAN trained on the other folds (its identity head sized by them), its recognition head
    and the plain judge scored on the held-out identities; a second evaluation reuses the fold runs."""
    run = train_tiny_run(data, tmp_path / "run", steps=2, model="degan")
    logs: list[str] = []
    m = evaluate_run(run, data, tmp_path / "eval", sections=["fer_folds", "intensity", "augment"], fer_folds=True,
                     fer_steps=3, augment=(2,), log=logs.append, **SMALL).metrics
    folds = m["fer_folds"]["folds"]
    assert [f["fold"] for f in folds] == [0, 1, 2] and m["fer_folds"]["has_recognition_head"]
    df, _ = read_manifest(data, ["identity", "fold"])
    for f in folds:
        held = set(df.loc[df["fold"] == f["fold"], "identity"])
        cfg = json.loads((tmp_path / "eval" / "fer-folds" / f"fold{f['fold']}" / "config.json").read_text())
        assert cfg["holdout_fold"] == f["fold"] and cfg["steps"] == 3 and not held & set(cfg["identities"])
        assert f["test_images"] == 14 * len(held) and f["train_images"] == 84 - f["test_images"]
        assert f["steps"] == 3 and 0 <= f["model"]["accuracy"] <= 1 and f["judge"]["count"] == f["test_images"]
    assert m["fer_folds"]["model_mean"] == pytest.approx(np.mean([f["model"]["accuracy"] for f in folds]))
    assert m["intensity"]["available"] is False and "redraws its identity" in m["intensity"]["reason"]
    assert [r["generated"] for r in m["augment"]["rows"]] == [0, 14]  # faces of each affect on other identities
    trained = sum("training degan" in line for line in logs)
    logs.clear()
    evaluate_run(run, data, tmp_path / "eval", sections=["fer_folds"], fer_folds=True, fer_steps=3, log=logs.append,
                 **SMALL)
    assert trained == 3 and not any("training degan" in line for line in logs)


def test_fold_protocol_needs_folds(tmp_path):
    manifest = write_face_manifest(tmp_path / "data")
    run = train_tiny_run(manifest, tmp_path / "run", steps=1, model="degan")
    with pytest.raises(EvalError, match="no cross-validation folds") as err:
        evaluate_run(run, manifest, tmp_path / "eval", sections=["fer_folds"], fer_folds=True, **SMALL)
    assert "--folds 10" in err.value.hint
