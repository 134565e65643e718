"""The run's crop recipe (how its training faces were found and aligned), and the manifest it was trained on.

Looked up in order: the run's config (`recipe`, copied from the manifest at training time), then the
manifest the config names (`fex.recipe` metadata). Options the user states (`--align`, `--detector`, ...)
override single settings; when neither place knows the recipe, they are the only way to go on, and the
error says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fexdata.errors import EditError
from fexdata.ingest.recipe import MIXED, CropRecipe, read_recipe

STATE_IT = ("state how the training crops were made, with the `fex ingest` options they were made with: "
            "--align ffhq|bbox --detector hog|cnn --crop-size N (and --zoom, --pad, --ingest-sizes, --fallback "
            "if not the defaults)")


def run_manifest(config: Mapping[str, Any], run_path: Path) -> Path | None:
    """The manifest a run was trained on, if it can still be found (as written, or relative to the run)."""
    given = config.get("manifest")
    if not given:
        return None
    run_dir = run_path if run_path.is_dir() else run_path.parent
    for candidate in (Path(given), run_dir / given, run_dir.parent / given):
        if candidate.is_file():
            return candidate
    return None


def resolve_recipe(config: Mapping[str, Any], run_path: Path, model_size: int,
                   overrides: Mapping[str, Any]) -> tuple[CropRecipe, str]:
    """(recipe, where it came from). Raises EditError when it is unknown and not stated."""
    stated = {k: v for k, v in overrides.items() if v is not None}
    value, origin = config.get("recipe") or None, "the run's config"
    manifest = run_manifest(config, run_path)
    crop_size = None
    if value is None and manifest is not None:
        from fexdata.manifest.io import read_meta

        value, origin = read_recipe(manifest), f"manifest {manifest}"
        crop_size = read_meta(manifest).get("crop_size")
    if isinstance(value, Mapping) and MIXED in value:
        if not stated:
            kinds = "; ".join(", ".join(f"{k}={v}" for k, v in r.items() if k != "crop_size") for r in value[MIXED])
            raise EditError(f"the run's training faces were cropped in several ways ({kinds}), so no one "
                            "recipe reproduces them", hint=STATE_IT)
        value = None
    if value is None:
        if not stated:
            where = f"its manifest {manifest}" if manifest else "its manifest (not found)"
            raise EditError(f"{run_path}: the run does not say how its training faces were cropped (neither its "
                            f"config nor {where} holds a crop recipe: made before fex recorded it)", hint=STATE_IT)
        size = int(stated.get("crop_size") or crop_size or model_size)
        base = CropRecipe(sizes=tuple(stated.get("sizes") or (size,)), crop_size=size)
        return base.replace(**stated), "stated on the command line"
    recipe = CropRecipe.from_dict(value)
    if stated:
        recipe, origin = recipe.replace(**stated), f"{origin}, with {', '.join(sorted(stated))} stated"
    return recipe, origin

