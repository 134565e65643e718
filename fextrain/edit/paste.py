"""Paste a generated face crop back into its full-resolution frame.

The crop goes back through the inverse of the frame -> crop similarity transform and is blended with a
feathered mask built from the face's landmarks (their convex hull, the brows lifted to take in the
forehead an expression moves; eroded, then blurred, so it fades to exactly zero inside the crop).
Only pixels under a non-zero mask change: everything else is the input, bit for bit. A whole-image
fallback face has no landmarks, so its mask is the crop square with the same feathered edge.

Optional detail keeping (`keep_detail_of`) adds only the generator's coarse change to the input instead of
replacing the face, so the input's fine detail survives a blurry generator.

Optional colour matching shifts the generated face's mean colour (in CIELAB, over the mask) onto the
input face's, so a generator's drift in skin tone or exposure does not show as a patch.

`sharpness_ratio` measures what the paste did to the face's detail at full resolution, as `fex eval`'s
sharpness does at the model's side: the Laplacian variance of the face box in the output over the same box
in the input.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from fextrain.pixels import laplacian_variance

BROW_LIFT = 0.6      # brows raised by this fraction of the eye-brow distance: the mask takes in the forehead
ERODE = 0.03         # fractions of the crop side: the hull shrinks by this much ...
FEATHER = 0.035      # ... and its edge is blurred with this Gaussian sigma


def face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """size x size float32 mask in [0, 1] from 68 landmarks in crop pixels (NaN: the whole crop)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    area = np.zeros((size, size), np.uint8)
    if pts.shape[0] == 68 and np.isfinite(pts).all():
        pts = pts.copy()
        eyes_y = pts[36:48, 1].mean()
        brows = pts[17:27]
        brows[:, 1] -= BROW_LIFT * max(eyes_y - brows[:, 1].mean(), 0.0)
        hull = cv2.convexHull(np.round(pts * 4).astype(np.int32))
        cv2.fillConvexPoly(area, hull, 255, lineType=cv2.LINE_AA, shift=2)
    else:
        area[:] = 255
    margin = max(1, int(round(ERODE * size)))
    sigma = max(0.5, FEATHER * size)
    pad = margin + int(math.ceil(3 * sigma))   # the blurred edge stays inside the crop square
    area[:pad, :] = area[-pad:, :] = 0
    area[:, :pad] = area[:, -pad:] = 0
    area = cv2.erode(area, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    mask = cv2.GaussianBlur(area.astype(np.float32) / 255.0, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    mask[mask < 1e-3] = 0.0   # no invisible tails: a pixel is either blended or left untouched
    return mask


def match_colour(generated: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`generated` with its mean CIELAB colour under `mask` moved onto `source`'s (uint8 crops, same size)."""
    w = mask[..., None].astype(np.float32)
    total = float(w.sum())
    if total < 1.0:
        return generated
    gen = cv2.cvtColor(generated.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    src = cv2.cvtColor(source.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    shift = (src * w).sum((0, 1)) / total - (gen * w).sum((0, 1)) / total
    rgb = cv2.cvtColor(gen + shift, cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _roi(frame_shape: tuple[int, ...], m: np.ndarray, mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the frame box of the mask's support (transform `m` frame -> crop), or None."""
    h, w = frame_shape[:2]
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1],
                        [xs.max() + 1, ys.max() + 1]], np.float64) - 0.5
    inv = cv2.invertAffineTransform(m)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = max(0, int(math.floor(pts[:, 0].min())) - 1), max(0, int(math.floor(pts[:, 1].min())) - 1)
    x1, y1 = min(w, int(math.ceil(pts[:, 0].max())) + 2), min(h, int(math.ceil(pts[:, 1].max())) + 2)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def paste(frame: np.ndarray, crop: np.ndarray, transform: np.ndarray, mask: np.ndarray,
          keep_detail_of: np.ndarray | None = None) -> tuple[tuple[int, int], np.ndarray] | None:
    """Blend `crop` into `frame` in place; returns ((y0, x0), frame-space mask of the changed region).

    `transform` maps frame pixels to crop pixels; the region touched is the frame box of the mask's
    support, so a small face in a 4K frame costs a small warp. None when the face lies outside the frame.

    `keep_detail_of` (the input crop the model was given): instead of the generated face, add only the
    generator's change at coarse scales, low-pass(crop) - low-pass(input) with a Gaussian of 1/64 of the
    crop side, to the frame. The input's finer detail then stays (a blurry generator does not blur the
    face), at the price of the edit's own fine texture.
    """
    m = np.asarray(transform, dtype=np.float64).reshape(2, 3)
    box = _roi(frame.shape, m, mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    # ROI pixel p sits at frame pixel p + (x0, y0); WARP_INVERSE_MAP samples crop(M (p + origin)).
    m_roi = m.copy()
    m_roi[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    size = (x1 - x0, y1 - y0)
    flags = cv2.WARP_INVERSE_MAP
    alpha = cv2.warpAffine(mask, m_roi, size, flags=flags | cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    roi = frame[y0:y1, x0:x1]
    if keep_detail_of is None:
        face = cv2.warpAffine(crop, m_roi, size, flags=flags | cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        # roi (1 - a) + face a, rounded; where a == 0 OpenCV's (w1 v + w2 f) / (w1 + w2 + 1e-5) is v exactly.
        roi[...] = cv2.blendLinear(roi, face, 1.0 - alpha, alpha)
    else:
        sigma = crop.shape[0] / 64.0
        change = (cv2.GaussianBlur(crop.astype(np.float32), (0, 0), sigma)
                  - cv2.GaussianBlur(keep_detail_of.astype(np.float32), (0, 0), sigma))
        change = cv2.warpAffine(change, m_roi, size, flags=flags | cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        moved = np.clip(np.rint(roi + alpha[..., None] * change), 0, 255).astype(np.uint8)
        np.copyto(roi, moved, where=alpha[..., None] > 0)
    return (y0, x0), alpha


def paste_warp(frame: np.ndarray, fields: np.ndarray, transform: np.ndarray,
               mask: np.ndarray) -> tuple[tuple[int, int], np.ndarray] | None:
    """Apply a warp model's edit to the full-resolution face in `frame`, in place; returns as `paste` does.

    `fields` is S x S x 3 float32 on the model's crop grid (`WarpRefine.warp_fields`): the backward flow in
    normalised crop units (x, y) and the residual's luminance change in [-1, 1] units. Each frame pixel of the
    region looks up the flow at its crop position and takes the input frame's colour where that flow points
    (bicubic), so the face keeps the input's own detail at any size; the change is added equally to the
    three channels, as the model does; then the result is blended with the paste mask.
    """
    m = np.asarray(transform, dtype=np.float64).reshape(2, 3)
    box = _roi(frame.shape, m, mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    size = fields.shape[0]
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    cx = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]).astype(np.float32)  # crop pixel of every region pixel
    cy = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]).astype(np.float32)
    f = cv2.remap(fields, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.remap(mask, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # where the flow points, in crop pixels (normalised offset * S/2), then back in frame pixels
    inv = cv2.invertAffineTransform(m)
    sx, sy = cx + f[..., 0] * (size / 2), cy + f[..., 1] * (size / 2)
    fx = (inv[0, 0] * sx + inv[0, 1] * sy + inv[0, 2]).astype(np.float32)
    fy = (inv[1, 0] * sx + inv[1, 1] * sy + inv[1, 2]).astype(np.float32)
    warped = cv2.remap(frame, fx, fy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    edited = warped + (f[..., 2] * 127.5)[..., None]
    roi = frame[y0:y1, x0:x1]
    a = alpha[..., None]
    blended = np.clip(np.rint(roi * (1 - a) + edited * a), 0, 255).astype(np.uint8)
    np.copyto(roi, blended, where=a > 0)
    return (y0, x0), alpha


def sharpness_ratio(before: np.ndarray, after: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Laplacian variance of `after`'s face box over `before`'s (full-resolution uint8 RGB frames of one size).

    1.0 exactly when the box is unchanged, below 1 when the pasted face is softer than the input's. The box is
    the detector's, clipped to the frame; NaN when under 3 x 3 pixels or the input's box is flat.
    """
    h, w = before.shape[:2]
    x0, y0 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return float("nan")
    lv_before, lv_after = laplacian_variance(np.stack([before[y0:y1, x0:x1], after[y0:y1, x0:x1]]))
    return float(lv_after / lv_before) if lv_before > 0 else float("nan")
