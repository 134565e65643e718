"""`identity_transfer`, DE-GAN's own measure (issue 24), against editors whose answers are known.

The sample characters are restyled copies of one photo, and dlib reads them as one person (their mean
descriptors lie 0.05-0.20 apart), so they alone cannot show an identity change. The manifest here adds real,
different people: faces of scikit-image's bundled LFW subset, each over 0.6 from the others and from the sample
characters. The editors replace the model at `load_editor`; the judge, dlib and `fex eval` are the real ones.
"""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from _eval_fixtures import FunctionEditor, oracle_run_dir, train_tiny_run

from fexdata.affects import AFFECTS
from fexdata.dataset import FaceDataset
from fexdata.manifest import write_manifest
from fexdata.sample import sample_face
from fextrain.evaluate.run import evaluate_run

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SIZE = 64
# LFW-subset faces of different people: dlib finds each at 64 px, and they lie over 0.6 apart (measured).
LFW_TRAIN, LFW_TEST = (0, 1), (2, 5, 6)
TEST_AFFECTS = ("anger", "joy", "sadness", "surprise")  # the sample character's test faces (few: dlib is slow)
JUDGE = dict(judge_epochs=1, judge_min_steps=150, judge_size=32, judge_holdout=0.0)


def _lfw_face(i: int) -> np.ndarray:
    from skimage.data import lfw_subset

    grey = (lfw_subset()[i] * 255).round().astype(np.uint8)  # 25 x 25
    return cv2.resize(np.repeat(grey[..., None], 3, axis=2), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _write(root, rows: list, name: str, split: str, affect: str, j: int, img: np.ndarray) -> None:
    rel = f"crops/{name.replace(':', '_')}/{affect}_{j}.png"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    rows.append({"image": rel, "identity": name, "affect": affect, "affect_index": AFFECTS.index(affect),
                 "split": split, "weight": 1.0, "source": "sample", "source_path": rel, "item": rel, "ingest": ".",
                 "affect_raw": affect, "crop_size": SIZE})


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Train: two sample characters (every affect) and two LFW people (a face and its mirror image); test: a third
    sample character (four affects) and three other LFW people. -> (manifest, run, eval folder)."""
    root = tmp_path_factory.mktemp("transfer")
    data, rows = root / "data", []
    for ident, split, affects in ((0, "train", AFFECTS), (1, "train", AFFECTS), (4, "test", TEST_AFFECTS)):
        for affect in affects:
            _write(data, rows, f"sample:c{ident}", split, affect, 0, sample_face(ident, affect, size=SIZE))
    for i in LFW_TRAIN:
        face = _lfw_face(i)
        for j, img in enumerate((face, face[:, ::-1])):
            _write(data, rows, f"lfw:p{i}", "train", "neutral", j, np.ascontiguousarray(img))
    for i in LFW_TEST:
        _write(data, rows, f"lfw:p{i}", "test", "neutral", 0, _lfw_face(i))
    df = pd.DataFrame(rows)
    names = sorted(df["identity"].unique())
    df["identity_index"] = [names.index(n) for n in df["identity"]]
    manifest = write_manifest(df, data / "manifest.parquet", affects=AFFECTS)
    return manifest, oracle_run_dir(root / "run"), root / "eval"  # one eval folder: the judge is trained once


class IdentityEditor(FunctionEditor):
    """An identity-editing stand-in (`gan.identity_edit`): `fn(x, identity ids)` draws x onto those identities;
    without ids (the generated set every section shares) it returns x."""

    def __init__(self, fn, identities: tuple[str, ...]) -> None:
        super().__init__(fn, AFFECTS, SIZE, model="identity-oracle")
        self.gan = SimpleNamespace(identity_edit=True)
        self.identities = identities

    def edit(self, x, source_vec, target_vec, identity=None):
        return x.clone() if identity is None else self.fn(x, identity)


def _train_faces(manifest) -> tuple[tuple[str, ...], dict[str, list[torch.Tensor]]]:
    """The run's identities (the train split's, sorted as training numbers them) and each one's faces."""
    train = FaceDataset(manifest, "train", size=SIZE, progress=False)
    faces: dict[str, list[torch.Tensor]] = {}
    for img, i in zip(train.image_array(np.arange(len(train))), train.identity_ids):
        faces.setdefault(train.identities[i], []).append(
            torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return tuple(sorted(faces)), faces


def _eval(people, monkeypatch, editor, sections=("judge", "identity_transfer"), **opts):
    import fextrain.evaluate.run as run_module

    manifest, run, out = people
    monkeypatch.setattr(run_module, "load_editor", lambda run_dir, device: editor)
    options = dict(max_sources=None, figure_identities=1, device="cpu", progress=False, **JUDGE)
    options.update(opts)
    return evaluate_run(run, manifest, out, sections=list(sections), **options)


def test_a_copy_keeps_the_expression_and_moves_no_one(people, monkeypatch):
    names, _ = _train_faces(people[0])
    m = _eval(people, monkeypatch, IdentityEditor(lambda x, ids: x.clone(), names)).metrics
    r = m["identity_transfer"]
    assert r["sources"] == len(TEST_AFFECTS) + len(LFW_TEST) and r["targets"] == len(names) == 4
    assert r["pairs"] == r["sources"] * 4 and r["faces_found_share"] == 1.0
    # the judge reads a copy exactly as it reads the sources
    assert r["expression_kept_share"] == pytest.approx(r["source_accuracy"]) and r["expression_kept_over_real"] == 1.0
    # a copy reaches only the targets its source already matched: the baseline, and none of the others
    assert r["reached_share"] == pytest.approx(r["baseline_share"])
    assert r["away"] >= len(LFW_TEST) * 4 and r["moved"] == 0 and r["moved_share"] == 0.0
    assert not r["identity_pass"]
    # its two numbers stand where the judge's expression-at-target stood
    assert list(m["headline"]) == ["expression_kept", "identity_reached"]


def test_the_target_identitys_real_face_reaches_it(people, monkeypatch):
    names, faces = _train_faces(people[0])
    m = _eval(people, monkeypatch, IdentityEditor(lambda x, ids: torch.stack([faces[names[i]][0] for i in ids]),
                                                  names)).metrics
    r = m["identity_transfer"]
    assert r["faces_found_share"] == 1.0 and r["reached_share"] >= 0.95 and r["identity_pass"]
    assert r["away"] > 0 and r["moved_share"] >= 0.95  # it moved the sources that were someone else
    assert all(s["reached_share"] >= 0.9 for s in r["per_identity"].values())
    assert "identity reached" in m["headline"]["identity_reached"]["label"]


@pytest.mark.slow
def test_another_identitys_face_does_not_reach_the_target(people, monkeypatch):
    """Each edit shows the *next* identity's face: the LFW targets are missed (the two sample characters, one
    person to dlib, still 'reach' each other, which is why the baseline is reported)."""
    names, faces = _train_faces(people[0])
    wrong = IdentityEditor(lambda x, ids: torch.stack([faces[names[(i + 1) % len(names)]][0] for i in ids]), names)
    r = _eval(people, monkeypatch, wrong).metrics["identity_transfer"]
    per = r["per_identity"]
    assert per["lfw:p0"]["reached_share"] == 0.0 and per["lfw:p1"]["reached_share"] == 0.0
    assert r["reached_share"] <= 0.5 and not r["identity_pass"]


def test_not_an_identity_editor_is_skipped_cleanly(people, monkeypatch):
    copy = FunctionEditor(lambda x, s, t: x.clone(), AFFECTS, SIZE)
    m = _eval(people, monkeypatch, copy, sections=["identity_transfer"]).metrics
    assert m["identity_transfer"]["available"] is False
    assert m["identity_transfer"]["reason"] == "not an identity-editing model"
    names, _ = _train_faces(people[0])
    off = _eval(people, monkeypatch, IdentityEditor(lambda x, ids: x, names), sections=["identity_transfer"],
                identity=False).metrics
    assert off["identity_transfer"]["reason"] == "identity metrics switched off"


def test_a_trained_degan_run_is_measured(people, tmp_path):
    """A real DE-GAN run two steps in: its edits are not faces yet, and the section says so rather than failing."""
    manifest, _, out = people
    run = train_tiny_run(manifest, tmp_path / "run", steps=2, model="degan")
    ev = evaluate_run(run, manifest, out, sections=["judge", "identity_transfer"], max_sources=3,
                      device="cpu", progress=False, **JUDGE)
    r = ev.metrics["identity_transfer"]
    assert r["targets"] == 4 and r["pairs"] == 3 * 4
    assert set(r["per_identity"]) == {"lfw:p0", "lfw:p1", "sample:c0", "sample:c1"}
    assert list(ev.metrics["headline"]) == ["expression_kept", "identity_reached"]
    assert "identity reached" in ev.summary and "expression kept" in ev.summary


def test_transfer_scores_count_faceless_edits_and_sources():
    from fextrain.evaluate.sections.identity_transfer import transfer_scores

    nan = np.nan
    kept = np.array([True, False, True, True, False])
    found = np.array([True, False, True, True, True])  # the second edit has no face
    edit = np.array([0.3, nan, 0.7, 0.5, nan])  # the fifth pair's identity has no reference (no face found in it)
    source = np.array([0.7, 0.7, nan, 0.2, nan])  # the third source has no face; the fourth is the target already
    r = transfer_scores(kept, found, edit, source)
    assert r["expression_kept_share"] == 0.6 and r["faces_found"] == 4 and r["faces_found_share"] == 0.8
    assert r["reached"] == 2 and r["reached_share"] == 0.5 and r["reached_of_all"] == 0.4
    assert r["sources_measured"] == 3 and r["baseline"] == 1 and r["baseline_share"] == pytest.approx(1 / 3)
    assert r["away"] == 1 and r["moved"] == 1 and r["moved_share"] == 1.0  # the faceless edit is not measured
    assert r["mean_distance"] == pytest.approx(0.5)
    assert transfer_scores(kept[:0], found[:0], edit[:0], source[:0])["reached_share"] is None
