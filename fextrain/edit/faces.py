"""Faces in a user's frames, found and aligned exactly as the run's training crops were made.

Detection, landmarks, the whole-image fallback and the alignment are ingest's own (fexdata.ingest.faces,
fexdata.ingest.align, fexdata.ingest.worker.still_alignment); `CropRecipe.model_crop` then makes the crop
at the manifest's size and resizes it to the model's as the training loader did. Each face keeps the 2x3
transform frame -> model crop, which paste-back inverts.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fexdata.ingest.align import Alignment, frame_to_crop
from fexdata.ingest.faces import Face, FaceFinder
from fexdata.ingest.recipe import CropRecipe
from fexdata.ingest.worker import still_alignment


@dataclass
class FaceCrop:
    index: int                  # face number in the frame, 0 = largest
    box: tuple[float, float, float, float]   # detector box, frame pixels
    landmarks: np.ndarray       # 68x2 in model-crop pixels; NaN for a whole-image fallback face
    detector: str               # hog | cnn | track | frame
    image: np.ndarray           # S x S x 3 uint8, the model's input
    transform: np.ndarray       # 2x3 frame -> model crop
    mask: np.ndarray | None = None   # paste-back mask in crop pixels, made once per face when first needed


def make_finder(recipe: CropRecipe, fan_weights: str | None = None) -> FaceFinder:
    return FaceFinder(recipe.detector, recipe.landmarks, fan_weights, recipe.fallback)  # type: ignore[arg-type]


def aligned_face(frame: np.ndarray, face: Face, alignment: Alignment, recipe: CropRecipe, size: int,
                 index: int = 0) -> FaceCrop:
    image, m = recipe.model_crop(frame, alignment, size)
    landmarks = frame_to_crop(face.landmarks, m).astype(np.float32)
    return FaceCrop(index, tuple(float(v) for v in face.box), landmarks, face.detector, image, m)


def still_faces(image: np.ndarray, finder: FaceFinder, recipe: CropRecipe, size: int,
                which: str = "largest") -> list[FaceCrop]:
    """The faces of a photo, largest first: only the largest (as ingest keeps) or all that were detected."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    faces: list[Face] = []
    if which == "all":
        found = sorted(finder.detect_all(image, gray), key=lambda f: -_area(f[0]))
        faces = [Face(box, finder.landmarker(image, gray, box), score, len(found), finder.detector.kind)
                 for box, score in found]
    if not faces:
        face = finder.find(image, gray)   # the largest face, or the whole image per the fallback rule
        faces = [face] if face is not None else []
    out = []
    for i, face in enumerate(faces):
        face, al = still_alignment(face, recipe.align, recipe.zoom)
        out.append(aligned_face(image, face, al, recipe, size, i))
    return out


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
