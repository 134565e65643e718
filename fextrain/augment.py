"""Batch augmentation on the training device: uint8 NHWC -> jittered, flipped NCHW floats in [-1, 1].

The paper pre-processes each image by "resize, normalise, random crop and jitter" (the pix2pix
recipe: upscale by ~12% and crop back at a random place). Here that is one affine resampling of the
whole batch with `affine_grid` + `grid_sample`, so there is no per-sample Python and it runs wherever
the images live (GPU in training). Resizing to the training size happens once, when the images are
loaded into the packed cache (`fexdata.packed_cache.resize_crop`), not every step.

A source image and its target share the same transform: the L1 term compares the generated face with
the target pixel by pixel, and independent jitter would ask the generator to predict a random shift.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fextrain.pixels import to_uint8, to_unit_range  # noqa: F401  (the conversion's home; named here too)


@dataclass
class AugmentConfig:
    jitter: float = 0.12  # largest zoom-in before the random crop (pix2pix: 286/256 - 1 ~ 0.117); 0 = none
    flip: bool = True  # horizontal flip, same for source and target (expressions are near-symmetric)


def random_affines(n: int, cfg: AugmentConfig, device: torch.device | str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """[n, 2, 3] affine maps (output -> input, normalised coords): zoom in by s in [1, 1+jitter],
    shift so the crop stays inside the image, and mirror x with probability 1/2 when flip is on."""
    u = torch.rand(n, 4, device=device, generator=generator)
    scale = 1.0 / (1.0 + cfg.jitter * u[:, 0])  # the crop covers 1/s of the (zoomed) image
    room = 1.0 - scale
    tx, ty = (2 * u[:, 1] - 1) * room, (2 * u[:, 2] - 1) * room
    mirror = torch.where(u[:, 3] < 0.5, -1.0, 1.0) if cfg.flip else torch.ones_like(scale)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = scale * mirror
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = scale
    theta[:, 1, 2] = ty
    return theta


def augment_pairs(src: torch.Tensor, tgt: torch.Tensor | None, cfg: AugmentConfig,
                  generator: torch.Generator | None = None,
                  theta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply one random transform per pair to float images [B,3,H,W] (source i and target i alike).

    `tgt` None (unpaired models) augments the sources alone. The random numbers are drawn even when
    jitter and flip are off, so turning augmentation on or off does not shift the run's random stream.
    `theta`: the transforms (`random_affines`) when the caller drew them, to move landmarks alike (`move_points`).
    """
    if theta is None:
        theta = random_affines(src.shape[0], cfg, src.device, generator)
    if cfg.jitter <= 0 and not cfg.flip:
        return src, tgt
    both = src if tgt is None else torch.cat([src, tgt], dim=0)
    theta = (theta if tgt is None else torch.cat([theta, theta], dim=0)).to(both.dtype)
    grid = F.affine_grid(theta, list(both.shape), align_corners=False)
    # Border padding: a crop never leaves the image, but bilinear taps at its edge may.
    out = F.grid_sample(both, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if src.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    n = src.shape[0]
    return out[:n], (None if tgt is None else out[n:])


def move_points(points: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y) points [B, N, 2] of the input images -> where `theta` (output -> input) puts them."""
    a, t = theta[:, :, :2].to(points.dtype), theta[:, :, 2].to(points.dtype)
    return torch.linalg.solve(a, (points - t[:, None, :]).transpose(1, 2)).transpose(1, 2)
