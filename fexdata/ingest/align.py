"""From a face (68 landmarks or a detector box) to an aligned square crop, and back.

Both alignment modes reduce to the same two numbers-pairs, a centre `c` and a half-side vector `x` (its
direction is the crop's horizontal axis, its length half the crop's side in frame pixels):

* `ffhq` - the FFHQ recipe on the 68 landmarks (eyes level, eye-to-mouth distance fixing the scale, centre
  a little below the eyes), the default;
* `bbox` - a square around the detector box with a margin and no rotation, as in the StarGAN report.

`Alignment` is that (c, x) pair; `transform(size)` gives the 2x3 affine frame -> crop of a given size, so
crops of several sizes come from one alignment (the largest is warped, the others are area-downscaled from
it, with transforms that say exactly where their pixels came from). `crop_to_frame` maps crop points back.
Parts of the quad outside the frame are filled by reflection, as FFHQ does.

`Smoother` is a centred Gaussian filter over a clip's alignments, so consecutive crops do not jitter with
the landmark noise; it never blends across a cut (a new track).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import cv2
import numpy as np

from fexdata.errors import IngestError

AlignMode = Literal["ffhq", "bbox"]
BBOX_MARGIN = 0.4   # bbox mode: side = max(box w, h) x (1 + margin)


@dataclass(frozen=True)
class Alignment:
    cx: float
    cy: float
    xx: float   # half-side vector, frame pixels
    xy: float

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.xx, self.xy], dtype=np.float64)

    @classmethod
    def from_array(cls, a: np.ndarray) -> "Alignment":
        return cls(*(float(v) for v in a))

    def quad(self) -> np.ndarray:
        """Corners top-left, bottom-left, bottom-right, top-right in frame pixels (FFHQ's order)."""
        c, x = np.array([self.cx, self.cy]), np.array([self.xx, self.xy])
        y = np.array([-x[1], x[0]])
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])

    def transform(self, size: int) -> np.ndarray:
        """2x3 affine mapping frame pixels to the pixels of a `size` x `size` crop."""
        half = math.hypot(self.xx, self.xy)
        k = size / (2.0 * half)
        ux, uy = self.xx / half, self.xy / half
        a = np.array([[k * ux, k * uy], [-k * uy, k * ux]])
        t = np.array([size / 2.0, size / 2.0]) - a @ np.array([self.cx, self.cy])
        return np.hstack([a, t[:, None]])


def ffhq_alignment(landmarks: np.ndarray) -> Alignment:
    """The FFHQ crop quad from 68 iBUG landmarks (the formula published with the FFHQ dataset)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_l + eye_r) / 2
    e2e = eye_r - eye_l
    mouth_avg = (lm[48] + lm[54]) / 2
    e2m = mouth_avg - eye_avg
    x = e2e - np.flipud(e2m) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*e2e) * 2.0, np.hypot(*e2m) * 1.8)
    c = eye_avg + e2m * 0.1
    return Alignment(float(c[0]), float(c[1]), float(x[0]), float(x[1]))


def bbox_alignment(box: tuple[float, float, float, float], margin: float = BBOX_MARGIN) -> Alignment:
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) * (1.0 + margin) / 2.0
    return Alignment((x0 + x1) / 2.0, (y0 + y1) / 2.0, half, 0.0)


def alignment_for(mode: AlignMode, landmarks: np.ndarray, box: tuple[float, float, float, float]) -> Alignment:
    if mode == "ffhq":
        return ffhq_alignment(landmarks)
    if mode == "bbox":
        return bbox_alignment(box)
    raise IngestError(f"unknown alignment {mode!r}", hint="use ffhq or bbox")


def crop(frame: np.ndarray, alignment: Alignment, sizes: tuple[int, ...] | list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{size: (crop HxWx3 uint8, 2x3 frame->crop transform)} for each requested size, from one alignment."""
    sizes = sorted(set(int(s) for s in sizes), reverse=True)
    big = sizes[0]
    m = alignment.transform(big)
    k = math.hypot(m[0, 0], m[0, 1])
    src, pre = frame, np.eye(3)
    if k < 0.5:
        # A large shrink by bilinear warping aliases; area-average the frame first so the warp scales ~0.8.
        r = min(1.0, k * 1.25)
        h, w = frame.shape[:2]
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        src = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        rx, ry = nw / w, nh / h
        pre = np.array([[rx, 0, 0.5 * rx - 0.5], [0, ry, 0.5 * ry - 0.5], [0, 0, 1]])  # frame -> shrunk, pixel centres
    m_src = m @ np.linalg.inv(pre)
    out = {big: (cv2.warpAffine(src, m_src[:2], (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101), m)}
    for size in sizes[1:]:
        s = size / big
        small = cv2.resize(out[big][0], (size, size), interpolation=cv2.INTER_AREA)
        ms = m * s
        ms[:, 2] += 0.5 * s - 0.5   # area resize maps pixel centres: x_small = s (x_big + 0.5) - 0.5
        out[size] = (small, ms)
    return out


def crop_to_frame(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Map Nx2 crop pixel coordinates back to frame pixels through the inverse of a 2x3 transform."""
    inv = cv2.invertAffineTransform(np.asarray(transform, dtype=np.float64))
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ inv[:, :2].T + inv[:, 2]


def frame_to_crop(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    m = np.asarray(transform, dtype=np.float64)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) @ m[:, :2].T + m[:, 2]


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grayscale image: low for blurred or upscaled crops."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


T = TypeVar("T")


class Smoother(Generic[T]):
    """Centred Gaussian smoothing of alignments over a stream of frames, emitted with a short delay.

    `push(payload, alignment, cut)` returns the frames whose smoothed alignment is now final (it needs
    `radius` frames after each one); `flush()` returns the rest. `cut=True` starts a new segment: no
    frame is averaged with frames across it. sigma 0 passes alignments through unchanged.
    """

    def __init__(self, sigma: float = 2.0) -> None:
        self.sigma = float(sigma)
        self.radius = int(math.ceil(3 * self.sigma)) if self.sigma > 0 else 0
        self._pending: deque[tuple[T, np.ndarray]] = deque()   # not yet emitted
        self._history: deque[np.ndarray] = deque()             # emitted, still inside the window
        offsets = np.arange(-self.radius, self.radius + 1)
        self._weights = np.exp(-0.5 * (offsets / self.sigma) ** 2) if self.sigma > 0 else np.ones(1)

    def push(self, payload: T, alignment: Alignment, cut: bool = False) -> list[tuple[T, Alignment]]:
        out: list[tuple[T, Alignment]] = []
        if cut:
            out.extend(self.flush())
        self._pending.append((payload, alignment.as_array()))
        while len(self._pending) > self.radius:
            out.append(self._emit_one())
        return out

    def flush(self) -> list[tuple[T, Alignment]]:
        out = [self._emit_one() for _ in range(len(self._pending))]
        self._history.clear()
        return out

    def _emit_one(self) -> tuple[T, Alignment]:
        payload, _ = self._pending[0]
        past = list(self._history)[-self.radius:] if self.radius else []
        future = [a for _, a in self._pending]                   # the frame itself and what follows
        window = past + future[: self.radius + 1]
        w = self._weights[self.radius - len(past): self.radius - len(past) + len(window)]
        value = (np.stack(window) * w[:, None]).sum(0) / w.sum()  # truncated at segment ends, renormalised
        self._pending.popleft()
        self._history.append(future[0])
        while len(self._history) > self.radius:
            self._history.popleft()
        return payload, Alignment.from_array(value)
