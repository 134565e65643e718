"""Loss pieces shared by several models. Each model's own objective lives in its file.

Every loss is computed in float32 from logits, whatever the autocast dtype of the forward: a
sigmoid or a softmax in bf16 saturates, and a gradient penalty's norm needs float32's range.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def bce_with_logits(logit: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of logits against a constant label (1 = real, 0 = fake), batch mean."""
    logit = logit.float()
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-class cross-entropy of logits [B, K] against class indices [B], batch mean."""
    return F.cross_entropy(logits.float(), labels.long())


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per pixel and channel."""
    return (a.float() - b.float()).abs().mean()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of rows whose arg-max is the label (no gradient)."""
    with torch.no_grad():
        return (logits.argmax(1) == labels).float().mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean of (||d critic(x_hat) / d x_hat||_2 - 1)^2.

    x_hat mixes each real image with its fake at a uniform random point (one alpha per sample). The
    critic runs here outside autocast, in float32: the penalty differentiates through its gradient,
    and bf16 would round the norm near 1 where the penalty lives. `critic` returns any shape per
    sample; its sum is differentiated, as the official StarGAN code does with its PatchGAN map.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    x_hat = (alpha * real.detach().float() + (1 - alpha) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        out = critic(x_hat).float()
    grad, = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1) ** 2).mean()
