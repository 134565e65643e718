"""Warp-refine (ours): move the source's own pixels into the target expression, then paint only what a warp
cannot make.

The painted-face editors keep the face but barely change the expression of people they have never seen
(docs/models.md, real-face benchmark): an expression is mostly geometry (mouth corners, lips apart, brows,
eyelids), and geometry is largely the same across people, while appearance is not. So this generator
predicts three things from the source and the source/target affect vectors:

* a **dense backward flow** at 1/4 of the crop side, upsampled bilinearly (smooth by construction) and
  bounded to `arch.max_shift` of the half-side: output pixel p takes the source's colour at p + flow(p);
* a **luminance residual** and its **mask** at full crop resolution, computed after the warp from the warped
  image, for what a warp cannot make (teeth, the mouth's interior, wrinkles). The residual changes the three
  channels equally, so the source's chroma stays exactly: a grayscale face comes back gray;
* nothing else: every other pixel is the source's, moved.

With `arch.prior` the flow and the luminance start from the train people's mean change for the pair of affects
(`fextrain.expression_prior`, fitted without learning before the first step): their mean optical flow, and their
mean log luminance ratio (an expression-ratio image: folds, the open mouth's dark interior), which relights the
warped source, equally in every channel. The network's flow and residual then learn a correction of the prior.

`warp_fields` returns the flow and the residual's luminance change, so `fex edit` can apply them to the
**full-resolution** face instead of pasting a 64 px crop (fextrain/edit/paste.py `paste_warp`): the edit is then
as sharp as the input at any output size.

Training (paired: the loop serves a real frame I_t of the same person with the target affect, and both
frames' 68 landmarks in the augmented crop's normalised coordinates):

    L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(x)))] + lambda_cls * CE(D_cls(x), a_s)
    L_G = -E[D(G(x))] + lambda_cls * CE(D_cls(G(x)), a_t) + gamma * |G(x) - I_t| + gamma_warp * |W(x) - I_t|
          + lambda_lm * |grid(l_t) - l_s| + mask_penalty * mean(m) + flow_tv * TV(flow)

W(x) is the warp alone: its L1 to the target asks the flow, not the residual, to make the geometry. The
landmark term is the landmark-guided part: where the target frame has landmark i, the flow must point at the
source's landmark i, so the flow learns how each affect moves a face, from every pair of frames of the train
people. D is fexgan-skip's spectral-norm hinge discriminator with an affect head trained on real faces only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fextrain.expression_prior import RATIO_EPS, load_or_fit_expression_prior
from fextrain.losses import accuracy, cross_entropy, l1
from fextrain.models.base import Batch, GANModel, Optim, Preset, StepContext, one_hot, require_sizes
from fextrain.models.blocks import SpectralNormDiscriminator, hinge_losses, total_variation
from fextrain.models.registry import register

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB -> gray (fextrain.pixels.LUMA)
MASK_BIAS = -3.0  # sigmoid(-3) = 0.05: an untrained generator adds almost no residual


@dataclass(frozen=True)
class WarpRefineConfig:
    size: int = 128
    num_affects: int = 7
    widths: tuple[int, ...] = (32, 64, 128, 256)  # encoder channels at size, size/2, size/4, size/8
    max_shift: float = 0.25  # largest flow, as a fraction of the crop's half-side (0.25: 1/8 of the crop)
    d_widths: tuple[int, ...] = (64, 128, 256)
    # How the source/target affects reach the generator: "input" (constant planes beside the image, as StarGAN
    # does: instance norm removes a constant, so they reach the interior mostly through the borders' padding) or
    # "film" (also a per-channel scale and shift of every block's normalised features).
    condition: str = "input"
    # Start from the train people's mean flow and expression-ratio image of each affect pair (fitted without
    # learning before the first step, `fextrain.expression_prior`): the network then learns a correction of both.
    prior: bool = False
    # Multiplies the prior's fields, as a target of "1.25*joy" would (1: the people's measured mean change; why it
    # stays 1 is in docs/models.md, warp-refine).
    prior_gain: float = 1.0
    # The learnt luminance residual after the warp (False: the edit is the warped, relit source alone; with the
    # prior, the residual took unseen people's faces away from their real ones, docs/models.md).
    residual: bool = True

    def __post_init__(self) -> None:
        if self.size < 32 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 32; got {self.size}")
        if self.num_affects < 2:
            raise ValueError(f"num_affects must be at least 2; got {self.num_affects}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "d_widths", tuple(int(w) for w in self.d_widths))
        if len(self.widths) != 4:
            raise ValueError(f"widths must give 4 channel counts (size, /2, /4, /8); got {list(self.widths)}")
        require_sizes(self, "widths", "d_widths")
        if self.condition not in ("input", "film"):
            raise ValueError(f"condition must be 'input' or 'film'; got {self.condition!r}")
        if not 0 < self.max_shift <= 1:
            raise ValueError(f"max_shift must be in (0, 1]; got {self.max_shift}")


class _Block(nn.Sequential):
    """3x3 conv (stride 1 or 2), instance norm, leaky ReLU: the generator's one block. With `cond` > 0 the
    normalised features are scaled and shifted per channel by a linear map of the condition vector (FiLM)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, cond: int = 0) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2))
        self.film = nn.Linear(cond, 2 * cout) if cond else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        conv, norm, act = self[0], self[1], self[2]
        h = norm(conv(x))
        if self.film is not None:
            scale, shift = self.film(c.to(h.dtype))[:, :, None, None].chunk(2, 1)
            h = h * (1 + scale) + shift
        return act(h)


def _up(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling (nearest-neighbour upsampling printed a block pattern into the residual)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def identity_grid(n: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """[n, size, size, 2] sampling grid of the identity warp (x, y in [-1, 1], pixel centres, align_corners=False)."""
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=like.device).expand(n, 2, 3)
    return F.affine_grid(theta, [n, 1, size, size], align_corners=False)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 1, H, W], BT.601 weights."""
    w = x.new_tensor(LUMA)[None, :, None, None]
    return (x * w).sum(1, keepdim=True)


def relight(warped: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """Multiply the luminance (in [0, 1] above a floor of RATIO_EPS) by exp(log_ratio), equally in every channel."""
    return warped + (luminance(warped) + 1 + 2 * RATIO_EPS) * torch.expm1(log_ratio)


def refine(warped: torch.Tensor, mask: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """Move the warped image's luminance toward `luma` by `mask`, equally in every channel (chroma kept)."""
    return warped + mask * (luma - luminance(warped))


class Generator(nn.Module):
    """(x [B,3,S,S] in [-1,1], source vec [B,K], target vec [B,K]) -> (flow [B,2,S,S], log ratio [B,1,S,S],
    mask [B,1,S,S], luma [B,1,S,S]); the edit is `render(x, *outputs)`.

    flow is the offset, in normalised coordinates, added to the identity grid: output pixel p samples the
    source at p + flow(p). The log ratio relights the warped source (zero without a prior); the mask and luma
    then refine it.
    """

    def __init__(self, cfg: WarpRefineConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w0, w1, w2, w3 = cfg.widths
        k = cfg.num_affects
        c = 2 * k if cfg.condition == "film" else 0
        self.enc0 = _Block(3 + 2 * k, w0, cond=c)
        self.enc1 = _Block(w0, w1, 2, c)
        self.enc2 = _Block(w1, w2, 2, c)
        self.enc3 = nn.ModuleList([_Block(w2, w3, 2, c), _Block(w3, w3, cond=c)])
        self.dec2 = _Block(w3 + w2, w2, cond=c)  # at size/4, after upsampling size/8
        self.to_flow = nn.Conv2d(w2, 2, 3, padding=1)
        if cfg.residual:
            self.dec1 = _Block(w2 + w1, w1, cond=c)  # at size/2
            self.dec0 = _Block(w1 + w0 + 3, w0, cond=c)  # at size, with the warped image
            self.to_refine = nn.Conv2d(w0, 2, 3, padding=1)  # mask logit, luminance
        if cfg.prior:  # filled by WarpRefine.prepare on every rank, then saved with the weights
            self.register_buffer("prior_flow", torch.zeros(k, k, 2, cfg.size, cfg.size))
            self.register_buffer("prior_log_ratio", torch.zeros(k, k, 1, cfg.size, cfg.size))
            self.fixed_buffers = ("prior_flow", "prior_log_ratio")  # DDP leaves them alone (Runtime.wrap)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.2)
            elif isinstance(m, nn.Linear):  # FiLM starts as the identity
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():  # start as the identity warp with a faint residual
            self.to_flow.weight.zero_()
            self.to_flow.bias.zero_()
            if cfg.residual:
                self.to_refine.weight.normal_(0.0, 0.02)
                self.to_refine.bias.copy_(torch.tensor([MASK_BIAS, 0.0]))

    def prior(self, src_vec: torch.Tensor, tgt_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow [B,2,S,S], log ratio [B,1,S,S]) of the prior: bilinear in the two vectors, so a scaled or mixed
        target ("0.5*joy") takes that share of each pair's fields, and a target equal to the source none."""
        with torch.autocast(src_vec.device.type, enabled=False):
            weights = (src_vec.float()[:, :, None] * tgt_vec.float()[:, None, :]).flatten(1) * self.cfg.prior_gain
            flow = (weights @ self.prior_flow.flatten(0, 1).flatten(1)).view(-1, *self.prior_flow.shape[2:])
            ratio = (weights @ self.prior_log_ratio.flatten(0, 1).flatten(1)).view(-1, *self.prior_log_ratio.shape[2:])
        return flow, ratio

    def forward(self, x: torch.Tensor, src_vec: torch.Tensor,
                tgt_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[-1]
        cond = torch.cat([src_vec, tgt_vec], 1).to(x.dtype)
        planes = cond[:, :, None, None].expand(-1, -1, size, size)
        e0 = self.enc0(torch.cat([x, planes], 1), cond)
        e1 = self.enc1(e0, cond)
        e2 = self.enc2(e1, cond)
        e3 = self.enc3[1](self.enc3[0](e2, cond), cond)
        d2 = self.dec2(torch.cat([_up(e3), e2], 1), cond)
        coarse = torch.tanh(self.to_flow(d2).float()) * self.cfg.max_shift
        flow = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        if self.cfg.prior:
            prior_flow, log_ratio = self.prior(src_vec, tgt_vec)
            flow = flow + prior_flow
        else:
            log_ratio = flow.new_zeros(flow.shape[0], 1, size, size)
        if not self.cfg.residual:
            none = flow.new_zeros(flow.shape[0], 1, size, size)
            return flow, log_ratio, none, none
        warped = relight(warp(x, flow), log_ratio)
        d1 = self.dec1(torch.cat([_up(d2), e1], 1), cond)
        d0 = self.dec0(torch.cat([_up(d1), e0, warped.to(e0.dtype)], 1), cond)
        out = self.to_refine(d0).float()
        return flow, log_ratio, torch.sigmoid(out[:, :1]), torch.tanh(out[:, 1:])


def render(x: torch.Tensor, flow: torch.Tensor, log_ratio: torch.Tensor, mask: torch.Tensor,
           luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the warped, relit source; the edit) from the generator's outputs."""
    warped = relight(warp(x, flow), log_ratio)
    return warped, refine(warped, mask, luma)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x [B,C,S,S] sampled at identity + flow ([B,2,S,S] normalised offsets), bilinear, border-padded, float32."""
    grid = identity_grid(x.shape[0], x.shape[-1], x) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def flow_at(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """[B, P, 2] the flow ([B,2,S,S]) at normalised positions `points` ([B, P, 2]), bilinear."""
    return F.grid_sample(flow.float(), points[:, :, None, :].float(), mode="bilinear", padding_mode="border",
                         align_corners=False)[..., 0].permute(0, 2, 1)


def landmark_terms(flow: torch.Tensor, source: torch.Tensor,
                   target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(landmark error, motion shortfall), both in 64-px-crop pixels, from the flow at the target frame's landmarks.

    The error is the mean distance between where the flow sends each target landmark and the source's. The
    shortfall is how much less the flow moves the landmarks than the person did, on average over a face
    (relu of the difference of mean motion lengths): the error alone is met best by the mean motion over
    people, which is about a quarter of any one person's (benchmarks/landmark_motion.py).
    source, target: [B, 68, 2] normalised landmark positions of the two frames; rows with any NaN are left out.
    """
    valid = torch.isfinite(source).all(2).all(1) & torch.isfinite(target).all(2).all(1)
    if not bool(valid.any()):
        return flow.new_zeros(()), flow.new_zeros(())
    flow, source, target = flow[valid], source[valid], target[valid]
    made, wanted = flow_at(flow, target), source - target
    error = ((wanted - made).norm(dim=2) * 32.0).mean()
    shortfall = torch.relu(wanted.norm(dim=2).mean(1) - made.norm(dim=2).mean(1)).mean() * 32.0
    return error, shortfall


@dataclass
class WarpRefineLoss:
    lambda_cls: float = 1.0  # affect classification: D on real faces, G on its edits at the target
    gamma: float = 10.0  # L1 of the edit to the real target frame
    gamma_warp: float = 5.0  # L1 of the warp alone to the target frame: geometry by the flow, not the residual
    lambda_lm: float = 5.0  # landmark correspondence of the flow (per 64-px pixel of error)
    lambda_motion: float = 0.0  # * how much less the flow moves the landmarks than the person did (64-px pixels)
    mask_penalty: float = 0.5  # * mean(m): paint only where the warp cannot do it (0.05 painted dark blotches)
    flow_tv: float = 1.0  # * total variation of the flow (normalised units): no tearing


# Both CPU presets: narrow widths, the expression prior, no residual.
_CPU_ARCH = {"widths": [16, 32, 64, 128], "d_widths": [32, 64, 128], "prior": True, "residual": False}


@register("warp-refine")
class WarpRefine(GANModel):
    """Dense landmark-guided warp of the source, optionally from a measured prior, plus a chroma-preserving
    luminance relighting and/or refinement; hinge SN D."""

    summary = ("warp-refine (ours): landmark-guided dense warp of the source, from the train people's mean flow "
               "and expression-ratio image (cpu-64; arch.prior), or + a luminance residual; sharp at any size, "
               "keeps colour; paired")
    Arch = WarpRefineConfig
    Loss = WarpRefineLoss
    defaults = Optim(steps=20_000, batch=16, lr=2e-4, betas=(0.5, 0.999))
    presets = {  # fex train --preset NAME (cpu-64 also by auto on a CPU); docs/train.md, Presets
        "cpu-64": Preset(size=64, steps=3000, batch=16, arch=_CPU_ARCH,
                         note="16 CPU-min; unseen real people, 3 seeds: outside judge 0.78 of real (0.75-0.84), "
                              "paired truth -0.02 (+0.06 to -0.13: one seed further from their real face); the "
                              "prior alone +0.14 (docs/models.md, warp-refine)"),
        "prior-only": Preset(size=64, steps=0, batch=16, arch=_CPU_ARCH,  # `prepare` fits the prior; no step
                             note="no training, 2 CPU-min to fit; unseen real people: paired truth +0.14 (the "
                                  "nearest to their own faces of any run), outside judge 0.67 of real, reach 0.25 "
                                  "(docs/models.md, warp-refine)")}
    paired = True
    landmarks = True  # the loop serves both frames' landmarks (Batch.landmarks, Batch.target_landmarks)
    metrics = ("g_total", "g_adv", "g_cls", "g_l1", "g_warp", "g_lm", "g_motion", "g_mask", "g_flow_tv",
               "d_total", "d_real", "d_fake", "d_cls", "acc_real_cls", "acc_fake_cls")
    progress = ("g_l1", "g_lm", "d_total")
    reconstruction = "g_l1"

    def __init__(self, arch: WarpRefineConfig, loss: WarpRefineLoss) -> None:
        super().__init__(arch, loss)
        self.generator = Generator(arch)
        self.discriminator = SpectralNormDiscriminator(arch)

    @classmethod
    def fitted_without_steps(cls, arch: dict[str, Any]) -> bool:
        """The prior with no residual: the learnt flow starts at zero, so the untrained edit is the prior's."""
        settings = {**asdict(WarpRefineConfig()), **arch}
        return bool(settings["prior"]) and not settings["residual"]

    def prepare(self, data: Any, *, cache_dir: Path, device: torch.device, progress: bool,
                steps: int | None = None) -> dict[str, dict[str, Any]]:
        """With `arch.prior`: fit (or load from the cache) the train people's mean fields into the generator."""
        if not self.arch.prior:
            return {}
        fields, cost = load_or_fit_expression_prior(cache_dir, data.images, data.identity_ids, data.affect_ids,
                                                    self.arch.num_affects, progress)
        with torch.no_grad():
            self.generator.prior_flow.copy_(fields["flow"])
            self.generator.prior_log_ratio.copy_(fields["log_ratio"])
        return {"expression_prior": {**asdict(cost), "summary": cost.summary()}}

    def train_step(self, b: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, k = self.loss, self.arch.num_affects
        a_src, a_tgt = one_hot(b.affect, k), one_hot(b.target_affect, k)
        G, D = ctx.train("generator"), ctx.train("discriminator")

        # 1. D: hinge on real vs. the detached edit; affect classification on real faces only
        with ctx.autocast():
            flow, log_ratio, mask, luma = G(b.x, a_src, a_tgt)
        warped, x_gen = render(b.x, flow, log_ratio, mask, luma)
        with ctx.autocast():
            real, real_cls = D(b.x)
            fake, _ = D(x_gen.detach())
        d = hinge_losses(real, fake, real_cls, b.affect, cfg.lambda_cls)
        ctx.update("discriminator", d["d_total"])

        # 2. G: fool D as the target affect, match the target frame (whole edit and warp alone), follow the
        # landmarks, keep the residual sparse and the flow smooth
        with ctx.frozen("discriminator") as D_frozen:
            with ctx.autocast():
                g_fake, g_fake_cls = D_frozen(x_gen)
            g_adv = -g_fake.float().mean()
            g_cls = cross_entropy(g_fake_cls, b.target_affect)
            g_l1 = l1(x_gen, b.target)
            g_warp = l1(warped, b.target)
            g_lm, g_motion = (landmark_terms(flow, b.landmarks, b.target_landmarks) if b.landmarks is not None
                              else (flow.new_zeros(()), flow.new_zeros(())))
            g_mask = mask.mean()
            g_tv = total_variation(flow)
            g_loss = (g_adv + cfg.lambda_cls * g_cls + cfg.gamma * g_l1 + cfg.gamma_warp * g_warp
                      + cfg.lambda_lm * g_lm + cfg.lambda_motion * g_motion + cfg.mask_penalty * g_mask
                      + cfg.flow_tv * g_tv)
            ctx.update("generator", g_loss)
        out = {"g_total": g_loss, "g_adv": g_adv, "g_cls": g_cls, "g_l1": g_l1, "g_warp": g_warp, "g_lm": g_lm,
               "g_motion": g_motion, "g_mask": g_mask, "g_flow_tv": g_tv, **d,
               "acc_real_cls": accuracy(real_cls, b.affect), "acc_fake_cls": accuracy(g_fake_cls, b.target_affect)}
        return {key: value.detach() for key, value in out.items()}

    def warp_fields(self, x: torch.Tensor, source_vec: torch.Tensor,
                    target_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the edit as `edit` gives it, flow [B,2,S,S] normalised offsets, luminance change [B,1,S,S] in [-1,1]
        units), float32, from one forward: the edit is the warped source plus the change in every channel.
        `fex edit` applies flow and change to the full-resolution face: the change (the residual minus what it
        replaces, at the model's resolution) is added to the warped full-resolution face, which therefore keeps
        its own detail under the residual too."""
        flow, log_ratio, mask, luma = self.generator(x, source_vec, target_vec)
        moved = warp(x, flow)
        change = (refine(relight(moved, log_ratio), mask, luma) - moved)[:, :1]
        return (moved + change).clamp(-1, 1), flow.float(), change.float()

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        return self.warp_fields(x, source_vec, target_vec)[0]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[1]

    def real_fake(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[0]
