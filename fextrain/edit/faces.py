"""Faces in a user's frames, found and aligned exactly as the run's training crops were made.

Detection, landmarks, the whole-image fallback and the alignment are ingest's own (fexdata.ingest.faces,
fexdata.ingest.align, fexdata.ingest.worker.still_alignment); `CropRecipe.model_crop` then makes the crop
at the manifest's size and resizes it to the model's as the training loader did. Each face keeps the 2x3
transform frame -> model crop, which paste-back inverts.

Which faces are edited (`FaceChoice`): the largest (ingest's choice; a video follows it with ingest's
FaceTracker), every face (`--faces all`), or one (`--face N|x,y`). A photo's faces are numbered largest
first. In a video every face is followed by its own tracker (`FaceTracks`), and the tracks are numbered in
the order they first appear, faces that appear in the same frame from left to right.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from fexdata.errors import EditError
from fexdata.ingest.align import Alignment, frame_to_crop
from fexdata.ingest.faces import Face, FaceFinder, FaceTracker, _iou
from fexdata.ingest.recipe import CropRecipe
from fexdata.ingest.records import NO_FACE
from fexdata.ingest.worker import still_alignment

SAME_FACE = 0.5    # IoU of two tracks' boxes above which they follow the same face (the later one is dropped)
RESUME = 0.3       # IoU of a new detection with a lost track's last box above which that track resumes

_CHOICE_HINT = ("--face N picks face N (a photo's faces largest first, a video's tracks in the order they "
                "appear, left to right; 0 is the first), --face X,Y the face whose box holds that pixel")


class Rejected(Exception):
    """One input that cannot be edited; becomes a reject row with ingest's category and this reason."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category


@dataclass
class FaceCrop:
    index: int                  # face number: in a photo 0 = largest; in a video the track
    box: tuple[float, float, float, float]   # detector box, frame pixels
    landmarks: np.ndarray       # 68x2 in model-crop pixels; NaN for a whole-image fallback face
    detector: str               # hog | cnn | track | frame
    image: np.ndarray           # S x S x 3 uint8, the model's input
    transform: np.ndarray       # 2x3 frame -> model crop
    mask: np.ndarray | None = None   # paste-back mask in crop pixels, made once per face when first needed


@dataclass(frozen=True)
class FaceChoice:
    """Which faces of an input are edited: `largest`, `all`, one by number (`index`) or by a pixel (`point`).
    Its text (str) is what EditContext.faces and edit.json's settings carry."""
    mode: str                                  # largest | all | index | point
    index: int | None = None
    point: tuple[float, float] | None = None

    @classmethod
    def parse(cls, text: str) -> FaceChoice:
        """`largest`, `all`, `N` or `X,Y` (pixels of the full frame); anything else is an EditError."""
        value = str(text).strip().lower()
        if value in ("largest", "all"):
            return cls(value)
        if re.fullmatch(r"\d+", value):
            return cls("index", index=int(value))
        m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*,\s*(\d+(?:\.\d*)?)", value)
        if m:
            return cls("point", point=(float(m.group(1)), float(m.group(2))))
        raise EditError(f"--face {text!r} is neither a face number nor a point x,y", hint=_CHOICE_HINT)

    def __str__(self) -> str:
        if self.mode == "index":
            return str(self.index)
        if self.mode == "point":
            return f"{self.point[0]:g},{self.point[1]:g}"  # type: ignore[index]
        return self.mode

    @property
    def tracks_all(self) -> bool:
        """Whether a video needs every face tracked (one chosen face is numbered among all of them)."""
        return self.mode != "largest"

    def pick(self, boxes: dict[int, tuple[float, float, float, float]], where: str) -> int | None:
        """The number of the chosen face among `boxes` (number -> box): None when `index` is not there; a
        point on no face is the user's mistake (EditError naming the faces there are)."""
        if self.mode == "index":
            return self.index if self.index in boxes else None
        x, y = self.point  # type: ignore[misc]
        holding = [n for n, b in boxes.items() if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
        if not holding:
            found = "; ".join(f"face {n}: x {b[0]:.0f}-{b[2]:.0f}, y {b[1]:.0f}-{b[3]:.0f}"
                              for n, b in sorted(boxes.items()))
            raise EditError(f"--face {self}: no face holds that point in {where}",
                            hint=f"the faces there are {found}; give a point inside one, or --face N")
        # Overlapping boxes: the face whose centre is nearest the point.
        return min(holding, key=lambda n: (np.hypot((boxes[n][0] + boxes[n][2]) / 2 - x,
                                                     (boxes[n][1] + boxes[n][3]) / 2 - y), n))


def make_finder(recipe: CropRecipe, fan_weights: str | None = None) -> FaceFinder:
    return FaceFinder(recipe.detector, recipe.landmarks, fan_weights, recipe.fallback)  # type: ignore[arg-type]


def aligned_face(frame: np.ndarray, face: Face, alignment: Alignment, recipe: CropRecipe, size: int,
                 index: int = 0) -> FaceCrop:
    image, m = recipe.model_crop(frame, alignment, size)
    landmarks = frame_to_crop(face.landmarks, m).astype(np.float32)
    return FaceCrop(index, tuple(float(v) for v in face.box), landmarks, face.detector, image, m)


def still_faces(image: np.ndarray, finder: FaceFinder, recipe: CropRecipe, size: int,
                which: str = "largest") -> list[FaceCrop]:
    """The faces of a photo, largest first: only the largest (as ingest keeps), all that were detected, or
    the one `which` (a FaceChoice's text) picks, keeping its number. Raises EditError for a point on no face."""
    choice = FaceChoice.parse(which)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    faces: list[Face] = []
    if choice.mode != "largest":
        found = sorted(finder.detect_all(image, gray), key=lambda f: -_area(f[0]))
        faces = [Face(box, finder.landmarker(image, gray, box), score, len(found), finder.detector.kind)
                 for box, score in found]
    if not faces:
        face = finder.find(image, gray)   # the largest face, or the whole image per the fallback rule
        faces = [face] if face is not None else []
    numbered = list(enumerate(faces))
    if choice.mode in ("index", "point") and faces:
        picked = choice.pick({i: f.box for i, f in numbered}, "the photo")
        if picked is None:
            raise Rejected(NO_FACE, f"no face {choice.index}: the photo shows faces 0 to {len(faces) - 1}")
        numbered = [(i, f) for i, f in numbered if i == picked]
    out = []
    for i, face in numbered:
        face, al = still_alignment(face, recipe.align, recipe.zoom)
        out.append(aligned_face(image, face, al, recipe, size, i))
    return out


class _Track(FaceTracker):
    """One face followed from frame to frame: when it is lost the track ends (None) instead of jumping, as
    ingest's tracker does, to the largest face in the frame."""

    def __init__(self, finder: FaceFinder, redetect_every: int, face: Face) -> None:
        super().__init__(finder, redetect_every)
        self._prev = face
        self._learn(face)

    def _detect_full(self, image: np.ndarray, gray: np.ndarray) -> Face | None:
        return None


class FaceTracks:
    """Every face of a video, each followed by its own tracker (ingest's landmark tracking and region
    re-detection). A full-frame detection looks for new faces every `redetect_every` frames (every frame
    while none is followed). Tracks are numbered in the order they first appear, faces first seen in the
    same frame from left to right (box centre); a face found where a lost track last was (IoU > RESUME)
    resumes that track's number; two tracks on the same face (IoU > SAME_FACE) keep the lower number."""

    def __init__(self, finder: FaceFinder, redetect_every: int = 10) -> None:
        self.finder = finder
        self.redetect_every = max(1, redetect_every)
        self.count = 0                                            # numbers given so far
        self._live: dict[int, _Track] = {}
        self._last: dict[int, tuple[float, float, float, float]] = {}   # every track's latest box
        self._since_scan = 0

    def reset(self) -> None:
        """Forget the live tracks (frames outside the range); numbers and last boxes are kept."""
        self._live.clear()
        self._since_scan = 0

    def update(self, image: np.ndarray, gray: np.ndarray) -> dict[int, tuple[Face, bool]]:
        """This frame's faces: track number -> (face, cut), cut meaning no smoothing across this frame."""
        faces: dict[int, tuple[Face, bool]] = {}
        for n in sorted(self._live):
            face = self._live[n].update(image, gray)
            if face is None or any(_iou(face.box, faces[m][0].box) > SAME_FACE for m in faces):
                del self._live[n]
            else:
                faces[n] = (face, self._live[n].last_was_cut)
        self._since_scan += 1
        if not self._live or self._since_scan >= self.redetect_every:
            self._since_scan = 0
            faces.update(self._scan(image, gray, [f.box for f, _ in faces.values()]))
        for n, (face, _) in faces.items():
            self._last[n] = face.box
        return dict(sorted(faces.items()))

    def _scan(self, image: np.ndarray, gray: np.ndarray, followed: list) -> dict[int, tuple[Face, bool]]:
        found = self.finder.detect_all(image, gray)
        new: dict[int, tuple[Face, bool]] = {}
        for box, score in sorted(found, key=lambda f: ((f[0][0] + f[0][2]) / 2, f[0][1])):
            if any(_iou(box, b) > RESUME for b in followed):
                continue   # a face already followed
            lost = [(_iou(box, b), n) for n, b in self._last.items() if n not in self._live and n not in new]
            iou, n = max(lost, default=(0.0, -1))
            if iou <= RESUME:
                n, self.count = self.count, self.count + 1
            face = Face(box, self.finder.landmarker(image, gray, box), score, len(found), self.finder.detector.kind)
            self._live[n] = _Track(self.finder, self.redetect_every, face)
            new[n] = (face, True)
            followed.append(box)
        return new


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
