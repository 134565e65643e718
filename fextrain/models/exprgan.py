"""ExprGAN (Ding, Sricharan & Chellappa, AAAI 2018): expression editing with a dial for intensity.

The paper's model (its Fig. 1c and "Implementation Details"), at 128x128:

* Expression controller F_ctrl: the one-hot label y [K] and z_y ~ U(-1, 1)^d (d = 5) give the code
  c = [c_1 .. c_K] in R^{K d}, c_i = |z_y| * (2 y_i - 1): positive for the present class, negative for
  the others, the same magnitudes |z_y| in every block (eq. 3).
* Encoder G_enc: 5x5 stride-2 convs with 64, 128, 256, 512, 1024 channels (ReLU), one FC layer to the
  50-d identity code g(x); tanh keeps g in (-1, 1), the support of the uniform prior D_z imposes.
* Decoder G_dec: FC from (g, c) to a 4x4x1024 map, then 7 blocks of nearest-neighbour up-sampling +
  3x3 stride-1 conv with 512, 256, 128, 64, 32, 16, 3 channels (ReLU, tanh at the end). Five blocks
  up-sample (4 -> 128); the last two (16 and 3 channels) keep the size, as in CAAE, which ExprGAN builds on.
  c also enters every block as constant planes (the authors' public code does so).
* D_img and Q share a trunk: 4 stride-2 5x5 convs with 16, 32, 64, 128 channels and one FC layer to a
  1024-d representation (BatchNorm, LeakyReLU 0.2). D_img's head gives one real/fake logit; Q has K
  branches of two FC layers (64, d) that predict c_i, the mean of a factored Gaussian with unit variance.
* D_z: FC 64, 32, 16, 1 (BatchNorm, LeakyReLU) on g, against z ~ U(-1, 1)^50.

Losses (eq. 5-10), all in float32: L_pixel = L1(x_hat, x) (per-pixel mean); L_id = sum_l beta_l
L1(phi_l(x_hat), phi_l(x)) on the five stages of fex's own identity network (`fextrain.identity_net`;
the paper's VGG-Face cannot be fetched here; dlib's descriptor stays the evaluation's); L_Q = -log
Q(c | x_hat, y) = 1/2 ||Q(x_hat, y) - c||^2 (summed over the code, batch mean); the adversarial terms
are binary cross-entropies on logits; L_tv the mean absolute difference of neighbouring pixels. x_hat
reconstructs x from its own label's code (the paper trains by reconstruction, without pairs).

The three incremental stages, as functions of the step (so a resume crosses them exactly):

1. controller learning (steps up to `stage2_start` of the run): G_dec, Q and D_img learn from L_Q and
   L_adv^img, with g(x) replaced by noise U(-1, 1)^50 (the encoder is idle);
2. image reconstruction (up to `stage3_start`): G_enc and G_dec from L_pixel + lambda1 L_id +
   `stage2_q` L_Q; Q keeps learning at that decreased weight;
3. image refining (the rest): everything, eq. 10 with the paper's lambda1..5 = 1, 1, 0.01, 0.01, 0.001.

The paper gives no stage lengths, no stage-1/2 weights, no beta_l and no iteration count: ours are
`ExprGANLoss`'s defaults and are documented in docs/models.md.

Inference: `edit(x, source, target)` encodes g(x) (the encoder is label-free, so `source` is unused)
and decodes with the code of the target vector v: block i is +v_i where v_i > 0 and -max(v) elsewhere,
the same law as training (one shared magnitude), so `0.2*joy` is a faint and `joy` a full smile.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fextrain.identity_net import (IdentityNet, IdentityNetSettings, feature_distance, identity_net_steps,
                                  load_or_train_identity_net)
from fextrain.losses import bce_with_logits, l1
from fextrain.models.registry import register
from fextrain.models.base import Batch, GANModel, Optim, Preset, StepContext, one_hot, require_sizes
from fextrain.models.blocks import total_variation
from fextrain.runtime import TrainingError

LEAKY_SLOPE = 0.2  # DCGAN's, which CAAE and ExprGAN use in their discriminators


@dataclass(frozen=True)
class ExprGANConfig:
    """Architecture; the defaults are the paper's at 128x128. Other sizes keep the 4x4 bottleneck map:
    one encoder (and one up-sampling decoder) block per halving, widths doubling from `enc_base`."""

    size: int = 128
    num_affects: int = 7
    code_dim: int = 5  # d: intensity dimensions per class
    id_dim: int = 50  # g(x)
    enc_base: int = 64  # channels of the first encoder block, doubled per block
    enc_max: int = 1024
    dec_base: int = 32  # channels of the last up-sampling decoder block, doubled towards the 4x4 map
    d_widths: tuple[int, ...] = (16, 32, 64, 128)  # shared D_img/Q trunk
    d_fc: int = 1024  # the trunk's FC representation
    q_hidden: int = 64  # each Q_i: FC q_hidden, FC d
    dz_widths: tuple[int, ...] = (64, 32, 16)  # D_z's hidden FC layers (then 1)

    def __post_init__(self) -> None:
        if self.size < 32 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 32 (64, 128 and 256 are tested); got {self.size}")
        if self.num_affects < 2:
            raise ValueError(f"num_affects must be at least 2; got {self.num_affects}")
        object.__setattr__(self, "d_widths", tuple(int(w) for w in self.d_widths))
        object.__setattr__(self, "dz_widths", tuple(int(w) for w in self.dz_widths))
        require_sizes(self, "code_dim", "id_dim", "enc_base", "enc_max", "dec_base", "d_widths", "d_fc", "q_hidden",
                      "dz_widths")

    @property
    def enc_widths(self) -> list[int]:
        """Encoder channels per stride-2 block down to 4x4 (64 ... 1024 at 128)."""
        return [min(self.enc_max, self.enc_base * 2 ** i) for i in range(int(math.log2(self.size)) - 2)]

    @property
    def dec_widths(self) -> list[int]:
        """Decoder channels: the up-sampling blocks (512 ... 32 at 128), then one stride-1 block (16)."""
        n = len(self.enc_widths)
        ups = [min(self.enc_max // 2, self.dec_base * 2 ** (n - 1 - i)) for i in range(n)]
        return ups + [max(1, self.dec_base // 2)]

    @property
    def code_width(self) -> int:
        return self.num_affects * self.code_dim


def init_weights(module: nn.Module, *outputs: nn.Module) -> None:
    """He-normal weights for layers that feed a (leaky) ReLU, Glorot-normal for `outputs` (the layers
    that feed a tanh or give logits), zero biases. The paper gives no initialiser; the authors' code
    scales normal weights by each layer's fan too. G has no normalisation layers, so a fixed N(0, 0.02)
    lets the signal vanish in narrow networks (measured: a flat reconstruction loss at test widths)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if any(m is o for o in outputs):
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --- the expression code -----------------------------------------------------------------------------


def expression_code(y: torch.Tensor, z_y: torch.Tensor) -> torch.Tensor:
    """F_ctrl (eq. 3): one-hot y [B, K] and z_y [B, d] -> c [B, K*d], c_i = |z_y| * (2 y_i - 1)."""
    return (z_y.abs()[:, None, :] * (2 * y - 1)[:, :, None]).flatten(1)


def intensity_code(vec: torch.Tensor, code_dim: int) -> torch.Tensor:
    """The code of an inference vector v [B, K] (one-hot, scaled or mixed) -> c [B, K*d].

    Block i is v_i (every dimension) where v_i > 0 and -max(v) elsewhere: one magnitude across blocks,
    as F_ctrl gives in training, so the vector's magnitude is the expression's intensity (0.2*joy faint,
    joy full); the paper's edits (+1 / -1) are the one-hot case.
    """
    vec = vec.float()
    top = vec.clamp(min=0).amax(dim=1, keepdim=True)
    blocks = torch.where(vec > 0, vec, -top)
    return blocks[:, :, None].expand(-1, -1, code_dim).flatten(1)


def uniform(shape: tuple[int, ...], device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """U(-1, 1) draws from the model's random stream."""
    return torch.rand(shape, device=device, generator=generator) * 2 - 1


# --- networks ------------------------------------------------------------------------------------------


def with_planes(h: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """Concatenate a per-sample vector [B, n] to a map [B, C, H, W] as n constant planes."""
    return torch.cat([h, vec.to(h.dtype)[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])], dim=1)


class Generator(nn.Module):
    """G = (G_enc, G_dec). `forward(x, c)` reconstructs from g(x); `forward(None, c, g)` decodes a given g.

    The code c enters the FC layer and, tiled as planes, every decoder block (as in the authors' code),
    so the expression stays in reach of every layer."""

    def __init__(self, cfg: ExprGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks, cin = [], 3
        for w in cfg.enc_widths:
            blocks += [nn.Conv2d(cin, w, 5, 2, 2), nn.ReLU()]
            cin = w
        self.encoder = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(cin * 16, cfg.id_dim), nn.Tanh())
        top, code = cfg.enc_widths[-1], cfg.code_width
        self.project = nn.Sequential(nn.Linear(cfg.id_dim + code, top * 16), nn.ReLU())
        ups, cin = [], top
        widths = cfg.dec_widths
        for i, w in enumerate(widths):
            up = [nn.Upsample(scale_factor=2, mode="nearest")] if i < len(widths) - 1 else []
            ups.append(nn.Sequential(*up, nn.Conv2d(cin + code, w, 3, 1, 1), nn.ReLU()))
            cin = w
        self.decoder = nn.ModuleList(ups)
        self.to_image = nn.Sequential(nn.Conv2d(cin + code, 3, 3, 1, 1), nn.Tanh())
        init_weights(self, self.encoder[-2], self.to_image[0])
        nn.init.normal_(self.to_image[0].weight, 0.0, 0.02)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, g: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([g, c.to(g.dtype)], dim=1)).view(len(g), -1, 4, 4)
        for block in self.decoder:
            h = block(with_planes(h, c))
        return self.to_image(with_planes(h, c))

    def forward(self, x: torch.Tensor | None, c: torch.Tensor,
                g: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, g): g = G_enc(x) unless given (stage 1 feeds noise and no image)."""
        if g is None:
            g = self.encode(x)
        return self.decode(g, c), g


class ImageDiscriminator(nn.Module):
    """D_img and Q on one trunk, conditioned on the label y (tiled as K planes onto the image and every
    block's output, as the authors' code does). forward(x, y) -> (real/fake logit [B], Q's mean of c [B, K*d])."""

    def __init__(self, cfg: ExprGANConfig) -> None:
        super().__init__()
        k = cfg.num_affects
        blocks, cin = [], 3
        for i, cout in enumerate(cfg.d_widths):
            norm = [nn.BatchNorm2d(cout)] if i else []  # none on the first block, as DCGAN discriminators
            blocks.append(nn.Sequential(nn.Conv2d(cin + k, cout, 5, 2, 2), *norm, nn.LeakyReLU(LEAKY_SLOPE)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        side = cfg.size // 2 ** len(cfg.d_widths)
        self.fc = nn.Sequential(nn.Linear((cin + k) * side * side, cfg.d_fc), nn.BatchNorm1d(cfg.d_fc),
                                nn.LeakyReLU(LEAKY_SLOPE))
        self.real_fake = nn.Linear(cfg.d_fc, 1)
        # Q's branches end in tanh: c lies in [-1, 1]
        self.q = nn.ModuleList(nn.Sequential(nn.Linear(cfg.d_fc, cfg.q_hidden), nn.LeakyReLU(LEAKY_SLOPE),
                                             nn.Linear(cfg.q_hidden, cfg.code_dim), nn.Tanh()) for _ in range(k))
        init_weights(self, self.real_fake, *(q[-2] for q in self.q))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for block in self.blocks:
            h = block(with_planes(h, y))
        h = self.fc(with_planes(h, y).flatten(1))
        return self.real_fake(h).squeeze(1), torch.cat([q(h) for q in self.q], dim=1)


class LatentDiscriminator(nn.Module):
    """D_z: g or a uniform draw -> real/fake logit [B]."""

    def __init__(self, cfg: ExprGANConfig) -> None:
        super().__init__()
        layers, cin = [], cfg.id_dim
        for w in cfg.dz_widths:
            layers += [nn.Linear(cin, w), nn.BatchNorm1d(w), nn.LeakyReLU(LEAKY_SLOPE)]
            cin = w
        self.net = nn.Sequential(*layers, nn.Linear(cin, 1))
        init_weights(self, self.net[-1])

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.net(g).squeeze(1)


# --- the objective -------------------------------------------------------------------------------------


@dataclass
class ExprGANLoss:
    """Eq. 10's weights (the paper's, for stage 3), the stage schedule and the identity network (ours)."""

    lambda_id: float = 1.0  # lambda1, L_id
    lambda_q: float = 1.0  # lambda2, L_Q
    lambda_adv_img: float = 0.01  # lambda3, L_adv^img
    lambda_adv_z: float = 0.01  # lambda4, L_adv^z
    lambda_tv: float = 0.001  # lambda5, L_tv
    stage2_start: float = 0.2  # fraction of the run's steps after which stage 2 (reconstruction) begins
    stage3_start: float = 0.5  # ... and stage 3 (refining)
    stage1_adv: float = 1.0  # weight of L_adv^img beside L_Q in stage 1 (the paper gives none)
    stage2_q: float = 0.1  # L_Q's "decreased weight" in stage 2 (the paper gives no number)
    # beta_l of the five identity-net stages (eq. 7); 0.01, as 0.2 stalled the reconstruction (docs/models.md, ExprGAN)
    id_betas: tuple[float, ...] = (0.01, 0.01, 0.01, 0.01, 0.01)
    id_net: IdentityNetSettings = field(default_factory=IdentityNetSettings)  # its `steps` is the most it trains
    id_net_share: float = 0.1  # the identity network trains for this share of the run's steps (up to id_net.steps)

    def __post_init__(self) -> None:
        if not 0 <= self.stage2_start <= self.stage3_start <= 1:
            raise ValueError("need 0 <= stage2_start <= stage3_start <= 1 (fractions of the run's steps)")
        self.id_betas = tuple(float(b) for b in self.id_betas)
        if len(self.id_betas) != 5:
            raise ValueError(f"id_betas needs one weight per identity-network stage (5); got {len(self.id_betas)}")
        if isinstance(self.id_net, dict):
            self.id_net = IdentityNetSettings(**self.id_net)
        if not self.id_net_share > 0:
            raise ValueError(f"id_net_share must be above 0 (a share of the run's steps); got {self.id_net_share}")


def stage_at(step: int, total: int, cfg: ExprGANLoss) -> int:
    """The incremental-training stage (1, 2 or 3) of 1-based `step` in a run of `total` steps."""
    if step <= round(cfg.stage2_start * total):
        return 1
    return 2 if step <= round(cfg.stage3_start * total) else 3


def q_loss(q_mean: torch.Tensor, c: torch.Tensor, code_dim: int) -> torch.Tensor:
    """-log Q(c | x_hat, y) of a factored Gaussian of fixed variance, up to a constant and scale (eq. 5):
    the squared error averaged over each class's d dimensions and the batch, summed over classes (the
    scale of the authors' code, which lambda2 = 1 was set for)."""
    return (q_mean.float() - c.float()).pow(2).sum(dim=1).mean() / code_dim


# --- the model -------------------------------------------------------------------------------------------


@register("exprgan")
class ExprGAN(GANModel):
    """ExprGAN: encoder-decoder with an expression controller (code c), Q regulariser, D_img and D_z."""

    summary = "ExprGAN (Ding 2018): expression code with intensity, identity loss, 3 incremental stages; unpaired"
    Arch = ExprGANConfig
    Loss = ExprGANLoss
    # The paper's Adam settings and batch; it gives no iteration count (ours).
    defaults = Optim(steps=50_000, batch=48, lr=2e-4, betas=(0.5, 0.999))
    presets = {"cpu-64": Preset(  # fex train --preset cpu-64 (and auto on a CPU); docs/train.md, Presets
        size=64, steps=6000, batch=16,
        arch={"enc_base": 16, "enc_max": 256, "dec_base": 16, "d_widths": [8, 16, 32, 64], "d_fc": 256, "id_dim": 128},
        loss={"id_net": {"width": 16}, "stage2_start": 0.05, "stage3_start": 0.2, "lambda_adv_img": 0.05},
        note="49 CPU-min; demo frame split: expression 0.87, sharpness 0.40, faces found 37%: "
             "misses sharpness and identity (docs/models.md, Presets)")}
    paired = False  # it learns by reconstructing x from its own label's code
    metrics = ("g_total", "g_pixel", "g_id", "g_q", "g_adv_img", "g_adv_z", "g_tv",
               "d_img", "d_q", "d_z", "acc_real", "acc_fake")
    progress = ("g_pixel", "g_q")
    reconstruction = "g_pixel"
    # Stage 1 leaves the encoder idle; stage 2 trains Q's head without D_img's.
    sometimes_unused = frozenset({"generator", "discriminator"})

    def __init__(self, arch: ExprGANConfig, loss: ExprGANLoss) -> None:
        super().__init__(arch, loss)
        self.generator = Generator(arch)
        self.discriminator = ImageDiscriminator(arch)
        self.latent_discriminator = LatentDiscriminator(arch)
        self._identity: tuple[IdentityNet, ...] = ()  # fixed loss network (a tuple: not a submodule, not saved)

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator,
                "latent_discriminator": self.latent_discriminator}

    def prepare(self, data: Any, *, cache_dir: Path, device: torch.device, progress: bool,
                steps: int | None = None) -> dict[str, dict[str, Any]]:
        """Train (or load from the cache) the identity network L_id uses, on the train identities, for
        `loss.id_net_share` of the run's `steps` (at most `loss.id_net.steps`; all of those when `steps` is
        not given). Returns {"identity_net": what it cost, with a one-line "summary"} for the run's log."""
        if self.loss.lambda_id == 0:
            return {}
        _, labels = np.unique(np.asarray(data.identity_ids), return_inverse=True)
        if labels.max(initial=0) < 1:
            raise TrainingError("ExprGAN's identity loss needs at least two train identities to learn a face "
                                "network from; this manifest has one. Set --set loss.lambda_id=0 to train without it")
        cap = self.loss.id_net.steps
        settings = replace(self.loss.id_net, steps=identity_net_steps(cap, steps, self.loss.id_net_share))
        net, cost = load_or_train_identity_net(cache_dir, data.images, labels, settings, device, progress)
        self._identity = (net,)
        return {"identity_net": {**asdict(cost), "summary": cost.summary()}}

    def scheduled(self, step: int, total: int) -> dict[str, float]:
        return {"stage": float(stage_at(step, total, self.loss))}

    def _identity_loss(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self._identity or self.loss.lambda_id == 0:
            return x.new_zeros((), dtype=torch.float32)
        return feature_distance(self._identity[0], x_hat, x, self.loss.id_betas)

    def train_step(self, b: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, a = self.loss, self.arch
        stage = stage_at(ctx.step, ctx.total, cfg)
        n, dev = len(b.x), b.x.device
        y = one_hot(b.affect, a.num_affects)
        c = expression_code(y, uniform((n, a.code_dim), dev, ctx.rng))
        G, D = ctx.train("generator"), ctx.train("discriminator")
        w_q = cfg.stage2_q if stage == 2 else cfg.lambda_q
        out: dict[str, torch.Tensor] = {}

        # 1. D_img and Q (one trunk): Q fits c on the detached x_hat; outside stage 2 D_img also tells
        # the real x (with its label) from x_hat (eq. 9)
        with ctx.autocast():
            if stage == 1:  # the controller learns to draw from noise: g(x) is replaced by U(-1, 1)
                x_hat, g = G(None, c, uniform((n, a.id_dim), dev, ctx.rng))
            else:
                x_hat, g = G(b.x, c)
            fake_logit, q_fake = D(x_hat.detach(), y)
            out["d_q"] = q_loss(q_fake, c, a.code_dim)
            d_loss = w_q * out["d_q"]
            if stage != 2:
                real_logit, _ = D(b.x, y)
                out["d_img"] = bce_with_logits(real_logit, 1.0) + bce_with_logits(fake_logit, 0.0)
                out["acc_real"], out["acc_fake"] = (real_logit > 0).float().mean(), (fake_logit < 0).float().mean()
                d_loss = d_loss + out["d_img"]
        ctx.update("discriminator", d_loss)

        # 2. D_z (stage 3): uniform draws are real, g(x) fake (eq. 8)
        if stage == 3:
            with ctx.autocast():
                Dz = ctx.train("latent_discriminator")
                out["d_z"] = (bce_with_logits(Dz(uniform((n, a.id_dim), dev, ctx.rng)), 1.0)
                              + bce_with_logits(Dz(g.detach()), 0.0))
            ctx.update("latent_discriminator", out["d_z"])

        # 3. G (and the controller): the stage's terms against the updated, frozen discriminators
        with ctx.frozen("discriminator") as D_frozen, ctx.frozen("latent_discriminator") as Dz_frozen:
            with ctx.autocast():
                fake_logit, q = D_frozen(x_hat, y)
                terms = {"g_q": q_loss(q, c, a.code_dim)}
                weights = {"g_q": w_q}
                if stage != 2:
                    terms["g_adv_img"] = bce_with_logits(fake_logit, 1.0)
                    weights["g_adv_img"] = cfg.stage1_adv if stage == 1 else cfg.lambda_adv_img
                if stage >= 2:
                    terms["g_pixel"], terms["g_id"] = l1(x_hat, b.x), self._identity_loss(x_hat, b.x)
                    weights["g_pixel"], weights["g_id"] = 1.0, cfg.lambda_id
                if stage == 3:
                    terms["g_adv_z"], terms["g_tv"] = bce_with_logits(Dz_frozen(g), 1.0), total_variation(x_hat.float())
                    weights["g_adv_z"], weights["g_tv"] = cfg.lambda_adv_z, cfg.lambda_tv
                g_loss = sum(weights[k] * v for k, v in terms.items())
            ctx.update("generator", g_loss)
        return {k: v.detach() for k, v in {**out, **terms, "g_total": g_loss}.items()}

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor,
             identity: torch.Tensor | None = None) -> torch.Tensor:
        """g(x) with the code of `target_vec` (its magnitude is the intensity); `source_vec` is unused."""
        g = self.generator.encode(x)
        return self.generator.decode(g, intensity_code(target_vec, self.arch.code_dim).to(g.dtype))
