"""Built-in sample data: synthetic studio characters made from one public-domain photo.

fex ships no face dataset and downloads nothing, so tests and `fex demo` need faces they can make.
Everything here starts from `skimage.data.astronaut()` (Eileen Collins, NASA, public domain):

* an *identity* is a deterministic re-styling of that face: mirror, skin tone and lighting, face
  proportions and background tint, so characters differ visibly while dlib still finds the face;
* an *affect* is a landmark-driven warp: each affect moves the brows, eyelids, mouth corners and jaw
  by a displacement (in units of the inter-ocular distance) and opens the mouth where it should,
  scaled by an intensity in [0, 1];
* a *studio clip* animates one character from a near-neutral face to the affect's peak with a small,
  slow head motion, as a MetaHuman capture animation does.

The warps are crude next to a real capture, but they are real images through the real pipeline:
dlib detects and aligns them, ffmpeg encodes and decodes them, and the affects are separable.
"""
from __future__ import annotations

import csv
import functools
import math
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from fexdata.affects import AFFECTS
from fexdata.images import write_png
from fexdata.ingest.video import H264, VideoWriter
from fexdata.paths import atomic_path

CHARACTERS: tuple[str, ...] = ("ada", "ben", "cleo", "dev", "eli", "fay", "gus", "hana", "ivo", "juno")
BASE_SIZE = 512

# Landmark groups of the iBUG 68-point scheme.
_JAW_LOW = list(range(5, 12))
_BROW_L, _BROW_R = list(range(17, 22)), list(range(22, 27))
_BROW_INNER, _BROW_OUTER = [20, 21, 22, 23], [17, 18, 25, 26]
_UPPER_LID = [37, 38, 43, 44]
_LOWER_LID = [40, 41, 46, 47]
_NOSE_WING = [31, 35]
_MOUTH_CORNERS = [48, 54, 60, 64]
_UPPER_LIP = [49, 50, 51, 52, 53, 61, 62, 63]
_LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]

_NEUTRALISE = [([48, 54, 60, 64], (-0.05, 0.09)), ([55, 56, 57, 58, 59, 65, 66, 67], (0.0, -0.03))]
# Per affect: (landmark indices, (dx, dy) in inter-ocular units; +x away from the face's midline,
# +y down) plus how far the mouth opens (fraction of inter-ocular distance).
_MOVES: dict[str, tuple[list[tuple[list[int], tuple[float, float]]], float]] = {
    "neutral": ([], 0.0),
    "joy": ([(_MOUTH_CORNERS, (0.16, -0.18)), (_UPPER_LIP, (0.0, -0.05)), (_LOWER_LID, (0.0, -0.06)),
             (_LOWER_LIP, (0.0, 0.06))], 0.0),
    "sadness": ([(_MOUTH_CORNERS, (-0.04, 0.22)), (_BROW_INNER, (0.0, -0.16)), (_BROW_OUTER, (0.0, 0.08)),
                 (_UPPER_LID, (0.0, 0.04)), (_LOWER_LIP, (0.0, -0.03))], 0.0),
    "anger": ([(_BROW_INNER, (-0.10, 0.22)), (_BROW_OUTER, (0.0, 0.04)), (_MOUTH_CORNERS, (-0.10, 0.06)),
               (_UPPER_LIP, (0.0, 0.03)), (_LOWER_LIP, (0.0, -0.04)), (_NOSE_WING, (0.04, 0.0))], 0.0),
    "surprise": ([(_BROW_L + _BROW_R, (0.0, -0.22)), (_UPPER_LID, (0.0, -0.08)), (_LOWER_LID, (0.0, 0.03)),
                  (_LOWER_LIP, (0.0, 0.28)), (_JAW_LOW, (0.0, 0.22)), (_MOUTH_CORNERS, (-0.05, 0.06))], 0.36),
    "fear": ([(_BROW_INNER, (-0.05, -0.16)), (_BROW_OUTER, (0.0, -0.05)), (_UPPER_LID, (0.0, -0.07)),
              (_MOUTH_CORNERS, (0.12, 0.07)), (_LOWER_LIP, (0.0, 0.12)), (_JAW_LOW, (0.0, 0.06))], 0.16),
    "disgust": ([(_UPPER_LIP, (0.0, -0.16)), (_NOSE_WING, (0.05, -0.10)), (_BROW_INNER, (-0.05, 0.12)),
                 (_LOWER_LID, (0.0, -0.07)), (_MOUTH_CORNERS, (-0.04, 0.10))], 0.0),
    "contempt": ([([54, 64], (0.10, -0.10)), ([48, 60], (0.0, 0.02))], 0.0),
}


@functools.lru_cache(maxsize=1)
def _base() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo cropped around her face and upscaled, with its 68 dlib landmarks."""
    import dlib
    from skimage import data

    from fexdata.ingest.faces import model_file

    photo = data.astronaut()
    # Face box from dlib on the full photo is about (179, 83)-(266, 170); keep the head with a margin
    # so the face fills ~40% of the frame, as in a studio capture zoomed to the face.
    crop = photo[35:255, 113:333]
    base = cv2.resize(crop, (BASE_SIZE, BASE_SIZE), interpolation=cv2.INTER_CUBIC)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(model_file("shape_predictor_68_face_landmarks.dat"))
    boxes = detector(base, 0)
    if not boxes:
        raise RuntimeError("dlib found no face in the built-in sample photo")
    shape = predictor(base, max(boxes, key=lambda r: r.area()))
    return base, np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _displacements(landmarks: np.ndarray, affect: str | None) -> np.ndarray:
    """Per-landmark (dx, dy) in pixels for the affect at full intensity (None: the neutralising move)."""
    moves = _NEUTRALISE if affect is None else _MOVES[affect][0]
    iod = float(np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0)))
    mid_x = float(landmarks[27:31, 0].mean())
    disp = np.zeros_like(landmarks)
    for indices, (dx, dy) in moves:
        for i in indices:
            side = 1.0 if landmarks[i, 0] >= mid_x else -1.0
            disp[i] += (side * dx * iod, dy * iod)
    return disp


@functools.lru_cache(maxsize=64)
def _flow(affect: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Dense backward flow (per output pixel, where to sample) for the affect at full intensity.

    Gaussian radial basis around each moved landmark: smooth, cheap, and close enough to the wanted
    landmark motion for the small displacements used here. The weights depend on the resting landmark
    positions only, so the flow is linear in the displacements and intensity can scale it.
    """
    _, landmarks = _base()
    disp = _displacements(landmarks, affect)
    moved = np.abs(disp).sum(1) > 0
    ys, xs = np.mgrid[0:BASE_SIZE, 0:BASE_SIZE].astype(np.float32)
    fx = np.zeros((BASE_SIZE, BASE_SIZE), np.float32)
    fy = np.zeros_like(fx)
    if moved.any():
        iod = float(np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0)))
        sigma2 = (0.22 * iod) ** 2
        weight_sum = np.full_like(fx, 1e-6)
        for (px, py), (dx, dy) in zip(landmarks[moved], disp[moved]):
            w = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma2))
            fx += w * dx
            fy += w * dy
            weight_sum += w
        # Normalise where several kernels overlap so a group moves by its displacement, not a sum of them.
        scale = np.maximum(weight_sum, 1.0)
        fx, fy = fx / scale, fy / scale
    return fx, fy


def _mouth_polygon(landmarks: np.ndarray, affect: str, intensity: float) -> np.ndarray | None:
    _, opening = _MOVES[affect]
    if opening <= 0 or intensity <= 0:
        return None
    iod = float(np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0)))
    disp = _displacements(landmarks, None) + _displacements(landmarks, affect) * intensity
    inner = landmarks[60:68] + disp[60:68]
    centre = inner.mean(0)
    half_w = 0.5 * float(np.linalg.norm(inner[4] - inner[0]))
    half_h = 0.5 * opening * intensity * iod
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    return np.stack([centre[0] + 0.7 * half_w * np.cos(angles),
                     centre[1] + half_h * np.sin(angles) + 0.25 * half_h], 1).astype(np.int32)


def _identity_style(identity: int) -> dict[str, float]:
    rng = np.random.default_rng(10_007 * (identity + 1))
    return {
        "mirror": float(identity % 2),
        "hue": float(rng.uniform(-12, 12)),          # OpenCV hue units (0..180)
        "saturation": float(rng.uniform(0.75, 1.3)),
        "gamma": float(rng.uniform(0.75, 1.3)),
        "aspect": float(rng.uniform(0.88, 1.12)),     # face width / height
        "tint_b": float(rng.uniform(-25, 25)),
        "tint_r": float(rng.uniform(-25, 25)),
    }


def _restyle(image: np.ndarray, identity: int) -> np.ndarray:
    style = _identity_style(identity)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + style["hue"]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * style["saturation"], 0, 255)
    hsv[..., 2] = 255.0 * (hsv[..., 2] / 255.0) ** style["gamma"]
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out[..., 0] += style["tint_r"]
    out[..., 2] += style["tint_b"]
    return np.clip(out, 0, 255).astype(np.uint8)


def _head_pose(identity: int, t: float) -> np.ndarray:
    """2x3 affine for the face proportions of `identity` and a slow head motion at time t (seconds)."""
    style = _identity_style(identity)
    c = BASE_SIZE / 2
    angle = 3.0 * math.sin(2 * math.pi * 0.4 * t)
    scale = 1.0 + 0.03 * math.sin(2 * math.pi * 0.25 * t + 1.0)
    rot = cv2.getRotationMatrix2D((c, c), angle, scale)
    aspect = np.array([[style["aspect"], 0, c * (1 - style["aspect"])], [0, 1, 0], [0, 0, 1]], np.float32)
    shift = np.array([[1, 0, 6.0 * math.sin(2 * math.pi * 0.3 * t)], [0, 1, 4.0 * math.cos(2 * math.pi * 0.2 * t)],
                      [0, 0, 1]], np.float32)
    m = shift @ np.vstack([rot, [0, 0, 1]]).astype(np.float32) @ aspect
    if style["mirror"]:
        m = np.array([[-1, 0, BASE_SIZE - 1], [0, 1, 0], [0, 0, 1]], np.float32) @ m
    return m[:2]


def sample_face(identity: int, affect: str, size: int = 512, intensity: float = 1.0, seed: int = 0,
                time: float = 0.0) -> np.ndarray:
    """An RGB uint8 `size`x`size` face of character `identity` showing `affect` at `intensity`.

    `time` moves the head along the character's slow studio motion; `seed` adds faint sensor noise so
    repeated frames are not byte-identical (0 = no noise).
    """
    if affect not in _MOVES:
        raise ValueError(f"unknown affect {affect!r}; choose from {', '.join(_MOVES)}")
    base, landmarks = _base()
    # The photo smiles: every face starts from a relaxed mouth so intensity 0 (and `neutral`) is neutral.
    nx, ny = _flow(None)
    fx, fy = _flow(affect)
    xs, ys = np.meshgrid(np.arange(BASE_SIZE, dtype=np.float32), np.arange(BASE_SIZE, dtype=np.float32))
    warped = cv2.remap(base, xs - nx - intensity * fx, ys - ny - intensity * fy, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REFLECT)
    mouth = _mouth_polygon(landmarks, affect, intensity)
    if mouth is not None:
        cv2.fillPoly(warped, [mouth], (45, 18, 20), lineType=cv2.LINE_AA)
    styled = _restyle(warped, identity)
    posed = cv2.warpAffine(styled, _head_pose(identity, time), (BASE_SIZE, BASE_SIZE),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if seed:
        noise = np.random.default_rng(seed).normal(0, 2.0, posed.shape)
        posed = np.clip(posed + noise, 0, 255).astype(np.uint8)
    if size != BASE_SIZE:
        posed = cv2.resize(posed, (size, size), interpolation=cv2.INTER_AREA if size < BASE_SIZE else cv2.INTER_CUBIC)
    return posed


RAMP_SHARE = 0.4  # sample clips reach their peak expression at this share of their length


def clip_intensity(t: float, seconds: float) -> float:
    """Studio animation curve: from a faint expression up to the peak over the first RAMP_SHARE, then hold."""
    ramp = min(1.0, t / max(RAMP_SHARE * seconds, 1e-6))
    return 0.25 + 0.75 * (0.5 - 0.5 * math.cos(math.pi * ramp))


def clip_frames(identity: int, affect: str, seconds: float, fps: float, size: int) -> Iterable[np.ndarray]:
    n = max(1, int(round(seconds * fps)))
    for i in range(n):
        t = i / fps
        yield sample_face(identity, affect, size, clip_intensity(t, seconds), seed=1 + i, time=t)


_CODECS = {".mp4": H264, ".mov": H264, ".mkv": H264, ".avi": ("-c:v", "mpeg4", "-q:v", "3"),
           ".webm": ("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "32", "-deadline", "realtime")}
_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi", ".webm": "webm"}


def write_clip(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode RGB frames to a video with ffmpeg; the codec follows the extension. Written atomically."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _CODECS:
        raise ValueError(f"unsupported clip extension {path.suffix!r}; use one of {', '.join(_CODECS)}")
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with atomic_path(path) as tmp:
        with VideoWriter(tmp, w, h, fps, _CODECS[ext], _CONTAINERS[ext]) as writer:
            writer.write(first)
            for frame in frames:
                writer.write(frame)
    return path


def write_studio_tree(root: str | Path, identities: int = 2, affects: Sequence[str] = AFFECTS,
                      seconds: float = 0.5, fps: float = 30, size: int = 256, layout: str = "clips",
                      ext: str = ".mp4") -> Path:
    """Write a MetaHuman-studio-style capture tree of synthetic characters; returns root.

    layout "clips":     ROOT/<character>/<affect>.mp4
    layout "sequences": ROOT/<character>/<affect>/frame.0001.png ...   (a render queue's output)
    layout "takes":     ROOT/<character>.mp4 + ROOT/<character>.csv    (one long take + segment sheet)
    """
    root = Path(root)
    if identities > len(CHARACTERS):
        raise ValueError(f"at most {len(CHARACTERS)} sample characters")
    for identity, name in enumerate(CHARACTERS[:identities]):
        if layout == "clips":
            for affect in affects:
                write_clip(root / name / f"{affect}{ext}", clip_frames(identity, affect, seconds, fps, size), fps)
        elif layout == "sequences":
            for affect in affects:
                for i, frame in enumerate(clip_frames(identity, affect, seconds, fps, size), start=1):
                    write_png(root / name / affect / f"frame.{i:04d}.png", frame)
        elif layout == "takes":
            take = (f for affect in affects for f in clip_frames(identity, affect, seconds, fps, size))
            write_clip(root / f"{name}{ext}", take, fps)
            rows = [(affect, round(k * seconds, 6), round((k + 1) * seconds, 6)) for k, affect in enumerate(affects)]
            with atomic_path(root / f"{name}.csv") as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["affect", "start", "end"])
                writer.writerows(rows)
        else:
            raise ValueError(f"unknown layout {layout!r}; use clips, sequences or takes")
    return root


def write_image_tree(root: str | Path, identities: int = 2, affects: Sequence[str] = AFFECTS,
                     per_affect: int = 1, size: int = 256) -> Path:
    """Write stills as ROOT/<character>/<affect>/<n>.png (the `folder` layout)."""
    root = Path(root)
    for identity, name in enumerate(CHARACTERS[:identities]):
        for affect in affects:
            for k in range(per_affect):
                face = sample_face(identity, affect, size, intensity=1.0 - 0.15 * k, seed=7 + k, time=0.3 * k)
                write_png(root / name / affect / f"{k:03d}.png", face)
    return root


def sample_photo(border: int = 96) -> np.ndarray:
    """A user's portrait: the public-domain astronaut photo, untouched, in a wider frame of plain background,
    so the face is a small part of the picture (what `fex edit` is given, unlike the aligned crops)."""
    import skimage.data

    photo = skimage.data.astronaut()
    h, w = photo.shape[:2]
    canvas = np.empty((h + 2 * border, w + 4 * border, 3), np.uint8)
    canvas[:] = (196, 204, 212)
    canvas[border:border + h, 2 * border:2 * border + w] = photo
    return canvas
