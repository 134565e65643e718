"""What editing one input needs (shared by photos and videos); `Rejected` (from faces.py) rejects one input."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fexdata.ingest.faces import FaceFinder
from fexdata.ingest.recipe import CropRecipe
from fextrain.edit.faces import FaceCrop, Rejected  # noqa: F401 (Rejected: edit's one rejection, imported from here)
from fextrain.edit.model import BatchModel
from fextrain.edit.paste import face_mask, match_colour, paste, paste_warp
from fextrain.edit.source import SourceAffects

# Videos: weight of the newest frame in the per-track average of what the model adds to a face (`fex edit --steady`;
# docs/edit.md, "Videos", has the measurements). Lower is steadier and lags more: about (1 - w) / w frames.
STEADY = 0.2


@dataclass
class EditContext:
    out: Path
    recipe: CropRecipe
    finder: FaceFinder
    model: BatchModel
    sources: SourceAffects
    affects: tuple[str, ...]
    size: int                   # the model's input side
    faces: str = "largest"      # largest | all (photos)
    colour: bool = False        # match the generated face's mean colour to the input's
    keep_detail: bool = False   # add only the generator's coarse change, keeping the input's fine detail
    warp: bool = False          # a warping model's edit applied to the full-resolution face (paste_warp)
    crops: bool = False         # also write aligned input and output crops
    max_pixels: int = 100_000_000
    start: float | None = None  # videos: edit only [start, end) seconds
    end: float | None = None
    steady: float = STEADY      # videos: weight of the newest frame in the per-track average of the edit
    progress: bool = True

    def paste_faces(self, frame: np.ndarray, faces: list[FaceCrop], generated: list[np.ndarray],
                    fields: list[np.ndarray] | None = None) -> np.ndarray:
        """A copy of `frame` with every generated crop pasted back over its face; with `fields` (a warping
        model's, BatchModel.fields), each face is warped at full resolution instead."""
        out = frame.copy()
        for i, (face, gen) in enumerate(zip(faces, generated)):
            if face.mask is None:
                face.mask = face_mask(face.landmarks, self.size)
            if fields is not None:
                paste_warp(out, fields[i], face.transform, face.mask)
                continue
            if self.colour:
                gen = match_colour(gen, face.image, face.mask)
            paste(out, gen, face.transform, face.mask, face.image if self.keep_detail else None)
        return out
