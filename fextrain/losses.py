"""FExGAN losses, equations 1-7 of the paper, on logits.

    L_GAN^G  = phi_b(1, y_hat) + phi_m(A_t, y_hat_m)                       (1)  on D(G(I_s, A_t))
    L_rec    = |G(I_s, A_t) - I_t|                                          (2)  I_t: same identity, target affect
    L_KL     = -1/2 sum_i (1 + logvar_i - mu_i^2 - exp(logvar_i))           (3)
    L_gen    = alpha * L_GAN^G + beta * L_KL + gamma * L_rec                (4)
    L_real   = phi_b(1, y) + phi_m(A_s, y_m)                                (5)  on D(I_s)
    L_fake   = phi_b(0, y_hat) + phi_m(A_t, y_hat_m)                        (6)  on D(G(I_s, A_t))
    L_GAN^D  = L_real + L_fake                                              (7)

phi_b is binary cross-entropy and phi_m multi-class cross-entropy; both take logits here
(`binary_cross_entropy_with_logits`, `cross_entropy`), computed in float32, so bf16 autocast cannot
saturate a sigmoid. phi_m's target is the affect's class index (the arg-max of A_t): a scaled
one-hot such as 1.2 * joy still means "joy" to the classifier.

Reductions (the paper writes sums and gives no weights): L_rec is the mean absolute error per pixel
and channel (on images in [-1, 1]); L_KL is summed over latent dimensions and averaged over the
batch; cross-entropies are batch means. The defaults below are ours (see LossConfig).

The paper lowers "the weight of the binary adversarial" term after half of training, to stop a
too-strict discriminator from blocking reconstruction: `binary_weight_late` multiplies phi_b(1, .)
in eq. 1 from `decay_step` on (eq. 5-7 are unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossConfig:
    """Weights of eq. 4 and the schedule of the binary adversarial term. Paper gives no numbers; ours."""

    alpha: float = 1.0  # adversarial terms of eq. 1 (binary + affect class)
    beta: float = 0.01  # KL of eq. 3 (summed over the latent): a regulariser that keeps random decodes usable
    gamma: float = 100.0  # L1 of eq. 2 (per-pixel mean); 100 as in pix2pix, whose layers the reference reuses
    binary_weight_late: float = 0.1  # factor on phi_b(1, .) in eq. 1 after decay_step
    decay_step: int | None = None  # None: half of the run's total steps


def binary_weight(step: int, cfg: LossConfig, total_steps: int) -> float:
    """Weight of the binary adversarial term at `step` (1-based): 1, then binary_weight_late."""
    decay = cfg.decay_step if cfg.decay_step is not None else total_steps // 2
    return 1.0 if step <= decay else cfg.binary_weight_late


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Eq. 3: KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    mu, logvar = mu.float(), logvar.float()
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def _bce(logit: torch.Tensor, target: float) -> torch.Tensor:
    logit = logit.float()
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


def generator_loss(
    fake_logit: torch.Tensor, fake_affect_logits: torch.Tensor, tgt_affect: torch.Tensor,
    mu: torch.Tensor, logvar: torch.Tensor, generated: torch.Tensor, target_image: torch.Tensor,
    cfg: LossConfig, binary_w: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4 with eq. 1-3. Returns (total, terms); terms are detached, unweighted values."""
    adv_bin = _bce(fake_logit, 1.0)
    adv_cls = F.cross_entropy(fake_affect_logits.float(), tgt_affect.long())
    kl = kl_divergence(mu, logvar)
    l1 = (generated.float() - target_image.float()).abs().mean()
    total = cfg.alpha * (binary_w * adv_bin + adv_cls) + cfg.beta * kl + cfg.gamma * l1
    terms = {"g_adv_bin": adv_bin, "g_adv_cls": adv_cls, "g_kl": kl, "g_l1": l1, "g_total": total}
    return total, {k: v.detach() for k, v in terms.items()}


def discriminator_loss(
    real_logit: torch.Tensor, real_affect_logits: torch.Tensor, src_affect: torch.Tensor,
    fake_logit: torch.Tensor, fake_affect_logits: torch.Tensor, tgt_affect: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7 = eq. 5 (real: BCE 1 + CE source affect) + eq. 6 (fake: BCE 0 + CE target affect)."""
    real_bin = _bce(real_logit, 1.0)
    real_cls = F.cross_entropy(real_affect_logits.float(), src_affect.long())
    fake_bin = _bce(fake_logit, 0.0)
    fake_cls = F.cross_entropy(fake_affect_logits.float(), tgt_affect.long())
    total = real_bin + real_cls + fake_bin + fake_cls
    terms = {"d_real_bin": real_bin, "d_real_cls": real_cls, "d_fake_bin": fake_bin, "d_fake_cls": fake_cls, "d_total": total}
    return total, {k: v.detach() for k, v in terms.items()}


def discriminator_accuracies(
    real_logit: torch.Tensor, real_affect_logits: torch.Tensor, src_affect: torch.Tensor,
    fake_logit: torch.Tensor, fake_affect_logits: torch.Tensor, tgt_affect: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The four accuracies of the paper's Table 1: binary and affect, on real and on fake images."""
    with torch.no_grad():
        return {
            "acc_real_bin": (real_logit > 0).float().mean(),
            "acc_real_cls": (real_affect_logits.argmax(1) == src_affect).float().mean(),
            "acc_fake_bin": (fake_logit < 0).float().mean(),
            "acc_fake_cls": (fake_affect_logits.argmax(1) == tgt_affect).float().mean(),
        }
