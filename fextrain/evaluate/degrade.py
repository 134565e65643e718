"""The degradations a generator puts into its faces, for training the judge and for calibrating metrics.

A judge that never saw a soft or noisy face reads softness as an expression: fex's first judge, trained
with flips and shifts only, called most real test faces blurred by sigma = 1 px "anger" (0.885 -> 0.300
on the demo data). Generators blur (a 1x1 bottleneck cannot carry texture), upsample, add checkerboard
noise and shift colours, so the judge learns with all of these, each drawn independently per image:

* Gaussian blur, sigma uniform in (0, 2] px at 64 px (scaled with the side),
* down-then-up sampling by a factor in [1.5, 4] (area down, bilinear up),
* additive Gaussian noise,
* small per-channel gain and offset (colour shifts),
* JPEG at quality 30-90 (what a user's saved edits go through).

All of it works on float NCHW batches in [-1, 1] on any device; only JPEG round-trips through OpenCV on
the CPU. `gaussian_blur` is also the blur of the eval metrics' references (the judge on blurred real
faces, the sharpness of blurred sources), so there is one blur in fex's evaluation.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fextrain.pixels import from_unit_range, unit_range

MAX_BLUR_AT_64 = 2.0  # the faithful FExGAN's edits measured like a sigma 0.5-0.75 blur; 2 leaves room
P_BLUR, P_RESAMPLE, P_NOISE, P_COLOUR, P_JPEG = 0.5, 0.25, 0.25, 0.5, 0.25  # clean faces stay common
RESAMPLE_FACTORS = (1.5, 4.0)
NOISE_STD = (0.0, 0.06)  # in [-1, 1] units: up to ~8 grey levels
COLOUR_GAIN, COLOUR_OFFSET = 0.08, 0.06  # per channel, uniform in +-
JPEG_QUALITY = (30, 90)


def blur_scale(side: int) -> float:
    """Pixels at `side` that correspond to one pixel at 64 px (blur amounts are given at 64 px)."""
    return side / 64.0


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur of float NCHW images with one sigma (px) per image; sigma 0 leaves it as is.

    Reflect padding, so the border does not darken; the kernel reaches 3 sigma.
    """
    n, c, h, w = x.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(n)
    radius = min(int(math.ceil(3 * float(sigma.max()))), (min(h, w) - 1))
    if radius <= 0:
        return x
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-0.5 * (taps[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    kernel = torch.where(sigma[:, None] > 0, kernel, (taps == 0).float()[None].expand(n, -1))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.dtype)  # [n*c, taps]
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def blur_uint8(images: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 NHWC images blurred by `sigma` px with `gaussian_blur` (rounded back to uint8)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    out = gaussian_blur(x, float(sigma)).round().clamp(0, 255).to(torch.uint8)
    return out.permute(0, 2, 3, 1).numpy()


def _down_up(x: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """One float CHW image in [-1, 1] through a JPEG encode/decode at `quality` (on the CPU)."""
    rgb = from_unit_range(x).permute(1, 2, 0).cpu().numpy()
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # OpenCV cannot fail on a plain uint8 image; if it ever does, keep the image clean
        return x
    back = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return unit_range(torch.from_numpy(np.ascontiguousarray(back)).permute(2, 0, 1)).to(x)


def degrade(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image of a float NCHW batch in [-1, 1] given a random subset of the degradations above.

    The order follows an image's life: a generator's colour and softness, its upsampling and noise,
    then the JPEG a user saves it as. All draws come from `gen`, so training stays reproducible.
    """
    n, _, h, _ = x.shape
    dev = x.device

    def chosen(p: float) -> torch.Tensor:
        return torch.rand(n, generator=gen, device=dev) < p

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen, device=dev)

    pick = chosen(P_COLOUR)[:, None, None, None]
    gain, offset = uniform(-COLOUR_GAIN, COLOUR_GAIN, 3, 1, 1), uniform(-COLOUR_OFFSET, COLOUR_OFFSET, 3, 1, 1)
    x = torch.where(pick, x * (1 + gain) + offset, x)

    sigma = uniform(0.0, MAX_BLUR_AT_64 * blur_scale(h)) * chosen(P_BLUR)
    x = gaussian_blur(x, sigma)

    factors = uniform(*RESAMPLE_FACTORS)
    for i in torch.nonzero(chosen(P_RESAMPLE)).flatten().tolist():
        x[i : i + 1] = _down_up(x[i : i + 1], float(factors[i]))

    pick = chosen(P_NOISE)[:, None, None, None]
    x = torch.where(pick, x + uniform(*NOISE_STD, 1, 1, 1) * torch.randn(x.shape, generator=gen, device=dev), x)
    x = x.clamp(-1, 1)

    qualities = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (n,), generator=gen, device=dev)
    for i in torch.nonzero(chosen(P_JPEG)).flatten().tolist():
        x[i] = _jpeg(x[i], int(qualities[i]))
    return x
