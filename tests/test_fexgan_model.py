"""FExGAN networks, affect vectors, the losses of eq. 1-7 and batch augmentation (CPU, no training)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fexdata.errors import FexError
from fextrain.augment import AugmentConfig, augment_pairs, random_affines, to_uint8, to_unit_range
from fextrain.losses import kl_divergence
from fextrain.models import MODELS, UnknownModel, build_model
from fextrain.models.fexgan import (FExGANConfig, FExGANLoss as LossConfig, affect_vector, binary_weight,
                                    discriminator_loss, generator_loss, one_hot, sample_target_affects)


def _nets(**kw):
    m = build_model("fexgan", **kw)
    return m.generator, m.discriminator

TINY = dict(base_width=8, max_width=16, bottleneck=8, latent_dim=8, d_widths=(4, 8, 16))


def test_reference_architecture_at_128():
    g, d = _nets(size=128, num_affects=7)
    enc = [block[0].out_channels for block in g.encoder]
    assert enc == [128, 256, 512, 512, 512, 512, 128]  # 7 stride-2 convs down to 1x1
    assert [block[0].out_channels for block in g.decoder] == [512, 512, 512, 512, 256, 128]
    assert [any(isinstance(m, torch.nn.Dropout) for m in b) for b in g.decoder] == [True] * 3 + [False] * 3
    assert g.affect_plane[0].out_features == 128 * 128  # the affect as a 4th input plane
    assert g.encoder[0][0].in_channels == 4 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.encoder[0])
    assert g.mu.out_features == g.logvar.out_features == 128
    assert [b[0].out_channels for b in d.features] == [64, 128, 512]
    assert torch.count_nonzero(g.logvar.weight) == 0  # sigma starts at 1 as in the reference
    std = g.encoder[2][0].weight.std().item()
    assert 0.015 < std < 0.025  # N(0, 0.02) init


@pytest.mark.parametrize("size,blocks", [(64, 6), (128, 7), (256, 8)])
def test_one_block_per_halving(size, blocks):
    cfg = FExGANConfig(size=size, num_affects=5, **TINY)
    assert cfg.num_blocks == blocks
    g, d = _nets(size=size, num_affects=5, **TINY)
    assert len(g.encoder) == blocks and len(g.decoder) == blocks - 1


def test_api_shapes_and_affect_count_from_config():
    g, d = _nets(size=64, num_affects=5, **TINY)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    src, tgt = one_hot(torch.tensor([0, 1, 4]), 5), one_hot(torch.tensor([2, 2, 3]), 5)
    mu, logvar = g.encode(x, src)
    assert mu.shape == logvar.shape == (3, 8)
    out = g.decode(mu, tgt)
    assert out.shape == (3, 3, 64, 64)
    assert not torch.allclose(g.decode(mu, one_hot(torch.tensor([0, 0, 0]), 5)), out)  # the target reaches it
    x_gen, mu2, _ = g(x, src, tgt)
    assert x_gen.shape == x.shape
    logit, cls = d(x_gen)
    assert logit.shape == (3,) and cls.shape == (3, 5)
    g.eval()  # eval mode decodes the posterior mean: deterministic
    assert torch.equal(g(x, src, tgt)[0], g(x, src, tgt)[0])
    assert set(MODELS) >= {"fexgan"}
    with pytest.raises(UnknownModel, match="unknown model 'nope'; known: .*fexgan"):
        build_model("nope", size=64, num_affects=5)


def test_affect_vector_mixes_and_scales():
    affects = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    assert affect_vector("joy", affects).tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert affect_vector("anger+sadness", affects).tolist() == [1, 0, 0, 0, 0, 1, 0]
    assert affect_vector("0.6*happy + 0.3*surprised", affects).tolist() == pytest.approx([0, 0, 0, .6, 0, 0, .3])
    with pytest.raises(FexError, match="not one of"):
        affect_vector("contempt", affects)
    with pytest.raises(FexError, match="cannot read"):
        affect_vector("2*", affects)


def test_target_affect_laws_keep_the_target_class():
    idx = torch.tensor([0, 3, 6] * 100)
    gen = torch.Generator().manual_seed(0)
    scaled = sample_target_affects(idx, 7, "scaled", 0.25, gen)
    assert torch.equal(scaled.argmax(1), idx)
    off_target = scaled.clone()
    off_target[torch.arange(len(idx)), idx] = 0
    assert off_target.abs().max() == 0 and scaled.max() <= 2 and scaled.min() >= 0
    assert 0.15 < scaled.max(1).values.std() < 0.35  # lambda ~ N(0,1) spreads the intensity
    noisy = sample_target_affects(idx, 7, "noisy", 0.1, gen)
    assert (noisy - one_hot(idx, 7)).std() == pytest.approx(0.1, rel=0.2)
    assert torch.equal(sample_target_affects(idx, 7, "onehot"), one_hot(idx, 7))
    with pytest.raises(ValueError):
        sample_target_affects(idx, 7, "uniform")


def test_losses_follow_equations():
    torch.manual_seed(0)
    b, k = 6, 7
    fake_logit, fake_cls = torch.randn(b), torch.randn(b, k)
    real_logit, real_cls = torch.randn(b), torch.randn(b, k)
    src, tgt = torch.randint(0, k, (b,)), torch.randint(0, k, (b,))
    mu, logvar = torch.randn(b, 4), torch.randn(b, 4)
    gen, target = torch.rand(b, 3, 8, 8), torch.rand(b, 3, 8, 8)
    cfg = LossConfig(alpha=2.0, beta=0.5, gamma=3.0)
    total, terms = generator_loss(fake_logit, fake_cls, tgt, mu, logvar, gen, target, cfg, binary_w=0.25)
    bce1 = -F.logsigmoid(fake_logit).mean()
    ce_t = F.cross_entropy(fake_cls, tgt)
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
    l1 = (gen - target).abs().mean()
    assert total.item() == pytest.approx((2.0 * (0.25 * bce1 + ce_t) + 0.5 * kl + 3.0 * l1).item(), rel=1e-5)
    assert terms["g_kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    d_total, d_terms = discriminator_loss(real_logit, real_cls, src, fake_logit, fake_cls, tgt)
    expected = (-F.logsigmoid(real_logit).mean() + F.cross_entropy(real_cls, src)
                - F.logsigmoid(-fake_logit).mean() + F.cross_entropy(fake_cls, tgt))
    assert d_total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5)).item() == 0.0
    # logits, not probabilities: huge logits stay finite even in bf16
    big = torch.full((4,), 1e4, dtype=torch.bfloat16)
    _, t = discriminator_loss(big, torch.randn(4, k), src[:4], -big, torch.randn(4, k), tgt[:4])
    assert all(math.isfinite(v.item()) for v in t.values())


def test_binary_weight_schedule():
    cfg = LossConfig(binary_weight_late=0.1)
    assert binary_weight(50, cfg, 100) == 1.0 and binary_weight(51, cfg, 100) == 0.1  # default: half the run
    cfg.decay_step = 10
    assert binary_weight(10, cfg, 100) == 1.0 and binary_weight(11, cfg, 100) == 0.1


def test_augmentation_is_shared_per_pair_and_identity_when_off():
    torch.manual_seed(0)
    pix = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    x = to_unit_range(pix)
    assert x.shape == (4, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert (to_uint8(x) == pix.numpy()).all()
    same_src, same_tgt = augment_pairs(x, x.clone(), AugmentConfig(jitter=0.0, flip=False))
    assert torch.equal(same_src, x)
    gen = torch.Generator().manual_seed(1)
    a, b = augment_pairs(x, x.clone(), AugmentConfig(jitter=0.2, flip=True), gen)
    assert torch.allclose(a, b)  # source and target of a pair get the same transform
    assert not torch.allclose(a, x)
    # a pure flip mirrors the image exactly
    theta = random_affines(64, AugmentConfig(jitter=0.0, flip=True), "cpu", torch.Generator().manual_seed(2))
    assert set(theta[:, 0, 0].tolist()) == {-1.0, 1.0} and theta[:, :, 2].abs().max() == 0
    grid = F.affine_grid(theta[:1].clone().fill_(0) + torch.tensor([[[-1.0, 0, 0], [0, 1, 0]]]), [1, 3, 16, 16],
                         align_corners=False)
    assert torch.allclose(F.grid_sample(x[:1], grid, align_corners=False), x[:1].flip(-1), atol=1e-5)


def test_keras_initialisers_and_batch_norm_settings():
    """Dense layers the reference builds with Keras defaults are Glorot-uniform; BatchNorm as Keras'."""
    torch.manual_seed(0)
    g, d = _nets(size=64, num_affects=7, **TINY)
    for layer in (g.affect_in[0], g.mu, d.real_fake, d.affect):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        w = layer.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound and torch.count_nonzero(layer.bias) == 0
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)  # uniform(-b, b), not N(0, 0.02)
    assert 0.015 < g.affect_in[1].weight.std().item() < 0.025 and 0.015 < g.z_in[0].weight.std().item() < 0.025
    norms = [m for m in list(g.modules()) + list(d.modules()) if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.01 and m.eps == 1e-3 for m in norms)


def test_latent_heads_stay_float32_under_bf16_autocast():
    g, _ = _nets(size=64, num_affects=5, **TINY)
    x, a = torch.rand(2, 3, 64, 64) * 2 - 1, one_hot(torch.tensor([0, 1]), 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, logvar = g.encode(x, a)
        z = g.reparameterize(mu, logvar)
    assert mu.dtype == logvar.dtype == z.dtype == torch.float32


def test_a_frozen_discriminator_keeps_its_running_statistics():
    """The G step's D forward normalises with batch statistics but must not move the running ones."""
    from contextlib import nullcontext

    from fextrain.models.base import StepContext

    _, d = _nets(size=64, num_affects=5, **TINY)
    nets = {"discriminator": d}
    ctx = StepContext(step=1, total=1, nets=nets, plain=nets, eager=nets, raw=nets, optimizers={},
                      autocast=nullcontext, rng=torch.Generator())
    before = {k: v.clone() for k, v in d.state_dict().items()}
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with ctx.frozen("discriminator") as frozen:
        logit = frozen(x)[0]
        assert not any(p.requires_grad for p in d.parameters())
    d.eval()
    assert not torch.allclose(logit, d(x)[0])  # it normalised with the batch's statistics, not the running ones
    d.train()
    # nothing moved: running statistics and num_batches_tracked alike
    assert [k for k, v in d.state_dict().items() if not torch.equal(before[k], v)] == []
    assert all(p.requires_grad for p in d.parameters())
    d(x)  # an ordinary training forward does move them, by Keras' 1%
    assert not torch.equal(before["features.1.1.running_mean"], d.state_dict()["features.1.1.running_mean"])
    assert [m.momentum for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)][0] == 0.01
