"""DE-GAN as the paper describes it: the multi-task discriminator, eq. 1-2, the G-more-often schedule, the
frozen-encoder recognition stage, and identity editing.

Registry-wide behaviour (shapes at 64/128/256, reconstruction falling, exact resume across the
recognition boundary, loading) is in tests/test_models.py.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _train_fixtures import TINY_ARCHS, tiny_config, write_tiny_manifest

from fexdata.errors import EditError
from fextrain.models import Batch, StepContext, build_model, load_editor, one_hot
from fextrain.models.degan import identity_weights, phase_at
from fextrain.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = TINY_ARCHS["degan"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


def test_paper_settings_and_heads():
    m = build_model("degan", size=128, num_affects=7, num_identities=118)  # CK+: 7 classes, 118 subjects
    assert m.discriminator.expression.out_features == 8  # N_e + 1: the last one is "fake"
    assert m.discriminator.identity.out_features == 118
    assert m.generator.to_rep.out_features == 350  # f(x)'s length
    assert m.generator.project[0].in_features == 350 + 50 + 118  # [f(x), z, one-hot I]
    assert len(m.recognizer.local) == 4 and m.recognizer.final.in_features == 350 + 4 * 64
    assert m.loss.lambdas == (0.7, 0.6, 0.4, 0.3, 1.0)
    assert m.defaults.lr == 1e-4 and m.defaults.betas[0] == 0.5 and m.defaults.batch == 150
    weights = [mod.weight for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert all(abs(w.std().item() - 0.02) < 0.004 for w in weights if w.numel() > 5000)  # N(0, 0.02)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        rep, residues = m.generator.encode(x)
        assert rep.shape == (2, 350) and [r.shape[-1] for r in residues] == [32, 16, 8, 4]
        assert m.generator(x, torch.zeros(2, 50), identity_weights(torch.tensor([0, 117]), 2, 118, x.device)).shape == x.shape
        assert m.classify(x).shape == (2, 7)


def test_schedule():
    loss = build_model("degan", size=64, num_affects=3, num_identities=2, **TINY).loss
    phases = [phase_at(s, 14, loss) for s in range(1, 15)]  # GAN for 12 of 14 steps (300 of 350 epochs)
    assert phases == ["gan"] * 6 + ["gan-late"] * 6 + ["recognition"] * 2


def _batch(n: int = 4) -> Batch:
    return Batch(x=torch.rand(n, 3, 64, 64) * 2 - 1, affect=torch.tensor([0, 1, 2, 0][:n]),
                 identity=torch.tensor([0, 0, 1, 1][:n]), target_affect=torch.tensor([1, 2, 0, 1][:n]))


def _step(model, step: int, total: int) -> tuple[dict, dict[str, bool]]:
    nets = model.networks()
    before = {k: [p.detach().clone() for p in v.parameters()] for k, v in nets.items()}
    ctx = StepContext(step=step, total=total, nets=nets, plain=nets, eager=nets,
                      optimizers=model.optimizers(1e-3, (0.5, 0.999)), autocast=nullcontext,
                      rng=torch.Generator().manual_seed(step), raw=nets)
    out = model.train_step(_batch(), ctx)
    changed = {k: any(not torch.equal(p, q) for p, q in zip(v.parameters(), before[k])) for k, v in nets.items()}
    return out, changed


def test_gan_steps_follow_eq_1_and_2_and_g_outpaces_d_later():
    torch.manual_seed(0)
    model = build_model("degan", size=64, num_affects=3, num_identities=2, **TINY)
    out, changed = _step(model, 1, 14)
    assert changed == {"generator": True, "discriminator": True, "recognizer": False}
    assert {"g_expr", "g_id", "g_rec", "d_real_expr", "d_real_id", "d_fake"} <= set(out)
    out, changed = _step(model, 9, 14)  # late: D only every second step
    assert changed == {"generator": True, "discriminator": False, "recognizer": False} and "d_total" not in out
    out, changed = _step(model, 10, 14)
    assert changed["discriminator"] and "d_total" in out


def test_discriminator_losses_are_the_papers():
    """Eq. 1 as cross-entropies: real -> (y^e, y^id); fake -> class N_e; eq. 2: fake -> (y^e, I)."""
    from fextrain.losses import cross_entropy

    torch.manual_seed(1)
    e_real, i_real, e_fake = torch.randn(4, 4), torch.randn(4, 2), torch.randn(4, 4)
    y_e, y_id = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 1, 1])
    d = cross_entropy(e_real, y_e) + cross_entropy(i_real, y_id) + cross_entropy(e_fake, torch.full((4,), 3))
    logp = F.log_softmax
    by_hand = -(logp(e_real, 1)[range(4), y_e].mean() + logp(i_real, 1)[range(4), y_id].mean()
                + logp(e_fake, 1)[:, 3].mean())
    assert torch.allclose(d, by_hand)


def test_recognition_stage_freezes_the_encoder():
    torch.manual_seed(0)
    model = build_model("degan", size=64, num_affects=3, num_identities=2, **TINY)
    bn = [m for m in model.generator.modules() if isinstance(m, nn.BatchNorm2d)][0]
    stats = bn.running_mean.clone()
    out, changed = _step(model, 14, 14)
    assert changed == {"generator": False, "discriminator": False, "recognizer": True}
    assert torch.equal(bn.running_mean, stats) and model.generator.training  # eval-mode statistics, mode restored
    assert {"r_total", "r_final", "acc_recognition"} == set(out)
    x = _batch().x
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.classify(x), model.recognizer(*model.generator.encode(x))[-1])


def test_edit_draws_the_chosen_identity_and_keeps_the_expression(manifest, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(manifest, run, "degan", steps=3), progress=False)
    ed = load_editor(run)
    assert ed.gan.identity_edit and ed.identities == ("test:id0", "test:id1")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    src = one_hot(torch.tensor([4, 4]), 7)
    with torch.no_grad():
        a = ed.edit(x, src, one_hot(torch.tensor([0, 0]), 7), identity=torch.tensor([0, 0]))
        b = ed.edit(x, src, one_hot(torch.tensor([3, 6]), 7), identity=torch.tensor([0, 0]))
        c = ed.edit(x, src, one_hot(torch.tensor([0, 0]), 7), identity=torch.tensor([ed.identity_index("test:id1")] * 2))
        avg = ed.edit(x, src, src)
        mix = ed.edit(x, src, src, identity=torch.full((2, 2), 0.5))
    assert torch.equal(a, b)  # the target affect does not steer DE-GAN
    assert not torch.allclose(a, c)  # the identity does
    assert torch.allclose(avg, mix, atol=1e-6)  # no identity: the average train identity
    with pytest.raises(EditError, match="not one of this run's train identities"):
        ed.identity_index("test:nobody")
    fex = tmp_path / "fexgan"
    train(tiny_config(manifest, fex, "fexgan", steps=1), progress=False)
    with pytest.raises(EditError, match="edits expressions, not identities"):
        load_editor(fex).edit(x, src, src, identity=torch.tensor([0, 0]))


def test_bf16_run_through_every_phase(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", "degan", steps=6, amp="bf16", channels_last="on")
    train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["recognition_stage"] for r in rows] == [0, 0, 0, 0, 0, 1]
    assert all(np.isfinite(v) for r in rows for v in r.values())


def test_sample_grid_columns_are_train_identities():
    """Grids ask for every affect; DE-GAN keeps the expression, so its columns show train identities instead."""
    from fextrain.samples import render_grid

    torch.manual_seed(0)
    model = build_model("degan", size=64, num_affects=3, num_identities=2, **TINY)
    faces = (np.random.default_rng(0).random((2, 64, 64, 3)) * 255).astype(np.uint8)
    grid = render_grid(model, faces, np.array([0, 1]), 3, torch.device("cpu"))
    tile = lambda c: grid[2:66, 2 + c * 66:66 + c * 66]  # noqa: E731  (row 0, column c)
    assert not np.array_equal(tile(1), tile(2)) and np.array_equal(tile(1), tile(3))  # identities 0, 1, 0


def test_holdout_fold_trains_on_the_other_folds(tmp_path):
    """`holdout_fold`: every row outside the fold, whatever its split; an absent fold is refused."""
    from fexdata.errors import ManifestError
    from fexdata.manifest import read_manifest, write_manifest

    manifest = write_tiny_manifest(tmp_path / "data", identities=3)
    df, meta = read_manifest(manifest)
    df["fold"] = df["identity_index"]
    df.loc[df["identity_index"] == 2, "split"] = "test"
    folds = write_manifest(df, tmp_path / "data" / "folds.parquet", affects=meta["affects"])
    result = train(tiny_config(folds, tmp_path / "run", "degan", steps=1, holdout_fold=0), progress=False)
    cfg = json.loads((result.run_dir / "config.json").read_text())
    assert cfg["identities"] == ["test:id1", "test:id2"]  # fold 0 held out; the test-split identity kept
    with pytest.raises(ManifestError, match="cannot hold out fold 5"):
        train(tiny_config(folds, tmp_path / "bad", "degan", steps=1, holdout_fold=5), progress=False)


def test_fex_edit_draws_a_photo_on_a_chosen_identity(tmp_path, tmp_path_factory):
    """`fex edit --identity NAME` on a DE-GAN run: the face keeps its expression and takes the named train
    identity (outputs differ by identity); an unknown name and an expression model are refused clearly."""
    from click.testing import CliRunner

    from _edit_fixtures import build_run, canvas_photo

    from cli.main import main as fex
    from fexdata.images import read_rgb, write_png

    pipeline = tmp_path_factory.getbasetemp() / "edit-pipeline"  # the ingested data test_edit_cli.py uses too
    run = build_run(pipeline, model="degan", steps=3)
    names = json.loads((run / "config.json").read_text())["identities"]
    photo = write_png(tmp_path / "in" / "me.png", canvas_photo())
    outs = []
    for name in names[:2]:
        out = tmp_path / f"out-{name.replace(':', '_')}"
        res = CliRunner().invoke(fex, ["edit", str(run), str(photo), "--to", "joy", "--identity", name, "--out",
                                       str(out), "--quiet", "--threads", "1"])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "edit.json").read_text())["settings"]["identity"] == name
        outs.append(read_rgb(out / "me" / "joy.png"))
    assert not np.array_equal(outs[0], outs[1])
    res = CliRunner().invoke(fex, ["edit", str(run), str(photo), "--to", "joy", "--identity", "nobody", "--out",
                                   str(tmp_path / "bad"), "--quiet"])
    assert res.exit_code == 2 and "not one of this run's train identities" in res.output
    fexgan = build_run(pipeline)
    res = CliRunner().invoke(fex, ["edit", str(fexgan), str(photo), "--to", "joy", "--identity", names[0], "--out",
                                   str(tmp_path / "bad2"), "--quiet"])
    assert res.exit_code == 2 and "edits expressions, not identities" in res.output


def test_eval_figure_draws_each_source_as_train_identities(tmp_path):
    """`fex eval`'s figure for an identity editor: its columns are train identities (the affect figures, mixed
    and intensity, would repeat one picture per row, so they are not drawn)."""
    import cv2
    from _eval_fixtures import train_tiny_run, write_face_manifest

    from fextrain.evaluate import evaluate_run

    (tmp_path / "data").mkdir()
    manifest = write_face_manifest(tmp_path / "data", per_affect=1)  # 3 train identities, 2 test ones
    run = train_tiny_run(manifest, tmp_path / "run", steps=2, model="degan")
    result = evaluate_run(run, manifest, tmp_path / "eval", sections=["figures"], device="cpu", progress=False)
    assert [f["file"] for f in result.metrics["figures"]["files"]] == ["figures/identities.png"]
    assert [p.name for p in (tmp_path / "eval" / "figures").iterdir()] == ["identities.png"]
    grid = cv2.imread(str(tmp_path / "eval" / "figures" / "identities.png"))
    cell, gap, label_h, label_w = 96, 2, 22, 72  # fextrain.evaluate.grids.image_grid's layout
    assert grid.shape[:2] == (label_h + 2 * (cell + gap) + gap, label_w + 4 * (cell + gap) + gap)  # source + 3
    tile = lambda c: grid[label_h + gap:label_h + gap + cell, label_w + gap + c * (cell + gap):][:, :cell]  # noqa: E731
    assert not np.array_equal(tile(1), tile(3))  # the first row drawn as two different train identities
