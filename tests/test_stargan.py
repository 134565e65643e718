"""StarGAN as the official code builds and trains it: layers, the gradient penalty, the schedule, unpaired data.

Under DDP (the penalty's double backward, the cycle's second G forward): test_models.test_every_model_under_torchrun.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _train_fixtures import tiny_config, write_tiny_manifest

from fextrain.batches import UnpairedSampler
from fextrain.losses import gradient_penalty
from fextrain.models import build_model
from fextrain.train import train


def test_official_architecture_at_128():
    m = build_model("stargan", size=128, num_affects=7)
    g, d = m.generator.main, m.discriminator
    convs = [layer for layer in g if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs[0].in_channels == 3 + 7 and convs[0].kernel_size == (7, 7)  # the label as 7 tiled planes
    assert [c.out_channels for c in convs] == [64, 128, 256, 128, 64, 3]
    assert sum(1 for layer in g if layer.__class__.__name__ == "ResidualBlock") == 6
    norms = [n for n in m.generator.modules() if isinstance(n, nn.InstanceNorm2d)]
    assert norms and all(n.affine and not n.track_running_stats for n in norms)
    assert isinstance(g[-1], nn.Tanh)
    d_convs = [c for c in d.main if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in d_convs] == [64, 128, 256, 512, 1024, 2048] and all(c.stride == (2, 2) for c in d_convs)
    assert all(a.negative_slope == 0.01 for a in d.main if isinstance(a, nn.LeakyReLU))
    assert d.src.kernel_size == (3, 3) and d.cls.kernel_size == (2, 2)  # 128 / 2^6 = 2
    # the official parameter counts (G 8.43M, D 44.8M at 128 px, c_dim 7)
    assert sum(p.numel() for p in m.generator.parameters()) == pytest.approx(8.43e6, rel=0.01)
    assert sum(p.numel() for p in d.parameters()) == pytest.approx(44.78e6, rel=0.01)


@pytest.mark.parametrize("autocast", [False, True])
def test_gradient_penalty_of_a_linear_critic(autocast):
    """A linear critic f(x) = <w, x> + b has gradient w everywhere: GP = (|w| - 1)^2, even under bf16."""
    torch.manual_seed(0)
    w = torch.randn(3 * 8 * 8) * 0.05

    def critic(x):
        return x.flatten(1) @ w.to(x.dtype) + 0.3

    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    assert gp.dtype == torch.float32
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    unit = w / w.norm()
    assert gradient_penalty(lambda x: x.flatten(1) @ unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_learning_rate_decays_linearly_over_the_second_half():
    m = build_model("stargan", size=64, num_affects=3)
    assert [m.lr_factor(s, 200_000) for s in (0, 99_999, 100_000, 150_000, 199_999)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 1e-5])


def test_unpaired_targets_follow_the_balance_weights():
    class DS:  # three affects, weights making them equally likely although affect 0 has 8 rows
        affect_ids = np.array([0] * 8 + [1, 1] + [2])
        weights = np.array([1 / 8] * 8 + [1 / 2] * 2 + [1.0])

    src, tgt_img, tgt = UnpairedSampler(DS(), seed=0).sample(30_000)
    assert tgt_img is None
    assert np.bincount(DS.affect_ids[src], minlength=3) / 30_000 == pytest.approx([1 / 3] * 3, abs=0.015)
    assert np.bincount(tgt, minlength=3) / 30_000 == pytest.approx([1 / 3] * 3, abs=0.015)


@pytest.mark.usefixtures("one_thread")
def test_one_image_per_identity_trains_and_g_updates_every_fifth_step(tmp_path):
    """Unpaired: no same-identity target is needed. D updates every step, G every n_critic = 5."""
    manifest = write_tiny_manifest(tmp_path / "data", identities=4, affects=("joy", "neutral"), per_cell=1)
    run = tmp_path / "run"
    result = train(tiny_config(manifest, run, "stargan", steps=5, log_every=1), progress=False)
    import json
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 5 and all("d_gp" in r for r in rows)
    assert ["g_rec" in r for r in rows] == [False, False, False, False, True]
    assert rows[-1]["lr_generator"] < rows[0]["lr_generator"] == pytest.approx(1e-4)
