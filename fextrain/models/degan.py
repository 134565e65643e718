"""DE-GAN (Ali & Hughes, ICIP 2019): an expression representation disentangled from identity, for recognition.

What the paper fixes, kept here:

* Generator G = (G_en, G_de): G_en maps a face x to the disentangled expression representation f(x)
  (length 350); G_de draws an image from [f(x), z, I], z a noise vector (illumination, pose, ...) and I
  a one-hot identity code, showing x's expression on identity I.
* Discriminator D = [D^e, D^i], a multi-task CNN: N_e + 1 expression outputs (the last one is "fake")
  and N_i identity outputs (the train identities). Eq. 1 (D): real x -> its expression y^e and its
  identity y^id; G(x, I, z) -> the fake class. Eq. 2 (G): G(x, I, z) -> expression y^e and identity I.
  Maximising log-likelihoods is minimising cross-entropies of logits, computed in float32.
* Adam, lr 1e-4, beta1 ("momentum") 0.5; every weight ~ N(0, 0.02). In later iterations G is updated
  more often than D: from `late_start` of the GAN stage, D takes one update every `d_every_late` steps.
* Second stage: G_en is frozen; a local CNN on each of four intermediate encoder layers (the
  "expression residue") is trained with its own classifier (L_1..L_4), and f(x) joined with the last
  FC layer of every local CNN feeds the final classifier (L_5); L = sum_i lambda_i L_i with lambda =
  0.7, 0.6, 0.4, 0.3, 1. Its final classifier is this model's `classify`.

What the paper leaves open, and our choices (docs/models.md):

* Layers. A DCGAN-shaped encoder (4x4 stride-2 convs, BatchNorm, LeakyReLU 0.2, widths doubling from
  64 to 512) down to 4x4, then FC to f(x); the decoder mirrors it with transposed convs from an FC of
  [f(x), z, I]; D has the encoder's trunk and two linear heads. The local CNNs read the last four encoder
  blocks' outputs.
* A reconstruction term. DE-GAN builds on VAE-GAN but writes no reconstruction loss; with I set to
  x's own identity the output should be x itself, so the first `self_fraction` of each batch takes its
  own identity code and an L1 term (`lambda_rec`) pulls that output to x. The rest take a uniformly drawn
  train identity. z ~ U(-1, 1)^50.
* The schedule as fractions of the run's steps: the recognition stage starts at `recognition_start`
  (6/7: the paper's 300 GAN epochs then 50 recognition epochs); `late_start` of the GAN stage
  begins the "G more often than D" phase.

Inference: DE-GAN edits identity, not expression. `edit(x, source, target, identity=ids)` redraws x's
expression on the chosen train identity (`identity`: [B] indices into the run's identities or [B, N_i]
weights); the affect vectors are ignored. Without `identity` it draws the average train identity
(weights 1/N_i on every identity) with z = 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fextrain.losses import cross_entropy, l1
from fextrain.models.registry import register
from fextrain.models.base import Batch, GANModel, Optim, Preset, StepContext, require_sizes
from fextrain.models.blocks import init_weights

LEAKY_SLOPE = 0.2
RESIDUE_LAYERS = 4  # local CNNs, one per intermediate encoder layer (L_1 .. L_4)


@dataclass(frozen=True)
class DEGANConfig:
    """Architecture (fex's, the paper gives only f(x)'s length); one conv block per halving down to 4x4."""

    size: int = 128
    num_affects: int = 7
    num_identities: int = 2  # filled by the loop: the train split's identities
    base_width: int = 64  # channels of the first encoder / discriminator block, doubled per block
    max_width: int = 512
    rep_dim: int = 350  # f(x), the paper's optimal length
    noise_dim: int = 50  # z
    local_width: int = 64  # channels of each local CNN
    local_fc: int = 64  # its last FC layer, joined with f(x) for the final classifier

    def __post_init__(self) -> None:
        if self.size < 64 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 64 (four intermediate encoder layers); got {self.size}")
        if self.num_affects < 2:
            raise ValueError(f"num_affects must be at least 2; got {self.num_affects}")
        if self.num_identities < 1:
            raise ValueError("DE-GAN needs the train identities (num_identities >= 1)")
        require_sizes(self, "base_width", "max_width", "rep_dim", "noise_dim", "local_width", "local_fc")

    @property
    def widths(self) -> list[int]:
        """Encoder (and discriminator) channels per stride-2 block down to 4x4 (64 ... 512 at 128)."""
        return [min(self.max_width, self.base_width * 2 ** i) for i in range(int(math.log2(self.size)) - 2)]


def _down(cin: int, cout: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.LeakyReLU(LEAKY_SLOPE))


def _trunk(widths: list[int]) -> nn.ModuleList:
    return nn.ModuleList(_down(cin, cout, norm=i > 0) for i, (cin, cout) in enumerate(zip([3] + widths, widths)))


class Generator(nn.Module):
    """G_en: x -> f(x) (+ the intermediate maps); G_de: [f(x), z, I] -> image."""

    def __init__(self, cfg: DEGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.blocks = _trunk(w)
        self.to_rep = nn.Linear(w[-1] * 16, cfg.rep_dim)
        self.project = nn.Sequential(nn.Linear(cfg.rep_dim + cfg.noise_dim + cfg.num_identities, w[-1] * 16),
                                     nn.BatchNorm1d(w[-1] * 16), nn.ReLU())
        ups = []
        for cin, cout in zip(w[::-1], w[::-1][1:]):
            ups += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.decoder = nn.Sequential(*ups, nn.ConvTranspose2d(w[0], 3, 4, 2, 1), nn.Tanh())
        init_weights(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(f(x) [B, rep_dim], the last RESIDUE_LAYERS block outputs: the expression residue)."""
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return self.to_rep(x.flatten(1)), maps[-RESIDUE_LAYERS:]

    def decode(self, rep: torch.Tensor, z: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([rep, z.to(rep.dtype), identity.to(rep.dtype)], dim=1))
        return self.decoder(h.view(len(h), -1, 4, 4))

    def forward(self, x: torch.Tensor, z: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0], z, identity)


class Discriminator(nn.Module):
    """x -> (D^e logits [B, N_e + 1], the last one "fake"; D^i logits [B, N_i])."""

    def __init__(self, cfg: DEGANConfig) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*_trunk(cfg.widths), nn.Flatten())
        flat = cfg.widths[-1] * 16
        self.expression = nn.Linear(flat, cfg.num_affects + 1)
        self.identity = nn.Linear(flat, cfg.num_identities)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(x)
        return self.expression(h), self.identity(h)


class LocalCNN(nn.Module):
    """One residue map -> (its last FC features [B, local_fc], its affect logits [B, K])."""

    def __init__(self, cin: int, cfg: DEGANConfig) -> None:
        super().__init__()
        w = cfg.local_width
        self.convs = nn.Sequential(nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.LeakyReLU(LEAKY_SLOPE),
                                   nn.Conv2d(w, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.LeakyReLU(LEAKY_SLOPE))
        self.fc = nn.Sequential(nn.Linear(w, cfg.local_fc), nn.ReLU())
        self.classifier = nn.Linear(cfg.local_fc, cfg.num_affects)

    def forward(self, residue: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.convs(residue).mean(dim=(2, 3)))
        return h, self.classifier(h)


class Recognizer(nn.Module):
    """The second stage: local CNNs on the residue maps and a final classifier on [f(x), their FC features].

    forward(rep, residues) -> [logits of L_1 .. L_4, final logits of L_5].
    """

    def __init__(self, cfg: DEGANConfig) -> None:
        super().__init__()
        self.local = nn.ModuleList(LocalCNN(c, cfg) for c in cfg.widths[-RESIDUE_LAYERS:])
        self.final = nn.Linear(cfg.rep_dim + RESIDUE_LAYERS * cfg.local_fc, cfg.num_affects)
        init_weights(self)

    def forward(self, rep: torch.Tensor, residues: list[torch.Tensor]) -> list[torch.Tensor]:
        feats, logits = zip(*(net(r) for net, r in zip(self.local, residues)))
        return [*logits, self.final(torch.cat([rep, *feats], dim=1))]


@dataclass
class DEGANLoss:
    """Second-stage weights (the paper's) and the schedule and reconstruction term (ours)."""

    lambdas: tuple[float, ...] = (0.7, 0.6, 0.4, 0.3, 1.0)  # L_1..L_4 (local CNNs), L_5 (final)
    lambda_rec: float = 10.0  # L1 of the own-identity outputs to x (ours; see the module docstring)
    self_fraction: float = 0.5  # share of each batch drawn with its own identity code
    recognition_start: float = 6 / 7  # fraction of the run's steps after which G_en is frozen
    late_start: float = 0.5  # fraction of the GAN stage after which G is updated more often than D
    d_every_late: int = 2  # then D takes one update every this many steps (G one every step)

    def __post_init__(self) -> None:
        self.lambdas = tuple(float(v) for v in self.lambdas)
        if len(self.lambdas) != RESIDUE_LAYERS + 1:
            raise ValueError(f"lambdas needs {RESIDUE_LAYERS + 1} weights (L_1..L_5); got {len(self.lambdas)}")
        if not 0 <= self.self_fraction <= 1 or not 0 <= self.recognition_start <= 1 or not 0 <= self.late_start <= 1:
            raise ValueError("self_fraction, recognition_start and late_start are fractions in [0, 1]")
        if self.d_every_late < 1:
            raise ValueError("d_every_late must be at least 1")


def phase_at(step: int, total: int, cfg: DEGANLoss) -> str:
    """'gan', 'gan-late' (G more often than D) or 'recognition' for 1-based `step` of `total`."""
    gan_steps = round(cfg.recognition_start * total)
    if step > gan_steps:
        return "recognition"
    return "gan-late" if step > round(cfg.late_start * gan_steps) else "gan"


def identity_weights(identity: torch.Tensor | None, n: int, num_identities: int, device: torch.device) -> torch.Tensor:
    """I as [n, N_i] weights: one-hot rows for indices, given weights as they are, the average for None."""
    if identity is None:
        return torch.full((n, num_identities), 1.0 / num_identities, device=device)
    if identity.dim() == 1:
        return F.one_hot(identity.long(), num_identities).float()
    return identity.float()


@register("degan")
class DEGAN(GANModel):
    """DE-GAN: expression transfer onto a chosen identity, then recognition from the frozen encoder."""

    summary = "DE-GAN (Ali 2019): expression disentangled from identity, multi-task D, 2nd-stage recognition"
    Arch = DEGANConfig
    Loss = DEGANLoss
    # The paper's optimiser settings and batch (150); its 300 + 50 epochs of a 110x augmented set are
    # far more than fex's runs, so the step count is ours.
    defaults = Optim(steps=100_000, batch=150, lr=1e-4, betas=(0.5, 0.999))
    presets = {"cpu-64": Preset(  # fex train --preset cpu-64 (and auto on a CPU); docs/train.md, Presets
        size=64, steps=20000, batch=16,
        arch={"base_width": 16, "max_width": 128},
        note="27 CPU-min; keeps the expression (0.83 on the demo), reaches the target identity in "
             "only 19% of edits of unseen real people (docs/models.md, Presets)")}
    paired = False
    identity_edit = True
    metrics = ("g_total", "g_expr", "g_id", "g_rec", "d_total", "d_real_expr", "d_real_id", "d_fake",
               "acc_real_expr", "acc_real_id", "acc_fake", "r_total", "r_final", "acc_recognition")
    progress = ("g_rec", "d_total", "acc_recognition")
    reconstruction = "g_rec"

    def __init__(self, arch: DEGANConfig, loss: DEGANLoss) -> None:
        super().__init__(arch, loss)
        self.generator = Generator(arch)
        self.discriminator = Discriminator(arch)
        self.recognizer = Recognizer(arch)

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator, "recognizer": self.recognizer}

    def scheduled(self, step: int, total: int) -> dict[str, float]:
        phase = phase_at(step, total, self.loss)
        d_every = self.loss.d_every_late if phase == "gan-late" else 1
        return {"recognition_stage": float(phase == "recognition"), "d_updates_per_step": 1.0 / d_every}

    def train_step(self, b: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        phase = phase_at(ctx.step, ctx.total, self.loss)
        if phase == "recognition":
            return self._recognition_step(b, ctx)
        cfg, a = self.loss, self.arch
        n, dev = len(b.x), b.x.device
        own = round(cfg.self_fraction * n)  # the first `own` samples keep their identity: reconstructions
        drawn = torch.randint(0, a.num_identities, (n,), device=dev, generator=ctx.rng)
        ident = torch.cat([b.identity[:own], drawn[own:]])
        z = torch.rand((n, a.noise_dim), device=dev, generator=ctx.rng) * 2 - 1
        G, D = ctx.train("generator"), ctx.train("discriminator")
        fake_class = torch.full_like(b.affect, a.num_affects)
        out: dict[str, torch.Tensor] = {}

        with ctx.autocast():
            x_bar = G(b.x, z, F.one_hot(ident, a.num_identities).float())
        # D (eq. 1): real -> expression and identity, fake -> the extra class; skipped on some late steps
        if phase == "gan" or ctx.step % cfg.d_every_late == 0:
            with ctx.autocast():
                e_real, i_real = D(b.x)
                e_fake, _ = D(x_bar.detach())
                out["d_real_expr"], out["d_real_id"] = cross_entropy(e_real, b.affect), cross_entropy(i_real, b.identity)
                out["d_fake"] = cross_entropy(e_fake, fake_class)
                out["d_total"] = out["d_real_expr"] + out["d_real_id"] + out["d_fake"]
            ctx.update("discriminator", out["d_total"])
            with torch.no_grad():
                out["acc_real_expr"] = (e_real[:, :-1].argmax(1) == b.affect).float().mean()
                out["acc_real_id"] = (i_real.argmax(1) == b.identity).float().mean()
                out["acc_fake"] = (e_fake.argmax(1) == fake_class).float().mean()

        # G (eq. 2): x_bar -> x's expression and identity I; own-identity outputs -> x itself
        with ctx.frozen("discriminator") as D_frozen:
            with ctx.autocast():
                e, i = D_frozen(x_bar)
                out["g_expr"], out["g_id"] = cross_entropy(e, b.affect), cross_entropy(i, ident)
                out["g_rec"] = l1(x_bar[:own], b.x[:own]) if own else x_bar.new_zeros((), dtype=torch.float32)
                out["g_total"] = out["g_expr"] + out["g_id"] + cfg.lambda_rec * out["g_rec"]
            ctx.update("generator", out["g_total"])
        return {k: v.detach() for k, v in out.items()}

    def _recognition_step(self, b: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Second stage: G_en frozen (eval-mode statistics, no gradient); local CNNs + final classifier learn."""
        with ctx.no_grad("generator", eval_mode=True) as G, ctx.autocast():
            rep, residues = G.encode(b.x)
        with ctx.autocast():
            logits = ctx.train("recognizer")(rep, residues)
            losses = [cross_entropy(lg, b.affect) for lg in logits]
            total = sum(w * v for w, v in zip(self.loss.lambdas, losses))
        ctx.update("recognizer", total)
        with torch.no_grad():
            acc = (logits[-1].argmax(1) == b.affect).float().mean()
        return {"r_total": total.detach(), "r_final": losses[-1].detach(), "acc_recognition": acc}

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Affect logits [B, K] of the second stage's final classifier on f(x) and the expression residue."""
        return self.recognizer(*self.generator.encode(x))[-1]

    def real_fake(self, x: torch.Tensor) -> torch.Tensor:
        """log P(any real expression) - log P("fake") from D^e's N_e + 1 outputs: > 0 when D calls x real."""
        e = self.discriminator(x)[0].float()
        return torch.logsumexp(e[:, :-1], dim=1) - e[:, -1]

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor,
             identity: torch.Tensor | None = None) -> torch.Tensor:
        """x's expression drawn on train identity `identity` (default: the average identity), z = 0.

        The affect vectors are ignored: DE-GAN keeps the input's expression and changes who shows it.
        """
        rep, _ = self.generator.encode(x)
        ident = identity_weights(identity, len(x), self.arch.num_identities, x.device)
        return self.generator.decode(rep, torch.zeros(len(x), self.arch.noise_dim, device=x.device), ident)
