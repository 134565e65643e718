"""Layers that more than one model builds from; a model's own layers stay in its file.

FExGAN's Keras-shaped blocks (its reference code is TensorFlow) build fexgan and fexgan-skip; the spectral-norm
discriminator and its hinge objective serve fexgan-skip and warp-refine; DE-GAN shares FExGAN's N(0, 0.02)
initialiser, and the total variation serves fexgan-skip, warp-refine and ExprGAN.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from fextrain.losses import cross_entropy

# Keras' LeakyReLU default slope, which FExGAN's reference code uses everywhere.
LEAKY_SLOPE = 0.3


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv, transposed-conv and dense weights, zero biases (FExGAN's reference and DE-GAN's paper)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    # Keras BatchNormalization defaults: moving = 0.99 * moving + 0.01 * batch, eps 1e-3.
    return nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)


def down_block(cin: int, cout: int, norm: bool, act: bool) -> nn.Sequential:
    """FExGAN's encoder block: 4x4 stride-2 conv, Keras BatchNorm (`norm`), LeakyReLU 0.3 (`act`)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)]
    if norm:
        layers.append(keras_batch_norm(cout))
    if act:
        layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


def up_block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    """FExGAN's decoder block: 4x4 stride-2 transposed conv, Keras BatchNorm, dropout (when > 0), ReLU."""
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                               keras_batch_norm(cout)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SpectralNormDiscriminator(nn.Module):
    """Spectral-normalised conv stack (no BatchNorm): image -> (real/fake score [B], affect logits [B,K]).

    `cfg` gives `size`, `num_affects` and `d_widths` (one 4x4 stride-2 conv each). Trained with a hinge loss.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        layers, cin = [], 3
        for cout in cfg.d_widths:
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(LEAKY_SLOPE)]
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = cin * (cfg.size // 2 ** len(cfg.d_widths)) ** 2
        self.real_fake = spectral_norm(nn.Linear(flat, 1))
        self.affect = nn.Linear(flat, cfg.num_affects)  # a classifier, not a critic: no Lipschitz bound needed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        return self.real_fake(h).squeeze(1), self.affect(h)


def hinge_losses(real: torch.Tensor, fake: torch.Tensor, real_cls: torch.Tensor, affect: torch.Tensor,
                 lambda_cls: float) -> dict[str, torch.Tensor]:
    """SpectralNormDiscriminator's objective in float32: hinge on real scores (above +1) and fake ones (below -1),
    and its affect head's cross-entropy on real faces only (StarGAN), so that "fake-looking" never means an affect.
    Returns {d_total, d_real, d_fake, d_cls}."""
    d_real, d_fake = torch.relu(1 - real.float()).mean(), torch.relu(1 + fake.float()).mean()
    d_cls = cross_entropy(real_cls, affect)
    return {"d_total": d_real + d_fake + lambda_cls * d_cls, "d_real": d_real, "d_fake": d_fake, "d_cls": d_cls}


def total_variation(m: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally neighbouring pixels, in m's dtype."""
    return (m[..., 1:, :] - m[..., :-1, :]).abs().mean() + (m[..., :, 1:] - m[..., :, :-1]).abs().mean()
