"""StarGAN (Choi et al., CVPR 2018) for expressions, faithful to the official PyTorch code (yunjey/stargan).

Networks:

* Generator: the target affect vector is tiled into K extra input planes; a 7x7 conv, two stride-2
  4x4 down-sampling convs (64 -> 128 -> 256 channels), six residual blocks at 1/4 resolution, two
  stride-2 4x4 transposed convs back up, and a 7x7 conv to 3 channels with tanh. InstanceNorm
  (affine, no running statistics) and ReLU after every conv but the last. Convs carry no bias (the
  norm's shift replaces it). The official code builds InstanceNorm with `track_running_stats=True`
  but never switches to eval mode, so it always normalises with instance statistics; keeping no
  running statistics gives that behaviour in eval mode too.
* Discriminator (PatchGAN): six stride-2 4x4 convs (64, 128, ..., 2048 channels) with LeakyReLU
  0.01, then a 3x3 conv to one real/fake score per patch and a conv of the remaining map's size to K
  affect logits (kernel size/64: 1 at 64 px, 2 at 128, 4 at 256).

Objective (WGAN-GP + auxiliary classifier + cycle reconstruction):

    L_D = -E[D_src(x)] + E[D_src(G(x, c))] + lambda_cls * CE(D_cls(x), c_x) + lambda_gp * GP
    L_G = -E[D_src(G(x, c))] + lambda_cls * CE(D_cls(G(x, c)), c) + lambda_rec * |x - G(G(x, c), c_x)|_1

lambda_cls 1 (the discriminator's classification term is on real images only), lambda_rec 10,
lambda_gp 10; GP is WGAN-GP's penalty on random interpolates between real and fake images, computed
in float32 outside autocast (`fextrain.losses.gradient_penalty`). One D update per iteration and one
G update every `n_critic` (5) iterations, on the same batch. Adam 1e-4, betas (0.5, 0.999), batch 16,
200K iterations with the learning rate decayed linearly to zero over the second half (the paper's
schedule; the official code subtracts lr/num_iters_decay every 1000 iterations, which in practice
leaves the rate nearly unchanged, so we follow the paper here).

Data is unpaired: a target is only an affect id (the loop draws it with the manifest's balance
weights), so datasets with one image per identity train as well. At inference any vector works:
a mixed or scaled target (0.5*joy, anger+sadness) is tiled like a one-hot.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fextrain.losses import accuracy, cross_entropy, l1
from fextrain.models.registry import register
from fextrain.models.base import Batch, GANModel, Optim, Preset, StepContext, one_hot, require_sizes


@dataclass(frozen=True)
class StarGANConfig:
    """Architecture; the defaults are the official code's (g_conv_dim, d_conv_dim 64, 6 repeats each)."""

    size: int = 128
    num_affects: int = 7
    g_conv_dim: int = 64  # channels after the first conv; doubled by each down-sampling
    g_repeat: int = 6  # residual blocks
    d_conv_dim: int = 64  # channels of the first D conv; doubled by each next one
    d_repeat: int = 6  # stride-2 D convs

    def __post_init__(self) -> None:
        if self.size % 2 ** self.d_repeat or self.size < 2 ** self.d_repeat:
            raise ValueError(f"size must be a multiple of 2^d_repeat = {2 ** self.d_repeat} (64, 128 or 256 are "
                             f"tested); got {self.size}")
        if self.num_affects < 2:
            raise ValueError(f"num_affects must be at least 2; got {self.num_affects}")
        require_sizes(self, "g_conv_dim", "d_conv_dim")


@dataclass
class StarGANLoss:
    """Loss weights and schedule of the official code."""

    lambda_cls: float = 1.0  # domain classification (D on real images; G on its edits)
    lambda_rec: float = 10.0  # cycle reconstruction L1
    lambda_gp: float = 10.0  # WGAN-GP gradient penalty
    n_critic: int = 5  # D updates per G update
    lr_decay_steps: int | None = None  # iterations of linear decay to 0 at the end; None: half of the run

    def __post_init__(self) -> None:
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be at least 1; got {self.n_critic}")


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False), _norm(dim), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False), _norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class Generator(nn.Module):
    """(image [B,3,S,S], target vector [B,K]) -> image [B,3,S,S] in [-1, 1]."""

    def __init__(self, cfg: StarGANConfig) -> None:
        super().__init__()
        dim = cfg.g_conv_dim
        layers: list[nn.Module] = [nn.Conv2d(3 + cfg.num_affects, dim, 7, padding=3, bias=False), _norm(dim),
                                   nn.ReLU(inplace=True)]
        for _ in range(2):  # down-sampling
            layers += [nn.Conv2d(dim, dim * 2, 4, stride=2, padding=1, bias=False), _norm(dim * 2), nn.ReLU(inplace=True)]
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(cfg.g_repeat)]  # bottleneck
        for _ in range(2):  # up-sampling
            layers += [nn.ConvTranspose2d(dim, dim // 2, 4, stride=2, padding=1, bias=False), _norm(dim // 2),
                       nn.ReLU(inplace=True)]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, padding=3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        planes = c.to(x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return self.main(torch.cat([x, planes], dim=1))


class Discriminator(nn.Module):
    """PatchGAN critic: image -> (real/fake scores [B,1,S/64,S/64], affect logits [B,K])."""

    def __init__(self, cfg: StarGANConfig) -> None:
        super().__init__()
        dim = cfg.d_conv_dim
        layers: list[nn.Module] = [nn.Conv2d(3, dim, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
        for _ in range(1, cfg.d_repeat):
            layers += [nn.Conv2d(dim, dim * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            dim *= 2
        self.main = nn.Sequential(*layers)
        self.src = nn.Conv2d(dim, 1, 3, padding=1, bias=False)
        self.cls = nn.Conv2d(dim, cfg.num_affects, cfg.size // 2 ** cfg.d_repeat, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.src(h), self.cls(h).flatten(1)


@register("stargan")
class StarGAN(GANModel):
    """StarGAN: one generator for every target affect, WGAN-GP PatchGAN critic with a classifier head."""

    summary = "StarGAN (Choi 2018, official code): label-tiled ResNet generator, WGAN-GP PatchGAN; unpaired, cycle L1"
    Arch = StarGANConfig
    Loss = StarGANLoss
    defaults = Optim(steps=200_000, batch=16, lr=1e-4, betas=(0.5, 0.999))
    presets = {"cpu-64": Preset(  # fex train --preset cpu-64 (and auto on a CPU); docs/train.md, Presets
        size=64, steps=1400, batch=16, lr=2e-4,
        # D at the official width: at d_conv_dim 32 its affect classifier stayed at chance (docs/models.md, Presets)
        arch={"g_conv_dim": 16, "g_repeat": 4, "d_conv_dim": 64, "d_repeat": 5}, loss={"n_critic": 1},
        note="68 CPU-min under load; demo frame split: expression 0.89 but sharpness 0.34 and faces "
             "found 85%: misses sharpness and identity")}
    paired = False
    metrics = ("g_total", "g_fake", "g_cls", "g_rec", "d_total", "d_real", "d_fake", "d_cls", "d_gp",
               "acc_real_cls", "acc_fake_cls")
    progress = ("g_rec", "d_total")
    reconstruction = "g_rec"

    def __init__(self, arch: StarGANConfig, loss: StarGANLoss) -> None:
        super().__init__(arch, loss)
        self.generator = Generator(arch)
        self.discriminator = Discriminator(arch)

    def lr_factor(self, done: int, total: int) -> float:
        decay = self.loss.lr_decay_steps if self.loss.lr_decay_steps is not None else total // 2
        start = total - decay
        return 1.0 if decay <= 0 or done < start else max(0.0, (total - done) / decay)

    def train_step(self, b: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, k = self.loss, self.arch.num_affects
        # 1. labels: the source's own affect c_x and a random target affect c (drawn by the loop)
        c_org, c_trg = one_hot(b.affect, k), one_hot(b.target_affect, k)
        G, D = ctx.train("generator"), ctx.train("discriminator")

        # 2. D: Wasserstein critic on real vs. fake, affect classification on real only, gradient penalty
        with ctx.no_grad("generator") as G_fixed, ctx.autocast():
            x_fake = G_fixed(b.x, c_trg)
        with ctx.autocast():
            real_src, real_cls = D(b.x)
            fake_src, _ = D(x_fake)
        d_real, d_fake = -real_src.float().mean(), fake_src.float().mean()
        d_cls = cross_entropy(real_cls, b.affect)
        d_gp = ctx.gradient_penalty("discriminator", b.x, x_fake, output=0)
        d_loss = d_real + d_fake + cfg.lambda_cls * d_cls + cfg.lambda_gp * d_gp
        ctx.update("discriminator", d_loss)
        out = {"d_total": d_loss, "d_real": d_real, "d_fake": d_fake, "d_cls": d_cls, "d_gp": d_gp,
               "acc_real_cls": accuracy(real_cls, b.affect)}

        # 3. G, every n_critic-th iteration: fool the critic as the target affect, and come back (cycle)
        if ctx.step % cfg.n_critic == 0:
            with ctx.frozen("discriminator") as D_frozen:
                with ctx.autocast():
                    x_fake = G(b.x, c_trg)
                    fake_src, fake_cls = D_frozen(x_fake)
                    x_rec = G(x_fake, c_org)  # second G forward, through the wrapped module too
                g_fake = -fake_src.float().mean()
                g_cls = cross_entropy(fake_cls, b.target_affect)
                g_rec = l1(b.x, x_rec)
                g_loss = g_fake + cfg.lambda_cls * g_cls + cfg.lambda_rec * g_rec
                ctx.update("generator", g_loss)
            out.update({"g_total": g_loss, "g_fake": g_fake, "g_cls": g_cls, "g_rec": g_rec,
                        "acc_fake_cls": accuracy(fake_cls, b.target_affect)})
        return {key: value.detach() for key, value in out.items()}

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        """G(x, target); the source vector is not needed (the generator sees the source image)."""
        return self.generator(x, target_vec)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[1]

    # No `real_fake`: a WGAN critic's score is unbounded and shifts freely during training (only differences
    # between real and fake scores enter the loss), so "score > 0" does not mean "real".
