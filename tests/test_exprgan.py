"""ExprGAN as the paper builds it: layers, the expression code, intensity, the three stages, the identity network.

Registry-wide behaviour (shapes at 64/128/256, reconstruction falling, exact resume, loading) is in
tests/test_models.py; here: what is particular to ExprGAN.
"""
from __future__ import annotations

import json
import os
import signal
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _train_fixtures import TINY_ARCHS, TINY_LOSSES, tiny_config, write_tiny_manifest

from fextrain.identity_net import IdentityNetSettings, identity_net_steps, load_or_train_identity_net
from fextrain.models import Batch, StepContext, build_model, load_editor, one_hot
from fextrain.models.exprgan import expression_code, intensity_code, stage_at
from fextrain.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = TINY_ARCHS["exprgan"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_paper_architecture_at_128():
    m = build_model("exprgan", size=128, num_affects=6)  # Oulu-CASIA's six classes
    enc = [c for c in m.generator.encoder if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in enc] == [64, 128, 256, 512, 1024]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in enc)
    assert m.generator.encoder[-2].out_features == 50 and isinstance(m.generator.encoder[-1], nn.Tanh)
    dec = [c for c in m.generator.modules() if isinstance(c, nn.Conv2d) and c not in enc]
    assert [c.out_channels for c in dec] == [512, 256, 128, 64, 32, 16, 3]  # the paper's 7 decoder blocks
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in dec)
    ups = [u for u in m.generator.decoder.modules() if isinstance(u, nn.Upsample)]
    assert len(ups) == 5 and all(u.mode == "nearest" for u in ups)  # 4 -> 128
    assert not any(isinstance(b, nn.BatchNorm2d) for b in m.generator.modules())  # BN only in the Ds
    assert m.arch.code_width == 30  # c: d = 5 per class
    d = m.discriminator
    assert [b[0].out_channels for b in d.blocks] == [16, 32, 64, 128] and d.fc[0].out_features == 1024
    assert len(d.q) == 6 and [d.q[0][0].out_features, d.q[0][2].out_features] == [64, 5]
    dz = [lin.out_features for lin in m.latent_discriminator.modules() if isinstance(lin, nn.Linear)]
    assert dz == [64, 32, 16, 1]
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    c = expression_code(one_hot(torch.tensor([0, 5]), 6), torch.rand(2, 5) * 2 - 1)
    with torch.no_grad():
        x_hat, g = m.generator(x, c)
        logit, q = d(x_hat, one_hot(torch.tensor([0, 5]), 6))
    assert x_hat.shape == x.shape and g.shape == (2, 50) and logit.shape == (2,) and q.shape == (2, 30)
    assert m.latent_discriminator(g).shape == (2,)


def test_code_has_the_papers_sign_pattern():
    torch.manual_seed(0)
    k, d = 7, 5
    labels = torch.arange(k).repeat(30)
    z = torch.rand(len(labels), d) * 2 - 1
    c = expression_code(one_hot(labels, k), z).view(-1, k, d)
    assert c.shape == (len(labels), k, d)
    rows = torch.arange(len(labels))
    present = c[rows, labels]
    assert torch.equal(present, z.abs()) and (present >= 0).all()  # c_y = |z_y|, within [0, 1]
    mask = torch.ones(len(labels), k, dtype=torch.bool)
    mask[rows, labels] = False
    absent = c[mask].view(len(labels), k - 1, d)
    assert (absent <= 0).all() and torch.equal(absent, -z.abs()[:, None, :].expand_as(absent))  # -|z_y|
    assert c.abs().max() <= 1


def test_edit_codes_follow_the_vectors_magnitude():
    joy = torch.zeros(1, 7)
    joy[0, 3] = 1.0
    full = intensity_code(joy, 5).view(7, 5)
    assert torch.equal(full[3], torch.ones(5)) and (full[[0, 1, 2, 4, 5, 6]] == -1).all()  # the paper's +1 / -1 edit
    faint = intensity_code(0.2 * joy, 5).view(7, 5)
    assert torch.allclose(faint, 0.2 * full)  # one shared magnitude, as F_ctrl draws in training
    mix = intensity_code(torch.tensor([[0.6, 0, 0, 0.3, 0, 0, 0]]), 5).view(7, 5)
    assert torch.allclose(mix[0], torch.full((5,), 0.6)) and torch.allclose(mix[3], torch.full((5,), 0.3))
    assert torch.allclose(mix[1], torch.full((5,), -0.6))
    m = build_model("exprgan", size=64, num_affects=7, **TINY).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        outs = [m.edit(x, one_hot(torch.tensor([4]), 7), a * joy) for a in (0.2, 0.6, 1.0)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])


def test_stage_boundaries():
    loss = build_model("exprgan", size=64, num_affects=3, **TINY).loss  # stages after 20% and 50%
    assert [stage_at(s, 10, loss) for s in range(1, 11)] == [1, 1, 2, 2, 2, 3, 3, 3, 3, 3]


def _context(model, step: int, total: int) -> StepContext:
    nets = model.networks()
    opts = model.optimizers(1e-3, (0.5, 0.999))
    return StepContext(step=step, total=total, nets=nets, plain=nets, eager=nets, optimizers=opts,
                       autocast=nullcontext, rng=torch.Generator().manual_seed(step), raw=nets)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_what_the_paper_says(stage):
    """Stage 1: G_dec, Q and D_img (g is noise); 2: G_enc, G_dec, Q (D_img's real/fake head idle); 3: all."""
    torch.manual_seed(0)
    model = build_model("exprgan", size=64, num_affects=3, loss={"lambda_id": 0}, **TINY)
    parts = {"encoder": model.generator.encoder, "decoder": model.generator.decoder,
             "real_fake": model.discriminator.real_fake, "q": model.discriminator.q,
             "latent_discriminator": model.latent_discriminator}
    before = {k: [p.detach().clone() for p in v.parameters()] for k, v in parts.items()}
    b = Batch(x=torch.rand(4, 3, 64, 64) * 2 - 1, affect=torch.tensor([0, 1, 2, 0]),
              identity=torch.tensor([0, 0, 1, 1]), target_affect=torch.tensor([1, 2, 0, 1]))
    out = model.train_step(b, _context(model, step={1: 1, 2: 4, 3: 9}[stage], total=10))
    changed = {k: any(not torch.equal(p, q) for p, q in zip(v.parameters(), before[k])) for k, v in parts.items()}
    expected = {1: {"encoder": False, "decoder": True, "real_fake": True, "q": True, "latent_discriminator": False},
                2: {"encoder": True, "decoder": True, "real_fake": False, "q": True, "latent_discriminator": False},
                3: dict.fromkeys(parts, True)}[stage]
    assert changed == expected
    keys = {1: {"g_q", "g_adv_img", "d_img", "d_q"}, 2: {"g_pixel", "g_id", "g_q", "d_q"},
            3: {"g_pixel", "g_id", "g_q", "g_adv_img", "g_adv_z", "g_tv", "d_img", "d_q", "d_z"}}[stage]
    assert keys <= set(out) and all(torch.isfinite(v) for v in out.values())
    assert ("g_pixel" in out) == (stage > 1) and ("d_z" in out) == (stage == 3)


def test_exact_resume_across_both_stage_boundaries(manifest, tmp_path):
    """Stopped at the last step of stage 1 and of stage 2, resumed each time = one unbroken run."""
    loss = {**TINY_LOSSES["exprgan"], "stage2_start": 0.25, "stage3_start": 0.5}  # boundaries after 2 and 4 of 8
    whole = tiny_config(manifest, tmp_path / "whole", "exprgan", steps=8, loss=dict(loss))
    train(whole, progress=False)
    part = tiny_config(manifest, tmp_path / "part", "exprgan", steps=8, loss=dict(loss))

    def stop_at(n: int):
        def hook(step, logged):
            if step == n:
                os.kill(os.getpid(), signal.SIGINT)
        return hook

    assert train(part, progress=False, on_step=stop_at(2)).step == 2
    assert train(part, resume=True, progress=False, on_step=stop_at(4)).step == 4
    assert train(part, resume=True, progress=False).step == 8
    a, b = _rows(tmp_path / "whole"), _rows(tmp_path / "part")
    assert [r["stage"] for r in b] == [1, 1, 2, 2, 3, 3, 3, 3]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in set(ra) - {"img_per_s", "data_frac"}:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["step"], key)
    ea, eb = load_editor(tmp_path / "whole"), load_editor(tmp_path / "part")
    for name, net in ea.gan.networks().items():
        for (k, p), q in zip(net.state_dict().items(), eb.gan.networks()[name].state_dict().values()):
            assert torch.allclose(p.float(), q.float(), atol=1e-6), (name, k)


def test_bf16_run_through_every_stage(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", "exprgan", steps=3, amp="bf16", channels_last="on",
                      loss={**TINY_LOSSES["exprgan"], "stage2_start": 1 / 3, "stage3_start": 2 / 3})
    result = train(cfg, progress=False)
    rows = _rows(tmp_path / "run")
    assert [r["stage"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(v) for r in rows for v in r.values())
    assert result.status == "done"


def test_identity_network_is_cached_by_its_data(manifest, tmp_path):
    """Trained on the train identities (and tells them apart), reused while the data is the same, retrained
    when it changes. It is fex's own network: evaluation measures identity with dlib's descriptor."""
    from fexdata.dataset import FaceDataset

    ds = FaceDataset(manifest, "train", 64, cache_dir=tmp_path / "cache", progress=False)
    _, labels = np.unique(ds.identity_ids, return_inverse=True)
    settings = IdentityNetSettings(width=8, steps=60, batch=12)
    net, cost = load_or_train_identity_net(tmp_path / "ids", ds.images, labels, settings)
    assert not cost.cached and not any(p.requires_grad for p in net.parameters()) and not net.training
    x = torch.from_numpy(np.array(ds.images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        accuracy = (net(x).argmax(1).numpy() == labels).mean()
        feats = net.features(x)
    assert accuracy > 0.9  # two identities, every affect: separable once trained
    assert cost.steps == 60 and cost.train_accuracy > 0.5 and cost.seconds > 0
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4]  # conv1_2 ... conv5_2 analogues
    again, cost = load_or_train_identity_net(tmp_path / "ids", ds.images, labels, settings)
    assert cost.cached and all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), again.state_dict().values()))
    flipped = np.ascontiguousarray(np.asarray(ds.images)[:, :, ::-1])
    _, cost = load_or_train_identity_net(tmp_path / "ids", flipped, labels, settings)
    assert not cost.cached and len(list((tmp_path / "ids").glob("identity-net-*.safetensors"))) == 2
    with pytest.raises(ValueError, match="at least two train identities"):
        load_or_train_identity_net(tmp_path / "ids", ds.images, np.zeros(len(labels), np.int64), settings)


def test_one_identity_manifest_needs_lambda_id_zero(tmp_path):
    from fexdata.errors import TrainingError

    one = write_tiny_manifest(tmp_path / "one", identities=1)
    with pytest.raises(TrainingError, match="lambda_id=0"):
        train(tiny_config(one, tmp_path / "run", "exprgan", steps=1), progress=False)
    cfg = tiny_config(one, tmp_path / "run2", "exprgan", steps=2, loss={**TINY_LOSSES["exprgan"], "lambda_id": 0})
    assert train(cfg, progress=False).step == 2


def test_identity_net_budget_is_a_share_of_the_runs_steps():
    assert identity_net_steps(2000, 6, 0.1) == 1  # a smoke run: one update, seconds
    assert identity_net_steps(2000, 8000, 0.1) == 800
    assert identity_net_steps(2000, 50_000, 0.1) == 2000  # the paper's run: the cap
    assert identity_net_steps(2000, None, 0.1) == 2000  # steps unknown: the cap
    from fexdata.errors import TrainingError

    with pytest.raises(TrainingError, match="id_net_share must be above 0"):  # a user's --set: error/hint
        build_model("exprgan", size=64, num_affects=3, loss={"id_net_share": 0}, **TINY)


def _prepare(manifest: Path, tmp_path: Path, seed: int, steps: int) -> tuple[nn.Module, dict]:
    """ExprGAN's `prepare` as a run of `steps` calls it, the identity network at its default settings."""
    from fexdata.dataset import FaceDataset

    torch.manual_seed(seed)  # another run seed: other G and D weights, the same identity network
    model = build_model("exprgan", size=64, num_affects=3, **TINY)
    ds = FaceDataset(manifest, "train", 64, cache_dir=tmp_path / "packed", progress=False)
    report = model.prepare(ds, cache_dir=tmp_path / "helpers", device=torch.device("cpu"), progress=False, steps=steps)
    return model._identity[0], report["identity_net"]


def test_a_short_run_trains_a_short_identity_net_and_the_next_run_reuses_it(manifest, tmp_path):
    """--steps 6 at the default settings (2,000 steps at most) trains the identity network for 1 step, not
    2,000, and says so; a second run (another seed) trains none and loads the very same weights."""
    net, first = _prepare(manifest, tmp_path, seed=0, steps=6)
    assert first["steps"] == 1 and not first["cached"] and first["retrained"] == "none cached"
    assert "identity net trained" in first["summary"] and "1 step," in first["summary"]
    again, second = _prepare(manifest, tmp_path, seed=1, steps=6)
    assert second["cached"] and second["steps"] == 1 and second["seconds"] == first["seconds"]
    assert "from the cache" in second["summary"]
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), again.state_dict().values()))
    assert len(list((tmp_path / "helpers").glob("identity-net-*.safetensors"))) == 1
    _, longer = _prepare(manifest, tmp_path, seed=0, steps=20)  # another budget: another network
    assert longer["steps"] == 2 and not longer["cached"]


def test_a_six_step_run_trains_its_identity_net_for_one_step_and_logs_the_cost(manifest, tmp_path):
    lines: list[str] = []
    loss = {**TINY_LOSSES["exprgan"], "id_net": {"width": 4, "steps": 50, "batch": 8}}
    cfg = tiny_config(manifest, tmp_path / "run", "exprgan", steps=6, loss=loss)
    assert train(cfg, progress=False, log=lines.append).step == 6
    meta = json.loads(next(Path(cfg.cache_dir).glob("identity-net-*.json")).read_text())
    assert meta["training"]["steps"] == 1  # 10% of --steps 6, not the 50 its settings allow
    assert any(line.startswith("identity net trained") for line in lines)
