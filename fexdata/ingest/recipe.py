"""The crop recipe: how a model's training faces were found and aligned, carried ingest -> manifest -> run.

A model only edits faces framed the way its training crops were: the same detector and landmarks, the
same alignment (`ffhq` or `bbox`), the same crop size (and the larger size it was area-downscaled from),
the same fallback for frames without a face and, for videos, the same tracking and smoothing. `fex ingest`
records its options in OUT/ingest.json; `fex build-manifest` puts the recipe of the ingests it merges into
the manifest's metadata (`fex.recipe`: the recipe, or `{"mixed": [...]}` when they disagree); a training
run copies it into its config (`recipe`), and `fex edit` reads it from there (or from the run's manifest).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fexdata.ingest.align import DEFAULT_PAD, Alignment, crop
from fexdata.packed_cache import resize_crop

MIXED = "mixed"  # key of a recipe value made of several disagreeing recipes


@dataclass(frozen=True)
class CropRecipe:
    align: str = "ffhq"                 # ffhq | bbox
    zoom: float = 1.0                   # > 1: the alignment's quad shrunk about its centre (tighter crops)
    pad: str = DEFAULT_PAD              # how the crop was filled where it left the frame (blur | reflect | ...)
    detector: str = "hog"               # hog | cnn
    landmarks: str = "dlib"             # dlib | fan
    sizes: tuple[int, ...] = (256,)     # every size ingest cropped: smaller ones are area-downscaled from the largest
    crop_size: int = 256                # the size the manifest (and so the model) was given
    fallback: str = "auto"              # auto | frame | reject
    smooth: float = 2.0                 # videos: Gaussian sigma of the alignment over frames
    redetect_every: int = 10            # videos: tracking re-checked by detection this often

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CropRecipe":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "sizes" in values:
            values["sizes"] = tuple(int(s) for s in values["sizes"])
        recipe = cls(**values)
        if recipe.crop_size not in recipe.sizes:
            recipe = cls(**{**values, "sizes": tuple(sorted({*recipe.sizes, recipe.crop_size}))})
        return recipe

    def replace(self, **changes: Any) -> "CropRecipe":
        return CropRecipe.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    def model_crop(self, frame: np.ndarray, alignment: Alignment, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(size x size x 3 uint8 crop, 2x3 frame -> crop transform) exactly as a training image was made.

        Ingest warps the largest of its sizes and area-downscales the others (fexdata.ingest.align.crop);
        the training loader then resizes the manifest's crop to the model's size (resize_crop).
        """
        img, m = crop(frame, alignment, self.sizes, self.pad)[self.crop_size]  # type: ignore[arg-type]
        if img.shape[0] == size:
            return img, m
        s = size / img.shape[0]
        m = m * s
        m[:, 2] += 0.5 * s - 0.5  # cv2.resize maps pixel centres: x_out = s (x_in + 0.5) - 0.5
        return resize_crop(img, size), m


def recipe_of_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe part of ingest options (an IngestOptions fingerprint, as in OUT/ingest.json)."""
    sizes = sorted(int(s) for s in options.get("sizes") or (256,))
    # Ingests from before fex had --zoom and --pad framed at zoom 1 and padded by plain reflection.
    return CropRecipe(align=options.get("align", "ffhq"), zoom=float(options.get("zoom", 1.0)),
                      pad=options.get("pad", "reflect"), detector=options.get("detector", "hog"),
                      landmarks=options.get("landmarks", "dlib"), sizes=tuple(sizes), crop_size=sizes[-1],
                      fallback=options.get("fallback", "auto"), smooth=float(options.get("smooth", 2.0)),
                      redetect_every=int(options.get("redetect_every", 10))).to_dict()


def ingest_recipe(ingest_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recipe an ingest folder was made with (from its ingest.json), or None when it does not say."""
    path = Path(ingest_dir) / "ingest.json"
    try:
        options = json.loads(path.read_text()).get("options")
    except (OSError, ValueError):
        return None
    return recipe_of_options(options) if isinstance(options, dict) else None


def merge_recipes(recipes: list[dict[str, Any] | None], crop_size: int) -> dict[str, Any] | None:
    """One recipe for a manifest built from several ingests at `crop_size`.

    None when any ingest does not say how it cropped; `{"mixed": [...]}` when they disagree (their faces
    were framed differently, so no single recipe reproduces them).
    """
    if not recipes or any(r is None for r in recipes):
        return None
    at_size = [{**r, "crop_size": int(crop_size)} for r in recipes]
    distinct = [json.loads(s) for s in sorted({json.dumps(r, sort_keys=True) for r in at_size})]
    return distinct[0] if len(distinct) == 1 else {MIXED: distinct}


def read_recipe(manifest_path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest's crop recipe (`fex.recipe` metadata): a recipe dict, `{"mixed": [...]}`, or None.

    A training run stores this in its config (`recipe`), so the run keeps saying how its faces were
    cropped even when the manifest moves.
    """
    from fexdata.manifest.io import read_meta

    return read_meta(manifest_path).get("recipe")
