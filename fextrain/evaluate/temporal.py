"""Temporal stability of a video edit: the optical-flow warping error, with the source as its own baseline.

For each consecutive pair of frames, the flow of the INPUT video carries frame t onto frame t+1; the mean
absolute difference between the warped frame t and the real frame t+1 is the warping error. The input's own
error is not zero (lighting, compression, flow mistakes), so the edit is judged by the ratio output / input
under the same flow: per-frame edits that flicker or jitter raise it, an edit that moves with its source
stays near 1.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

Box = Sequence[float]  # x0, y0, x1, y1 in frame pixels

# Farneback on the whole frame: 5 pyramid levels follow motions of tens of pixels at 720 px wide.
_FARNEBACK = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def _flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per pixel p of `src`, the offset to the same point in `dst`."""
    return cv2.calcOpticalFlowFarneback(src, dst, None, **_FARNEBACK)


def _remap(image: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _consistent(back: np.ndarray, fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampling grid of frame t for each pixel of frame t+1, and where that correspondence can be trusted.

    Forward-backward check (Sundaram et al. 2010): following the backward flow to frame t and the forward
    flow back must return to the start, up to a tolerance growing with the motion. Pixels that fail are
    occluded or disoccluded (nothing in frame t predicts them), and pixels sent outside frame t have no source.
    """
    h, w = back.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid_x, grid_y = xs + back[..., 0], ys + back[..., 1]
    fwd_there = _remap(fwd, grid_x, grid_y)
    loop = back + fwd_there
    tolerance = 0.01 * ((back ** 2).sum(-1) + (fwd_there ** 2).sum(-1)) + 0.5
    inside = (grid_x >= 0) & (grid_x <= w - 1) & (grid_y >= 0) & (grid_y <= h - 1)
    return grid_x, grid_y, inside & ((loop ** 2).sum(-1) < tolerance)


def _region_mask(shape: tuple[int, int], box: Box | None) -> np.ndarray | None:
    if box is None:
        return None
    h, w = shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask = np.zeros((h, w), bool)
    mask[max(0, y0):max(0, min(h, y1)), max(0, x0):max(0, min(w, x1))] = True
    return mask


def warping_error(frames_in: Iterable[np.ndarray], frames_out: Iterable[np.ndarray],
                  region: Box | Sequence[Box | None] | None = None) -> dict:
    """Warping error of the input video and of the output video under the input's flow.

    `frames_in` and `frames_out`: the two videos' frames in order (H x W x 3 RGB or H x W grey, uint8, same
    sizes), streamed pair by pair. `region`: None (the whole frame), one box x0, y0, x1, y1 for every frame,
    or one box per frame (None: that frame does not count), e.g. the edited face's detector box; a pair is
    measured inside the box of its later frame. Errors are mean absolute differences in 0-255 levels over
    every counted pixel and channel of every pair (pixels that fail the flow check do not count).

    Returns pairs (pairs measured), pixels (counted pixels), coverage (their share of the region's pixels),
    input, output (the two errors), ratio (output / input: 1 = as stable as the source; NaN when the
    input's error is 0 and the output's too, inf when only the input's is) and per_pair: (t, input, output)
    for each measured pair t-1 -> t, to find where an edit jumps.
    """
    per_frame = region is not None and len(region) > 0 and (region[0] is None or np.ndim(region[0]) == 1)
    sums = np.zeros(2)
    pixels = considered = pairs = 0
    per_pair = []
    prev = None
    for t, (a, b) in enumerate(zip(frames_in, frames_out)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ValueError(f"frame {t}: input {a.shape} and output {b.shape} differ in size")
        gray = _gray(a)
        if prev is not None:
            box = (region[t] if t < len(region) else None) if per_frame else region
            mask = _region_mask(gray.shape, box)
            if region is None or mask is not None:
                prev_a, prev_b, prev_gray = prev
                back = _flow(gray, prev_gray)   # frame t -> t-1: where each pixel of frame t came from
                fwd = _flow(prev_gray, gray)
                grid_x, grid_y, valid = _consistent(back, fwd)
                if mask is not None:
                    considered += int(mask.sum())
                    valid &= mask
                else:
                    considered += valid.size
                count = int(valid.sum())
                if count:
                    pair = np.zeros(2)
                    for k, (before, now) in enumerate(((prev_a, a), (prev_b, b))):
                        warped = _remap(before, grid_x, grid_y).astype(np.float32)
                        diff = np.abs(warped - now.astype(np.float32))
                        pair[k] = float(diff[valid].sum()) / (diff.shape[2] if diff.ndim == 3 else 1)
                    sums += pair
                    per_pair.append((t, *(pair / count)))
                    pixels += count
                    pairs += 1
        prev = (a, b, gray)
    err_in, err_out = (sums / pixels) if pixels else (float("nan"), float("nan"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(err_out) / np.float64(err_in))
    return {"pairs": pairs, "pixels": pixels, "coverage": pixels / considered if considered else float("nan"),
            "input": float(err_in), "output": float(err_out), "ratio": ratio, "per_pair": per_pair}
