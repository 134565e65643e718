"""FExGAN / FExGAN-Meta: a conditional VAE-style generator and an AC-GAN discriminator, and how they train.

Faithful to the papers (Siddiqui 2022, arXiv:2201.09061 and FExGAN-Meta) and the reference
TensorFlow code's layer list, at 128x128:

* Encoder: the source affect (one-hot, K wide) goes through Dense(S*S) + ReLU and becomes a 4th
  input plane; then 7 stride-2 4x4 convs with 128, 256, 512, 512, 512, 512, 128 channels down to
  1x1 (BatchNorm on all but the first, LeakyReLU on all but the last), flattened into mu and
  log-variance heads of `latent_dim` (128) each.
* Decoder: z -> Dense 256 + ReLU; target affect -> Dense 64 -> Dense 256 + ReLU; both concatenated
  as a 512-channel 1x1 map, then 6 transposed convs (512 x3 with dropout 0.5, 512, 256, 128;
  BatchNorm + ReLU) and a final transposed conv to 3 channels with tanh.
* Discriminator: stride-2 4x4 convs with 64, 128, 512 channels (BatchNorm on all but the first,
  LeakyReLU), flattened into a real/fake logit and K affect logits. Heads return logits: the
  sigmoid/softmax live in the losses (BCE-with-logits is safe under bf16 autocast).
* Initialisation as the reference: conv, transposed-conv and dense layers given the reference's
  N(0, 0.02) initialiser get it; the dense layers built with Keras defaults (the label's Dense(64),
  the mu head, both discriminator heads) get Keras' Glorot-uniform; biases start at zero and the
  log-variance head at exactly zero (sigma = 1).
* BatchNorm as Keras builds it: moving averages with momentum 0.99 (torch momentum 0.01), eps 1e-3.
  The discriminator's running statistics are updated by its D-step forwards (one real and one fake
  batch per step, each normalised with its own batch statistics as in the reference), not by its
  forward in the generator step (`StepContext.frozen`), so in eval mode it normalises with an even
  mixture of real and fake statistics rather than two-thirds fake ones.
* Under bf16 autocast the mu and log-variance heads, the noise and z stay float32.

Other sizes follow the same rule: one down/up block per halving, so 256 adds one block and 64 drops
one (the size CPU tests use). The width of a block at resolution r is
`min(max_width, base_width * (size/2) / r)`, which reproduces the reference list at 128.

The encoder's second head is read as a log-variance, so z = mu + exp(logvar / 2) * eps and the KL
term of eq. 3 (-1/2 sum(1 + logvar - mu^2 - exp(logvar))) is the exact KL to N(0, I).

Training (paired: the loop serves, per source, a random real image of the same identity showing the
target affect), one D then one G update per step, equations 1-7 of the paper on logits:

    L_GAN^G  = phi_b(1, y_hat) + phi_m(A_t, y_hat_m)                       (1)  on D(G(I_s, A_t))
    L_rec    = |G(I_s, A_t) - I_t|                                          (2)  I_t: same identity, target affect
    L_KL     = -1/2 sum_i (1 + logvar_i - mu_i^2 - exp(logvar_i))           (3)
    L_gen    = alpha * L_GAN^G + beta * L_KL + gamma * L_rec                (4)
    L_real   = phi_b(1, y) + phi_m(A_s, y_m)                                (5)  on D(I_s)
    L_fake   = phi_b(0, y_hat) + phi_m(A_t, y_hat_m)                        (6)  on D(G(I_s, A_t))
    L_GAN^D  = L_real + L_fake                                              (7)

A_t is the target's one-hot scaled by the target image's known intensity, or by a sampled lambda
where the manifest has none (`sample_target_affects`, `FExGANLoss.target_law`).
phi_b is binary and phi_m multi-class cross-entropy, both on logits in float32. phi_m's target is
the affect's class index (the arg-max of A_t): a scaled one-hot such as 1.2 * joy still means "joy".
Reductions (the paper writes sums and gives no weights): L_rec is the mean absolute error per pixel
and channel (images in [-1, 1]); L_KL is summed over latent dimensions and averaged over the batch;
cross-entropies are batch means. The weights (FExGANLoss) are ours. The paper lowers "the weight of
the binary adversarial" term after half of training: `binary_weight_late` multiplies phi_b(1, .) in
eq. 1 from `decay_step` on (eq. 5-7 are unchanged). The order (D, then G against the updated D with a
fresh D forward) is the usual PyTorch GAN loop; the reference code updated both from one forward,
which changes nothing in the losses themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from fextrain.losses import accuracy, bce_with_logits, cross_entropy, kl_divergence, l1
from fextrain.models.registry import register
from fextrain.models.base import (Batch, GANModel, Optim, Preset, StepContext, affect_vector, one_hot,  # noqa: F401
                                  require_sizes)
from fextrain.models.blocks import down_block, init_weights, up_block
SIZES = (64, 128, 256)


@dataclass(frozen=True)
class FExGANConfig:
    """Architecture settings; the defaults are the reference model at 128x128."""

    size: int = 128
    num_affects: int = 7
    base_width: int = 128  # channels of the first encoder block / last decoder block
    max_width: int = 512  # cap on block widths
    bottleneck: int = 128  # channels of the last (1x1) encoder block
    latent_dim: int = 128
    dropout: float = 0.5  # on the first `dropout_blocks` decoder blocks
    dropout_blocks: int = 3
    d_widths: tuple[int, ...] = (64, 128, 512)

    def __post_init__(self) -> None:
        if self.size not in SIZES and (self.size < 16 or self.size & (self.size - 1)):
            raise ValueError(f"size must be a power of two >= 16 (64, 128 or 256 are tested); got {self.size}")
        if self.num_affects < 2:
            raise ValueError(f"num_affects must be at least 2; got {self.num_affects}")
        object.__setattr__(self, "d_widths", tuple(int(w) for w in self.d_widths))
        require_sizes(self, "base_width", "max_width", "bottleneck", "latent_dim", "d_widths")

    @property
    def num_blocks(self) -> int:
        """Stride-2 blocks from `size` down to 1x1 (7 at 128)."""
        return int(math.log2(self.size))

    def width_at(self, resolution: int) -> int:
        return min(self.max_width, self.base_width * (self.size // 2) // resolution)


def keras_dense_default(layer: nn.Linear) -> None:
    """Keras' Dense defaults (Glorot uniform, zero bias), for the reference's layers built without an initialiser."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


class Generator(nn.Module):
    """Encoder (image + source affect -> mu, logvar) and decoder (z + target affect -> image)."""

    def __init__(self, cfg: FExGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        size, k = cfg.size, cfg.num_affects
        self.affect_plane = nn.Sequential(nn.Linear(k, size * size), nn.ReLU())
        blocks, cin, res = [], 4, size
        for i in range(cfg.num_blocks):
            res //= 2
            last = i == cfg.num_blocks - 1
            cout = cfg.bottleneck if last else cfg.width_at(res)
            blocks.append(down_block(cin, cout, norm=i > 0, act=not last))
            cin = cout
        self.encoder = nn.Sequential(*blocks)
        self.mu = nn.Linear(cfg.bottleneck, cfg.latent_dim)
        self.logvar = nn.Linear(cfg.bottleneck, cfg.latent_dim)

        self.z_in = nn.Sequential(nn.Linear(cfg.latent_dim, 256), nn.ReLU())
        self.affect_in = nn.Sequential(nn.Linear(k, 64), nn.Linear(64, 256), nn.ReLU())
        ups, cin, res = [], 512, 1
        for i in range(cfg.num_blocks - 1):
            res *= 2
            cout = cfg.width_at(res)
            ups.append(up_block(cin, cout, cfg.dropout if i < cfg.dropout_blocks else 0.0))
            cin = cout
        self.decoder = nn.Sequential(*ups)
        self.to_image = nn.Sequential(nn.ConvTranspose2d(cin, 3, 4, stride=2, padding=1), nn.Tanh())

        init_weights(self)
        keras_dense_default(self.affect_in[0])
        keras_dense_default(self.mu)
        # Reference: the log-sigma head starts at exactly zero, so early latents have unit variance.
        nn.init.zeros_(self.logvar.weight)

    def encode(self, x: torch.Tensor, src_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image [B,3,S,S] in [-1,1] and source affect vector [B,K] -> (mu, logvar), each [B, latent]."""
        plane = self.affect_plane(src_vec.to(x.dtype)).view(-1, 1, self.cfg.size, self.cfg.size)
        if x.is_contiguous(memory_format=torch.channels_last):
            plane = plane.contiguous(memory_format=torch.channels_last)
        h = self.encoder(torch.cat([x, plane.to(x.dtype)], dim=1)).flatten(1)
        # The heads in float32 even under autocast: bf16 would round mu and turn exp(logvar / 2) coarse.
        with torch.autocast(h.device.type, enabled=False):
            h = h.float()
            return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor, tgt_vec: torch.Tensor) -> torch.Tensor:
        """Latent [B, latent] and target affect vector [B,K] (may be mixed or scaled) -> image in [-1,1]."""
        h = torch.cat([self.z_in(z), self.affect_in(tgt_vec.to(z.dtype))], dim=1)
        return self.to_image(self.decoder(h[:, :, None, None]))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(
        self, x: torch.Tensor, src_vec: torch.Tensor, tgt_vec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample z from the posterior in training, use its mean in eval mode; returns (x_gen, mu, logvar)."""
        mu, logvar = self.encode(x, src_vec)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z, tgt_vec), mu, logvar


class Discriminator(nn.Module):
    """AC-GAN discriminator: image -> (real/fake logit [B], affect logits [B, K])."""

    def __init__(self, cfg: FExGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks, cin = [], 3
        for i, cout in enumerate(cfg.d_widths):
            blocks.append(down_block(cin, cout, norm=i > 0, act=True))
            cin = cout
        self.features = nn.Sequential(*blocks)
        flat = cin * (cfg.size // 2 ** len(cfg.d_widths)) ** 2
        self.real_fake = nn.Linear(flat, 1)
        self.affect = nn.Linear(flat, cfg.num_affects)
        init_weights(self)
        keras_dense_default(self.real_fake)
        keras_dense_default(self.affect)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        return self.real_fake(h).squeeze(1), self.affect(h)


# --- affect vectors -------------------------------------------------------------------------------


TARGET_LAWS = ("data", "scaled", "noisy", "onehot")


def sample_target_affects(
    index: torch.Tensor, num_affects: int, law: str = "scaled", sigma: float = 0.25,
    generator: torch.Generator | None = None, intensity: torch.Tensor | None = None, floor: float = 0.1,
) -> torch.Tensor:
    """Target conditions A_t(lambda) for a batch of target affect indices.

    The papers say only that the target affect is "sampled from the normal distribution" so that a
    vector can express variation within an affect. Our reading (law="scaled"): the one-hot of the
    target scaled by an intensity 1 + sigma * lambda, lambda ~ N(0, 1) per sample, clipped to [0, 2]
    -- the target class stays the arg-max, and at inference a smaller or larger weight (0.5 * joy) or
    a mix (anger + sadness) stays close to what the decoder saw. But lambda is drawn independently of
    the target image I_t that eq. 2 asks the edit to match, so no image tells the decoder what the scale means.
    law="data" (FExGANLoss' default) therefore ties the scale to the data: where the target image's
    `intensity` is known (the manifest's column, e.g. from `fex build-manifest --ramp`), A_t is the
    one-hot times that intensity, at least `floor` (an all-zero vector would be the same for every
    affect while eq. 1 still asks D's class head for the target) and at most 2; rows with NaN (or no
    `intensity` at all) fall back to "scaled".
    law="noisy" instead adds sigma * lambda_k to every component (one-hot + N(0, sigma^2 I));
    law="onehot" is the sparse vector without sampling.
    """
    base = one_hot(index, num_affects)
    if law == "onehot":
        return base
    if law in ("scaled", "data"):
        lam = torch.randn(base.shape[0], 1, device=base.device, generator=generator)
        scale = (1.0 + sigma * lam).clamp(0.0, 2.0)
        if law == "data" and intensity is not None:
            known = intensity.to(base.device, torch.float32)[:, None]
            scale = torch.where(torch.isfinite(known), known.nan_to_num(1.0).clamp(floor, 2.0), scale)
        return base * scale
    if law == "noisy":
        return base + sigma * torch.randn(base.shape, device=base.device, generator=generator)
    raise ValueError(f"unknown target affect law {law!r}; choose one of {', '.join(TARGET_LAWS)}")


# --- the objective (eq. 1-7) ---------------------------------------------------------------------------


@dataclass
class FExGANLoss:
    """Weights of eq. 4, the binary adversarial schedule and the target-affect law. The paper gives no numbers; ours."""

    alpha: float = 1.0  # adversarial terms of eq. 1 (binary + affect class)
    beta: float = 0.01  # KL of eq. 3 (summed over the latent): a regulariser that keeps random decodes usable
    gamma: float = 100.0  # L1 of eq. 2 (per-pixel mean); 100 as in pix2pix, whose layers the reference reuses
    binary_weight_late: float = 0.1  # factor on phi_b(1, .) in eq. 1 after decay_step
    decay_step: int | None = None  # None: half of the run's total steps
    # How A_t is drawn (sample_target_affects): data (the target image's manifest intensity, else scaled) |
    # scaled | noisy | onehot. "scaled" alone is the papers' sampled lambda, unrelated to the target image.
    target_law: str = "data"
    target_sigma: float = 0.25  # spread of lambda's effect (scaled, noisy, and data's fallback)
    target_floor: float = 0.1  # law "data": smallest weight a known intensity gives the target affect

    def __post_init__(self) -> None:
        if self.target_law not in TARGET_LAWS:
            raise ValueError(f"loss.target_law must be one of {', '.join(TARGET_LAWS)}; got {self.target_law!r}")
        if not 0 <= self.target_floor <= 1:
            raise ValueError(f"loss.target_floor must be between 0 and 1; got {self.target_floor}")


def binary_weight(step: int, cfg: FExGANLoss, total_steps: int) -> float:
    """Weight of the binary adversarial term at `step` (1-based): 1, then binary_weight_late."""
    decay = cfg.decay_step if cfg.decay_step is not None else total_steps // 2
    return 1.0 if step <= decay else cfg.binary_weight_late


def generator_loss(
    fake_logit: torch.Tensor, fake_affect_logits: torch.Tensor, tgt_affect: torch.Tensor,
    mu: torch.Tensor, logvar: torch.Tensor, generated: torch.Tensor, target_image: torch.Tensor,
    cfg: FExGANLoss, binary_w: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4 with eq. 1-3. Returns (total, terms); terms are detached, unweighted values."""
    adv_bin = bce_with_logits(fake_logit, 1.0)
    adv_cls = cross_entropy(fake_affect_logits, tgt_affect)
    kl = kl_divergence(mu, logvar)
    rec = l1(generated, target_image)
    total = cfg.alpha * (binary_w * adv_bin + adv_cls) + cfg.beta * kl + cfg.gamma * rec
    terms = {"g_adv_bin": adv_bin, "g_adv_cls": adv_cls, "g_kl": kl, "g_l1": rec, "g_total": total}
    return total, {k: v.detach() for k, v in terms.items()}


def discriminator_loss(
    real_logit: torch.Tensor, real_affect_logits: torch.Tensor, src_affect: torch.Tensor,
    fake_logit: torch.Tensor, fake_affect_logits: torch.Tensor, tgt_affect: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7 = eq. 5 (real: BCE 1 + CE source affect) + eq. 6 (fake: BCE 0 + CE target affect)."""
    real_bin = bce_with_logits(real_logit, 1.0)
    real_cls = cross_entropy(real_affect_logits, src_affect)
    fake_bin = bce_with_logits(fake_logit, 0.0)
    fake_cls = cross_entropy(fake_affect_logits, tgt_affect)
    total = real_bin + real_cls + fake_bin + fake_cls
    terms = {"d_real_bin": real_bin, "d_real_cls": real_cls, "d_fake_bin": fake_bin, "d_fake_cls": fake_cls,
             "d_total": total}
    return total, {k: v.detach() for k, v in terms.items()}


def discriminator_accuracies(
    real_logit: torch.Tensor, real_affect_logits: torch.Tensor, src_affect: torch.Tensor,
    fake_logit: torch.Tensor, fake_affect_logits: torch.Tensor, tgt_affect: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The four accuracies of the paper's Table 1: binary and affect, on real and on fake images."""
    with torch.no_grad():
        return {
            "acc_real_bin": (real_logit > 0).float().mean(),
            "acc_real_cls": accuracy(real_affect_logits, src_affect),
            "acc_fake_bin": (fake_logit < 0).float().mean(),
            "acc_fake_cls": accuracy(fake_affect_logits, tgt_affect),
        }


# --- the model, as the training loop and evaluation see it ---------------------------------------------


@register("fexgan")
class FExGAN(GANModel):
    """FExGAN-Meta: encoder-decoder generator conditioned on source and target affects; AC-GAN D."""

    summary = "FExGAN-Meta (Siddiqui 2022): cVAE-style generator + AC-GAN discriminator; paired, eq. 1-7"
    Arch = FExGANConfig
    Loss = FExGANLoss
    defaults = Optim(steps=100_000, batch=32, lr=2e-4, betas=(0.5, 0.999))  # the paper; betas from pix2pix
    presets = {"cpu-64": Preset(  # fex train --preset cpu-64 (and auto on a CPU); docs/train.md, Presets
        size=64, steps=3000, batch=16,
        arch={"base_width": 32, "max_width": 128, "bottleneck": 64, "latent_dim": 64, "d_widths": [32, 64, 128]},
        note="11 CPU-min; demo frame split: expression 0.92 but sharpness 0.28 (the paper's blur, "
             "kept faithful) and identity 0.89: misses both")}
    paired = True  # eq. 2 compares the edit with a real image of the same identity and the target affect
    metrics = ("g_total", "g_adv_bin", "g_adv_cls", "g_kl", "g_l1",
               "d_total", "d_real_bin", "d_real_cls", "d_fake_bin", "d_fake_cls",
               "acc_real_bin", "acc_real_cls", "acc_fake_bin", "acc_fake_cls")
    progress = ("g_l1", "d_total")
    reconstruction = "g_l1"

    def __init__(self, arch: FExGANConfig, loss: FExGANLoss) -> None:
        super().__init__(arch, loss)
        self.generator = Generator(arch)
        self.discriminator = Discriminator(arch)

    def scheduled(self, step: int, total: int) -> dict[str, float]:
        return {"binary_weight": binary_weight(step, self.loss, total)}

    def train_step(self, b: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, k = self.loss, self.arch.num_affects
        # 1. conditions: A_s = one-hot of the source affect; A_t = the target's one-hot scaled by I_t's own
        #    intensity where the manifest knows it (so the scale means what eq. 2's image shows), else lambda
        a_src = one_hot(b.affect, k)
        a_tgt = sample_target_affects(b.target_affect, k, cfg.target_law, cfg.target_sigma, ctx.rng,
                                      intensity=b.target_intensity, floor=cfg.target_floor)
        G, D = ctx.train("generator"), ctx.train("discriminator")

        # 2. D: eq. 5 on the source (real, A_s) + eq. 6 on the detached G(source, A_s, A_t) (fake, A_t)
        with ctx.autocast():
            x_gen, mu, logvar = G(b.x, a_src, a_tgt)
            real_logit, real_cls = D(b.x)
            fake_logit, fake_cls = D(x_gen.detach())
            d_loss, d_terms = discriminator_loss(real_logit, real_cls, b.affect, fake_logit, fake_cls, b.target_affect)
        acc = discriminator_accuracies(real_logit, real_cls, b.affect, fake_logit, fake_cls, b.target_affect)
        ctx.update("discriminator", d_loss)

        # 3. G: eq. 4 against the updated D (D's weights take no gradient here)
        with ctx.frozen("discriminator") as D_frozen:
            with ctx.autocast():
                g_fake_logit, g_fake_cls = D_frozen(x_gen)
                w = binary_weight(ctx.step, cfg, ctx.total)
                g_loss, g_terms = generator_loss(g_fake_logit, g_fake_cls, b.target_affect, mu, logvar, x_gen,
                                                 b.target, cfg, w)
            ctx.update("generator", g_loss)
        return {**g_terms, **d_terms, **acc}

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        """Encode to the posterior mean with the source vector, decode with the target vector."""
        mu, _ = self.generator.encode(x, source_vec)
        return self.generator.decode(mu, target_vec)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[1]

    def real_fake(self, x: torch.Tensor) -> torch.Tensor:
        """D's binary head: a logit per image, > 0 meaning "real" (eq. 5-6 train it with BCE)."""
        return self.discriminator(x)[0]
