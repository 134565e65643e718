"""From a face (68 landmarks or a detector box) to an aligned square crop, and back.

Both alignment modes reduce to the same two numbers-pairs, a centre `c` and a half-side vector `x` (its
direction is the crop's horizontal axis, its length half the crop's side in frame pixels):

* `ffhq` - the FFHQ recipe on the 68 landmarks (eyes level, eye-to-mouth distance fixing the scale, centre
  a little below the eyes), the default;
* `bbox` - a square around the detector box with a margin and no rotation, as in the StarGAN report.

`Alignment` is that (c, x) pair; `transform(size)` gives the 2x3 affine frame -> crop of a given size, so
crops of several sizes come from one alignment (the largest is warped, the others are area-downscaled from
it, with transforms that say exactly where their pixels came from). `crop_to_frame` maps crop points back.
`zoom` > 1 shrinks the quad about its centre (a tighter crop, for datasets that ship tight faces).

Where the quad leaves the frame the crop has to be padded (`PAD_MODES`). Plain reflection, as FFHQ starts
with, mirrors the face's own features into the crop (ghost eyes, ears and shoulders that a generator then
learns to draw), so the default `blur` goes on as FFHQ's recipe does: the reflected band is blurred more the
further it lies from the frame, and fades towards the frame's mean colour. `pad_share` says how much of a
crop was padded (docs/ingest.md "Padding and zoom" has the measurements behind the default).

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
PadMode = Literal["blur", "reflect", "edge", "constant"]
PAD_MODES: tuple[str, ...] = ("blur", "reflect", "edge", "constant")
DEFAULT_PAD = "blur"
BBOX_MARGIN = 0.4   # bbox mode: side = max(box w, h) x (1 + margin)
# blur padding: a padded pixel d crop pixels outside the frame is blurred with sigma BLUR_SLOPE * d, so a
# mirrored feature at distance d (the reflection of one at depth d inside) is smeared about as wide as it
# lies far; its colour fades linearly to the frame's mean, reaching it FADE_LENGTH crop sides out.
BLUR_SLOPE = 0.5
FADE_LENGTH = 0.25


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

    def zoomed(self, zoom: float) -> "Alignment":
        """The same centre and rotation with a quad `zoom` times smaller (zoom > 1: tighter)."""
        if zoom <= 0:
            raise ValueError(f"zoom must be positive, got {zoom}")
        return Alignment(self.cx, self.cy, self.xx / zoom, self.xy / zoom)

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


def alignment_for(mode: AlignMode, landmarks: np.ndarray, box: tuple[float, float, float, float],
                  zoom: float = 1.0) -> Alignment:
    if mode == "ffhq":
        al = ffhq_alignment(landmarks)
    elif mode == "bbox":
        al = bbox_alignment(box)
    else:
        raise IngestError(f"unknown alignment {mode!r}", hint="use ffhq or bbox")
    return al if zoom == 1.0 else al.zoomed(zoom)


def pad_share(alignment: Alignment, width: int, height: int) -> float:
    """Fraction of the crop's area that lies outside a `width` x `height` frame (0: no padding).

    Exact: the area of the quad outside the frame, both in the alignment's coordinates, where the frame
    spans [0, width] x [0, height] (a whole-frame box (0, 0, width, height) is a quad with no padding).
    """
    quad = alignment.quad()
    if quad[:, 0].min() >= 0 and quad[:, 1].min() >= 0 and quad[:, 0].max() <= width and quad[:, 1].max() <= height:
        return 0.0
    area = 4.0 * (alignment.xx ** 2 + alignment.xy ** 2)
    frame = np.array([[0, 0], [0, height], [width, height], [width, 0]], np.float32)
    inside, _ = cv2.intersectConvexConvex(quad.astype(np.float32), frame)
    return float(min(1.0, max(0.0, 1.0 - inside / area))) if area > 0 else 1.0


_BORDERS = {"blur": cv2.BORDER_REFLECT_101, "reflect": cv2.BORDER_REFLECT_101, "edge": cv2.BORDER_REPLICATE,
            "constant": cv2.BORDER_CONSTANT}


def crop(frame: np.ndarray, alignment: Alignment, sizes: tuple[int, ...] | list[int],
         pad: PadMode = DEFAULT_PAD) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{size: (crop HxWx3 uint8, 2x3 frame->crop transform)} for each requested size, from one alignment.

    `pad` fills the parts of the crop outside the frame: `reflect` mirrors the frame, `edge` repeats its
    border pixels, `constant` paints the frame's mean colour, `blur` reflects, then blurs and fades (above).
    Pixels inside the frame are the same bilinear sample in every mode; the warp may round it differently
    by mode (OpenCV 5.1: one level on a near-tie; the locked 4.14 gives equal bytes, docs/install.md).
    """
    if pad not in _BORDERS:
        raise IngestError(f"unknown padding {pad!r}", hint=f"use one of {', '.join(PAD_MODES)}")
    sizes = sorted(set(int(s) for s in sizes), reverse=True)
    big = sizes[0]
    m = alignment.transform(big)
    k = math.hypot(m[0, 0], m[0, 1])
    src, pre = frame, np.eye(3)
    h, w = frame.shape[:2]
    if k < 0.5:
        # A large shrink by bilinear warping aliases; area-average the frame first so the warp scales ~0.8.
        r = min(1.0, k * 1.25)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        src = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        rx, ry = nw / w, nh / h
        pre = np.array([[rx, 0, 0.5 * rx - 0.5], [0, ry, 0.5 * ry - 0.5], [0, 0, 1]])  # frame -> shrunk, pixel centres
    m_src = m if src is frame else m @ np.linalg.inv(pre)  # no inverse when the frame is warped as is
    fill = _mean_colour(src) if pad in ("constant", "blur") else (0.0, 0.0, 0.0)
    img = cv2.warpAffine(src, m_src[:2], (big, big), flags=cv2.INTER_LINEAR, borderMode=_BORDERS[pad],
                         borderValue=fill)
    if pad == "blur":
        img = _soften_outside(img, m, w, h, fill)
    out = {big: (img, m)}
    for size in sizes[1:]:
        s = size / big
        small = cv2.resize(out[big][0], (size, size), interpolation=cv2.INTER_AREA)
        ms = m * s
        ms[:, 2] += 0.5 * s - 0.5   # area resize maps pixel centres: x_small = s (x_big + 0.5) - 0.5
        out[size] = (small, ms)
    return out


def _mean_colour(image: np.ndarray) -> tuple[float, float, float]:
    mean = cv2.mean(image)
    return (mean[0], mean[1], mean[2])


def outside_distance(transform: np.ndarray, width: int, height: int, size: int,
                     box: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
    """Per crop pixel, its distance outside the frame in crop pixels (0 inside); None if none is outside.

    `box` = (row0, row1, col0, col1) computes only that part of the crop (the same values as there in
    the whole map).
    """
    inv = cv2.invertAffineTransform(np.asarray(transform, np.float64))
    if box is None:
        corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
        fc = corners @ inv[:, :2].T + inv[:, 2]
        if fc[:, 0].min() >= -0.5 and fc[:, 1].min() >= -0.5 and fc[:, 0].max() <= width - 0.5 \
                and fc[:, 1].max() <= height - 0.5:
            return None
        box = (0, size, 0, size)
    r0, r1, c0, c1 = box
    u = np.arange(c0, c1, dtype=np.float32)
    v = np.arange(r0, r1, dtype=np.float32)
    (a, b, c), (d, e, f) = inv.tolist()
    fx = a * u[None, :] + b * v[:, None] + c     # frame coordinates of every crop pixel centre
    fy = d * u[None, :] + e * v[:, None] + f
    dx = np.maximum(np.maximum(-0.5 - fx, fx - (width - 0.5)), 0)
    dy = np.maximum(np.maximum(-0.5 - fy, fy - (height - 0.5)), 0)
    scale = math.hypot(transform[0, 0], transform[0, 1])   # crop pixels per frame pixel
    return (np.hypot(dx, dy) * scale).astype(np.float32)


def _padded_box(transform: np.ndarray, width: int, height: int, size: int) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1): a rectangle of the crop holding every padded pixel; None if there is none.

    The frame is convex, so a row (or column) of the crop whose two end pixels map inside it lies inside
    it whole: padded pixels sit only in rows and columns with an end outside.
    """
    inv = cv2.invertAffineTransform(np.asarray(transform, np.float64))
    ends = np.arange(size, dtype=np.float64)
    last = size - 1.0

    def outside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        fx = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
        fy = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
        return (fx < -0.5) | (fy < -0.5) | (fx > width - 0.5) | (fy > height - 0.5)

    rows = np.flatnonzero(outside(np.zeros(size), ends) | outside(np.full(size, last), ends))
    cols = np.flatnonzero(outside(ends, np.zeros(size)) | outside(ends, np.full(size, last)))
    if not rows.size or not cols.size:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _soften_outside(img: np.ndarray, transform: np.ndarray, width: int, height: int,
                    fill: tuple[float, float, float], whole: bool = False) -> np.ndarray:
    """Blur the padded band by distance and fade it to `fill`; pixels inside the frame are returned unchanged.

    The blur levels are a Gaussian pyramid brought back to full size (level k ~ sigma 2^k crop pixels);
    each padded pixel blends the two levels around its sigma = BLUR_SLOPE * dist (linearly in log sigma).
    Only the rectangle around the padded pixels is computed: the pyramid on it, widened by more than the
    pyramid's reach and kept on the pyramid's grid, gives the padded pixels exactly the values that the
    whole crop's pyramid would (`whole=True`; tests/test_padding.py compares the two on random crops); for
    a band along one side of a 256 px crop that is 0.4 ms instead of 1.0.
    """
    size = img.shape[0]
    box = _padded_box(transform, width, height, size)
    if box is None:
        return img
    dist = outside_distance(transform, width, height, size, box)
    widest_sigma = BLUR_SLOPE * float(dist.max())
    if widest_sigma <= 0:
        return img
    # level k has sigma ~2^k: go as far as the widest blur asked for, and no coarser than 8-16 pixels
    widest = math.ceil(math.log2(max(widest_sigma, 2.0)))
    n_levels = 1 + max(1, min(int(math.log2(size / 8)), widest))
    # The pyramid window: the box widened by 3 x the coarsest level's step (a level-k pixel reaches ~3 x 2^k
    # crop pixels through the pyrDown/pyrUp chain, and only pixels deep in the band use the coarse levels),
    # its corners on that step's grid so that every level samples the whole crop's grid.
    step = 2 ** (n_levels - 1)
    r0, r1, c0, c1 = box
    if whole or size % step:  # the whole crop's pyramid rounds odd sizes: a window would round differently
        wr0 = wc0 = 0
        wr1 = wc1 = size
    else:
        wr0, wc0 = (max(0, (x - 3 * step) // step * step) for x in (r0, c0))
        wr1, wc1 = (min(size, -(-(x + 3 * step) // step) * step) for x in (r1, c1))
    window = img[wr0:wr1, wc0:wc1]
    levels = [window]
    down, shapes = window, []
    for _ in range(1, n_levels):
        shapes.append(down.shape[1::-1])
        down = cv2.pyrDown(down)
        up = down
        for shape in reversed(shapes):
            up = cv2.pyrUp(up, dstsize=shape)
        levels.append(up)
    # Every pixel of the box at once: one inside the frame has sigma 0, so it takes level 0 (itself) with
    # no fade and comes out unchanged.
    inner = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
    pixels = np.stack([level[inner] for level in levels]).reshape(-1, 3)
    sigma = BLUR_SLOPE * dist.reshape(-1)
    # level position: 0 -> 1 while sigma grows to 2, then log2(sigma) (level k has sigma 2^k)
    pos = np.where(sigma < 2.0, sigma / 2.0, np.log2(np.maximum(sigma, 2.0))).clip(0, n_levels - 1)
    below = np.minimum(pos.astype(np.intp), n_levels - 2)
    frac = (pos - below).astype(np.float32)[:, None]
    index = below * sigma.size + np.arange(sigma.size)
    lo = np.take(pixels, index, axis=0).astype(np.float32)
    out = lo + (np.take(pixels, index + sigma.size, axis=0) - lo) * frac
    fade = np.clip(dist.reshape(-1) / (FADE_LENGTH * size), 0.0, 1.0).astype(np.float32)[:, None]
    out += (np.asarray(fill, np.float32) - out) * fade
    result = img.copy()
    result[r0:r1, c0:c1] = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(r1 - r0, c1 - c0, 3)
    return result


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
    # The 3x3 Laplacian of uint8 pixels is an integer in [-1020, 1020]: int16 holds it exactly, and
    # meanStdDev sums in double, so this equals numpy's var of a float64 Laplacian at a fifth less CPU.
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
    return float(std[0, 0]) ** 2


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
