"""The crop recipe travels ingest -> manifest -> run -> edit; affect specs, targets and input lists."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fexdata.affects import AFFECTS, AffectSpecError, UnknownAffect, affect_spec, format_affect_spec
from fexdata.errors import EditError
from fexdata.ingest import IngestOptions, ingest, resolve_sources
from fexdata.ingest.recipe import CropRecipe, merge_recipes, read_recipe, recipe_of_options
from fexdata.manifest.build import BuildOptions, build_manifest
from fexdata.sample import write_image_tree
from fextrain.edit.inputs import collect_inputs
from fextrain.edit.recipe import resolve_recipe
from fextrain.edit.targets import parse_targets


def _ingest(root: Path, name: str, **options) -> Path:
    stills = write_image_tree(root / f"{name}-src", identities=2, affects=("joy", "anger"), per_affect=1, size=256)
    out = root / name
    ingest(resolve_sources([stills], log=lambda m: None), out, IngestOptions(**options), workers=1, progress=False,
           log=lambda m: None)
    return out


def test_manifest_carries_the_ingest_recipe_or_says_it_is_mixed(tmp_path):
    a = _ingest(tmp_path, "a", sizes=(128, 256), align="ffhq")
    build_manifest(a, tmp_path / "one.parquet", BuildOptions(size=128, split="none"))
    recipe = read_recipe(tmp_path / "one.parquet")
    assert recipe == {"align": "ffhq", "zoom": 1.0, "pad": "blur", "detector": "hog", "landmarks": "dlib", "sizes": [128, 256], "crop_size": 128,
                      "fallback": "auto", "smooth": 2.0, "redetect_every": 10}
    b = _ingest(tmp_path, "b", sizes=(128,), align="bbox")
    build_manifest([a, b], tmp_path / "two.parquet", BuildOptions(size=128, split="none"))
    mixed = read_recipe(tmp_path / "two.parquet")
    assert sorted(r["align"] for r in mixed["mixed"]) == ["bbox", "ffhq"]
    with pytest.raises(EditError, match="cropped in several ways"):
        resolve_recipe({"manifest": str(tmp_path / "two.parquet")}, tmp_path, 64, {})
    stated, origin = resolve_recipe({"manifest": str(tmp_path / "two.parquet")}, tmp_path, 64, {"align": "bbox"})
    assert stated.align == "bbox" and stated.crop_size == 128 and origin == "stated on the command line"


def test_run_config_recipe_comes_first_and_stated_settings_override():
    config = {"recipe": {"align": "bbox", "sizes": [256], "crop_size": 256}, "manifest": "/nowhere.parquet"}
    recipe, origin = resolve_recipe(config, Path("/nowhere"), 64, {"detector": None})
    assert (recipe.align, recipe.crop_size, origin) == ("bbox", 256, "the run's config")
    recipe, origin = resolve_recipe(config, Path("/nowhere"), 64, {"detector": "cnn"})
    assert recipe.detector == "cnn" and recipe.align == "bbox" and "detector stated" in origin
    with pytest.raises(EditError) as err:
        resolve_recipe({"manifest": "/nowhere.parquet"}, Path("/nowhere"), 64, {})
    assert "--align ffhq|bbox" in err.value.hint


def test_merge_recipes():
    # An ingest.json from before --zoom and --pad: those crops were framed at zoom 1 and padded by reflection.
    assert {k: v for k, v in recipe_of_options({"sizes": [256, 128]}).items() if k in ("zoom", "pad", "crop_size")} \
        == {"zoom": 1.0, "pad": "reflect", "crop_size": 256}
    r = CropRecipe().to_dict()
    assert merge_recipes([r, dict(r)], 128)["crop_size"] == 128
    assert merge_recipes([r, None], 128) is None and merge_recipes([], 128) is None


def test_model_crop_composes_the_resize_into_the_transform():
    import cv2

    from fexdata.ingest.align import Alignment

    rng = np.random.default_rng(0)
    frame = cv2.resize(rng.integers(0, 256, (15, 20, 3), dtype=np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC)
    recipe = CropRecipe(sizes=(128, 256), crop_size=128)
    img, m = recipe.model_crop(frame, Alignment(200.0, 150.0, 80.0, 10.0), 64)
    assert img.shape == (64, 64, 3)
    # Warping the frame straight through the returned transform gives the same picture: the transform
    # says where the model's pixels came from, through the ingest warp and both downscales.
    direct = cv2.warpAffine(frame, m, (64, 64), flags=cv2.INTER_LINEAR)
    assert np.abs(direct.astype(int) - img.astype(int)).mean() < 1.5
    off = m.copy()
    off[:, 2] += 1.0
    assert np.abs(cv2.warpAffine(frame, off, (64, 64)).astype(int) - img.astype(int)).mean() > 2 * np.abs(
        direct.astype(int) - img.astype(int)).mean()


def test_affect_spec_grammar():
    assert affect_spec("joy") == (0, 0, 0, 1, 0, 0, 0)
    assert affect_spec("0.5*happy + AN") == (1, 0, 0, 0.5, 0, 0, 0)
    assert affect_spec("joy+joy") == (0, 0, 0, 2, 0, 0, 0)
    assert format_affect_spec(affect_spec("sadness+0.25*anger")) == "0.25*anger+sadness"
    with pytest.raises(AffectSpecError):
        affect_spec("2**joy")
    for torn in ("joy+", "+joy", "joy++anger", " + "):
        with pytest.raises(AffectSpecError, match="empty"):
            affect_spec(torn)
    with pytest.raises(UnknownAffect):
        affect_spec("grumpy")
    with pytest.raises(AffectSpecError, match="not one of"):
        affect_spec("contempt", AFFECTS)


def test_targets_all_sweep_and_schedule(tmp_path):
    names = [t.name for t in parse_targets(["all"], (1.0,), AFFECTS)]
    assert names == list(AFFECTS)
    sweep = parse_targets(["0.5*joy", "joy"], (0.0, 2.0), AFFECTS)
    assert [t.name for t in sweep] == ["0.5xjoy@0", "0.5xjoy@2", "joy@0", "joy@2"]
    assert sweep[1].vector == (0, 0, 0, 1.0, 0, 0, 0)
    sheet = tmp_path / "plan.csv"
    sheet.write_text("affect,start,end\nhappy,0,1\nsad,2,3\n")
    (sched,) = parse_targets([str(sheet)], (1.0,), AFFECTS)
    assert sched.name == "schedule-plan" and sched.scheduled
    assert sched.vector_at(0.5)[3] == 1 and sched.vector_at(1.5) is None and sched.vector_at(2.0)[5] == 1
    sheet.write_text("affect,start,end\njoy,0,2\nanger,1,3\n")
    with pytest.raises(EditError, match="overlaps"):
        parse_targets([str(sheet)], (1.0,), AFFECTS)
    with pytest.raises(EditError, match="no target"):
        parse_targets([], (1.0,), AFFECTS)


def test_inputs_from_folders_files_and_lists(tmp_path):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    for rel in ("photos/a/x.jpg", "photos/b.png", "photos/a/x.png", "photos/notes.txt", "photos/.hidden/y.png",
                "clip.mp4", "rejects.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "list.csv").write_text("path,affect\nphotos/b.png,sad\nclip.mp4,\nphotos/b.png,joy\nother.png,meh\n")
    items, rejects = collect_inputs([tmp_path / "photos", tmp_path / "clip.mp4", tmp_path / "rejects.png",
                                     tmp_path / "list.csv"])
    keys = {it.key: (it.kind, it.affect) for it in items}
    assert len(items) == 5   # the folder's 3 media files, the clip, rejects.png; list rows repeat files already seen
    assert keys["photos/b"] == ("image", None) and keys["clip"] == ("video", None) and keys["_rejects"][0] == "image"
    assert sum(k.startswith("photos/a/x-") for k in keys) == 2        # x.jpg and x.png: kept apart by a hash
    assert [r["reason"] for r in rejects] == [f"{tmp_path / 'list.csv'} row 4: unknown affect label 'meh'; known: "
                                              + ", ".join(AFFECTS + ("contempt",)) + " (and aliases such as AN, happy, surprised)"]
    with pytest.raises(EditError, match="no such file"):
        collect_inputs([tmp_path / "missing"])
