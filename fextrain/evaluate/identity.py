"""Identity preservation: dlib's 128-D face descriptors of each source and its edits.

dlib's ResNet descriptor puts two photos of the same person within Euclidean distance 0.6 of each other
(its documented threshold, 99.38% on LFW). An edit that keeps the person's identity should therefore
stay under 0.6 from its source.

The faces are found with dlib's HOG detector on the image itself, as a user would: a generated image in
which no face can be found is counted and reported (`generated_face_not_found`), never dropped silently.
HOG's smallest window is 80x80 pixels, so images are upscaled to `detect_size` first; a tightly cropped,
aligned face then fills most of the frame and is found with upsample 0.

The default landmark model is dlib's 5-point one (trained on dlib's own CC0 data); the 68-point model's
training set (iBUG 300-W) excludes commercial use.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from fexdata.ingest.faces import model_file
from fextrain.evaluate.grids import as_uint8_images

SAME_PERSON_THRESHOLD = 0.6
_SHAPE_MODELS = {5: "shape_predictor_5_face_landmarks.dat", 68: "shape_predictor_68_face_landmarks.dat"}
_DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


@dataclass
class Descriptors:
    """One descriptor row per input image; `found[i]` False means no face was detected (row is NaN)."""

    vectors: np.ndarray  # [N, 128] float64
    found: np.ndarray  # [N] bool


class FaceDescriber:
    """HOG detector + shape predictor + dlib ResNet descriptor, loaded once."""

    def __init__(self, landmarks: int = 5, detect_size: int = 256, upsample: int = 0) -> None:
        import dlib  # imported here so modules that only need thresholds do not load dlib

        if landmarks not in _SHAPE_MODELS:
            raise ValueError(f"landmarks must be 5 or 68, got {landmarks}")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(model_file(_SHAPE_MODELS[landmarks]))
        self.encoder = dlib.face_recognition_model_v1(model_file(_DESCRIPTOR_MODEL))
        self.detect_size = detect_size
        self.upsample = upsample

    def describe_one(self, image: np.ndarray) -> np.ndarray | None:
        """128-D descriptor of the most confident face in a uint8 RGB image, or None if none is found."""
        if self.detect_size and max(image.shape[:2]) < self.detect_size:
            scale = self.detect_size / max(image.shape[:2])
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        image = np.ascontiguousarray(image)
        boxes, scores, _ = self.detector.run(image, self.upsample, 0.0)
        if len(boxes) == 0:
            return None
        best = boxes[int(np.argmax(scores))]
        shape = self.shape(image, best)
        return np.asarray(self.encoder.compute_face_descriptor(image, shape), dtype=np.float64)

    def describe(self, images: np.ndarray | torch.Tensor, progress: bool = False) -> Descriptors:
        """Descriptors of a batch (uint8 NHWC or float NCHW in [-1, 1]); a tqdm bar when `progress`."""
        arr = as_uint8_images(images)
        vectors = np.full((len(arr), 128), np.nan)
        found = np.zeros(len(arr), dtype=bool)
        for i, img in enumerate(tqdm(arr, desc="dlib", unit="face", disable=not progress, leave=False)):
            d = self.describe_one(img)
            if d is not None:
                vectors[i], found[i] = d, True
        return Descriptors(vectors, found)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Euclidean distance between descriptor arrays (NaN where either face was not found)."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


def _summary(distances: np.ndarray, source_found: np.ndarray, generated_found: np.ndarray, threshold: float) -> dict:
    measured = source_found & generated_found
    d = distances[measured]
    return {
        "pairs": int(len(distances)),
        "source_face_not_found": int((~source_found).sum()),  # pairs whose source had no detectable face
        "generated_face_not_found": int((~generated_found).sum()),  # edits with no detectable face
        "measured": int(measured.sum()),
        "mean_distance": float(d.mean()) if len(d) else None,
        "median_distance": float(np.median(d)) if len(d) else None,
        "under_threshold": int((d < threshold).sum()),
        # share of measured pairs; pairs with a face missing on either side are in the counts above
        "share_under_threshold": float((d < threshold).mean()) if len(d) else None,
    }


def identity_report(
    source: Descriptors,
    generated: Descriptors,
    target_affects: np.ndarray,
    affects: tuple[str, ...],
    threshold: float = SAME_PERSON_THRESHOLD,
) -> dict:
    """Distances between each pair (source[i], generated[i]): overall and per target affect.

    `source_face_not_found` counts pairs whose source has no detectable face (the edit cannot be
    judged), `generated_face_not_found` edits with no detectable face; `measured` pairs have both.
    """
    dist = descriptor_distance(source.vectors, generated.vectors)
    target_affects = np.asarray(target_affects)
    report = {"threshold": threshold, **_summary(dist, source.found, generated.found, threshold)}
    report["per_affect"] = {
        name: _summary(dist[m], source.found[m], generated.found[m], threshold)
        for i, name in enumerate(affects)
        for m in [target_affects == i]
    }
    return report
