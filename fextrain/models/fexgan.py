"""FExGAN / FExGAN-Meta: a conditional VAE-style generator and an AC-GAN discriminator.

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
* All conv and dense weights ~ N(0, 0.02); the log-variance head starts at zero (sigma = 1).

Other sizes follow the same rule: one down/up block per halving, so 256 adds one block and 64 drops
one (the size CPU tests use). The width of a block at resolution r is
`min(max_width, base_width * (size/2) / r)`, which reproduces the reference list at 128.

The encoder's second head is read as a log-variance, so z = mu + exp(logvar / 2) * eps and the KL
term of eq. 3 (-1/2 sum(1 + logvar - mu^2 - exp(logvar))) is the exact KL to N(0, I).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
from torch import nn

# Keras' LeakyReLU default slope, which the reference code uses everywhere.
LEAKY_SLOPE = 0.3
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

    @property
    def num_blocks(self) -> int:
        """Stride-2 blocks from `size` down to 1x1 (7 at 128)."""
        return int(math.log2(self.size))

    def width_at(self, resolution: int) -> int:
        return min(self.max_width, self.base_width * (self.size // 2) // resolution)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["d_widths"] = list(self.d_widths)
        return d


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv and dense weights, zero biases, as the reference initialiser."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _down(cin: int, cout: int, norm: bool, act: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    if act:
        layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


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
            blocks.append(_down(cin, cout, norm=i > 0, act=not last))
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
            ups.append(_up(cin, cout, cfg.dropout if i < cfg.dropout_blocks else 0.0))
            cin = cout
        self.decoder = nn.Sequential(*ups)
        self.to_image = nn.Sequential(nn.ConvTranspose2d(cin, 3, 4, stride=2, padding=1), nn.Tanh())

        init_weights(self)
        # Reference: the log-sigma head starts at exactly zero, so early latents have unit variance.
        nn.init.zeros_(self.logvar.weight)

    def encode(self, x: torch.Tensor, src_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image [B,3,S,S] in [-1,1] and source affect vector [B,K] -> (mu, logvar), each [B, latent]."""
        plane = self.affect_plane(src_vec.to(x.dtype)).view(-1, 1, self.cfg.size, self.cfg.size)
        if x.is_contiguous(memory_format=torch.channels_last):
            plane = plane.contiguous(memory_format=torch.channels_last)
        h = self.encoder(torch.cat([x, plane.to(x.dtype)], dim=1)).flatten(1)
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
            blocks.append(_down(cin, cout, norm=i > 0, act=True))
            cin = cout
        self.features = nn.Sequential(*blocks)
        flat = cin * (cfg.size // 2 ** len(cfg.d_widths)) ** 2
        self.real_fake = nn.Linear(flat, 1)
        self.affect = nn.Linear(flat, cfg.num_affects)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        return self.real_fake(h).squeeze(1), self.affect(h)


def build_fexgan(**cfg) -> tuple[Generator, Discriminator]:
    config = FExGANConfig(**cfg)
    return Generator(config), Discriminator(config)


# --- affect vectors -------------------------------------------------------------------------------


def one_hot(index: torch.Tensor, num_affects: int) -> torch.Tensor:
    """The paper's source condition A_s, e.g. [0, 0, 0, 0, 1, 0, 0] for neutral."""
    return torch.nn.functional.one_hot(index.long(), num_affects).float()


TARGET_LAWS = ("scaled", "noisy", "onehot")


def sample_target_affects(
    index: torch.Tensor, num_affects: int, law: str = "scaled", sigma: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Target conditions A_t(lambda), lambda ~ N(0, 1), for a batch of target affect indices.

    The papers say only that the target affect is "sampled from the normal distribution" so that a
    vector can express variation within an affect. Our reading (law="scaled", the default): the
    one-hot of the target scaled by an intensity 1 + sigma * lambda, lambda ~ N(0, 1) per sample,
    clipped to [0, 2] -- the target class stays the arg-max, and at inference a smaller or larger
    weight (0.5 * joy) or a mix (anger + sadness) stays close to what the decoder saw.
    law="noisy" instead adds sigma * lambda_k to every component (one-hot + N(0, sigma^2 I));
    law="onehot" is the sparse vector without sampling.
    """
    base = one_hot(index, num_affects)
    if law == "onehot":
        return base
    if law == "scaled":
        lam = torch.randn(base.shape[0], 1, device=base.device, generator=generator)
        return base * (1.0 + sigma * lam).clamp(0.0, 2.0)
    if law == "noisy":
        return base + sigma * torch.randn(base.shape, device=base.device, generator=generator)
    raise ValueError(f"unknown target affect law {law!r}; choose one of {', '.join(TARGET_LAWS)}")


def affect_vector(spec: str, affects: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Parse an inference condition such as 'joy', 'anger+sadness' or '0.6*joy + 0.3*surprise'.

    Each term is `[weight*]affect` (weight 1 when omitted); names accept every alias fexdata knows.
    Returns a float vector [K] in the run's affect order; mixed and scaled vectors are allowed.
    """
    from fexdata.affects import canonical_affect

    vec = torch.zeros(len(affects))
    terms = [t.strip() for t in spec.split("+") if t.strip()]
    if not terms:
        raise ValueError("empty affect specification")
    for term in terms:
        m = re.fullmatch(r"(?:([-+]?\d*\.?\d+(?:e[-+]?\d+)?)\s*\*\s*)?([A-Za-z_ -]+)", term)
        if not m:
            raise ValueError(f"cannot read affect term {term!r}; write e.g. 'joy', '0.5*joy' or 'anger+sadness'")
        name = canonical_affect(m.group(2))
        if name not in affects:
            raise ValueError(f"affect {name!r} is not one of this model's affects: {', '.join(affects)}")
        vec[list(affects).index(name)] += float(m.group(1)) if m.group(1) else 1.0
    return vec
