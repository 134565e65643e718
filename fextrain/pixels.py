"""The one conversion between stored pixels and a network's values: uint8 [0, 255] <-> float [-1, 1].

x / 127.5 - 1 one way, round((clip(y, -1, 1) + 1) * 127.5) the other, in float32 with round-half-to-even,
on torch tensors or (the onnxruntime path of `fex edit`) on numpy arrays: both give the same bytes
(tests/test_pixels.py). torch is not imported here, so an .onnx file's edits run without it.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def unit_range(x: Any) -> Any:
    """uint8 values (any layout) -> float32 in [-1, 1]: a torch tensor stays on its device."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x, np.float32) / np.float32(127.5) - np.float32(1)
    return x.float().div_(127.5).sub_(1.0)


def from_unit_range(y: Any) -> Any:
    """float values (any layout) in [-1, 1], clipped to it -> uint8."""
    if isinstance(y, np.ndarray):
        return np.round((np.clip(y, -1, 1) + 1) * np.float32(127.5)).astype(np.uint8)
    import torch  # loaded already: y is a tensor

    return ((y.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit_range(images: Any) -> Any:
    """uint8 [B,H,W,3] -> float32 [B,3,H,W] in [-1, 1]. On a tensor the permute leaves a channels_last layout."""
    if isinstance(images, np.ndarray):
        return unit_range(images.transpose(0, 3, 1, 2))
    return unit_range(images.permute(0, 3, 1, 2))


def to_uint8(images: Any) -> np.ndarray:
    """float [B,3,H,W] in [-1, 1] -> uint8 [B,H,W,3] numpy (for PNGs, video frames and evaluation)."""
    if isinstance(images, np.ndarray):
        return from_unit_range(images).transpose(0, 2, 3, 1)
    return from_unit_range(images).permute(0, 2, 3, 1).cpu().numpy()


LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as OpenCV's RGB2GRAY


def grey_levels(images: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> float64 [...] grey levels (0-255, BT.601, not rounded)."""
    return np.asarray(images, np.float64) @ LUMA


def laplacian_variance(images: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Per image (N x H x W x 3 uint8): variance of the 3x3 Laplacian of its grey levels (0-255), over the valid
    interior, in float64; over the interior pixels of `region` ([H, W] bool) when given. `fex eval`'s sharpness,
    its paired truth (the face only) and `fex edit`'s full-resolution sharpness all use it."""
    inner = None if region is None else np.asarray(region, bool)[1:-1, 1:-1]
    out = np.empty(len(images))
    for i, image in enumerate(images):
        g = grey_levels(image)
        lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
        out[i] = lap.var() if inner is None else lap[inner].var()
    return out
