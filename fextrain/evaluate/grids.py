"""Labelled image grids (uint8 RGB), the canvas of every figure `fex eval` writes.

A grid is a list of rows of uint8 RGB images (all resized to one cell size), with a header row of
column labels and a left column of row labels, so a figure says what it shows without a caption.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from fextrain.pixels import to_uint8


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BG = 255  # white paper behind cells and labels
_INK = (20, 20, 20)


def as_uint8_images(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float NCHW in [-1, 1] (a model's output) or uint8 NHWC -> uint8 NHWC RGB."""
    if isinstance(images, torch.Tensor):
        return to_uint8(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images or a float tensor, got {images.dtype}")
    return images


def _fit_text(text: str, width: int) -> tuple[str, float]:
    """The label (shortened if need be) and a font scale so that it fits `width` pixels."""
    scale = 0.45
    while scale > 0.3 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 4:
        scale -= 0.05
    while len(text) > 1 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 4:
        text = text[:-1]
    return text, scale


def _label(width: int, height: int, text: str) -> np.ndarray:
    tile = np.full((height, width, 3), _BG, np.uint8)
    text, scale = _fit_text(text, width)
    (tw, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.putText(tile, text, ((width - tw) // 2, (height + th) // 2), _FONT, scale, _INK, 1, cv2.LINE_AA)
    return tile


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    col_labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cell: int = 96,
    gap: int = 2,
) -> np.ndarray:
    """Compose rows of uint8 RGB images into one labelled RGB image.

    Rows may be ragged; missing cells stay blank. Cells are resized to `cell` x `cell`
    (INTER_AREA shrinking, INTER_NEAREST growing so small generated images show their real pixels).
    """
    if not rows or not any(len(r) for r in rows):
        raise ValueError("an image grid needs at least one image")
    ncols = max(len(r) for r in rows)
    label_h = 22 if col_labels else 0
    label_w = 72 if row_labels else 0
    height = label_h + len(rows) * (cell + gap) + gap
    width = label_w + ncols * (cell + gap) + gap
    canvas = np.full((height, width, 3), _BG, np.uint8)
    for c, text in enumerate(col_labels or []):
        x = label_w + gap + c * (cell + gap)
        canvas[:label_h, x : x + cell] = _label(cell, label_h, str(text))
    for r, row in enumerate(rows):
        y = label_h + gap + r * (cell + gap)
        if row_labels:
            canvas[y : y + cell, :label_w] = _label(label_w, cell, str(row_labels[r]))
        for c, img in enumerate(row):
            img = np.asarray(img, dtype=np.uint8)
            interp = cv2.INTER_AREA if img.shape[0] > cell else cv2.INTER_NEAREST
            x = label_w + gap + c * (cell + gap)
            canvas[y : y + cell, x : x + cell] = cv2.resize(img, (cell, cell), interpolation=interp)
    return canvas


def grid_from_flat(images: np.ndarray | torch.Tensor, ncols: int, **labels) -> np.ndarray:
    """image_grid() of a flat row-major batch with `ncols` images per row."""
    arr = as_uint8_images(images)
    rows = [list(arr[i : i + ncols]) for i in range(0, len(arr), ncols)]
    return image_grid(rows, **labels)
