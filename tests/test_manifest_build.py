"""build_manifest / read_manifest: merge, paths, schema, determinism, bad input (no partial files)."""
from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from _manifest_fixtures import write_ingest
from fexdata.affects import AFFECTS
from fexdata.errors import FexError
from fexdata.ingest import RECORDS
from fexdata.manifest import MANIFEST, SCHEMA_VERSION, ManifestError, build_manifest, read_manifest, read_meta
from fexdata.manifest.build import BuildOptions


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_merge_two_ingest_outputs_paths_relative_to_manifest(tmp_path):
    studio = write_ingest(tmp_path / "data" / "studio", identities=3, frames=6)
    assert set(pd.read_parquet(studio / "records").columns) <= set(RECORDS.names)  # the fixture invents nothing
    write_ingest(tmp_path / "data" / "jaffe", identities=3, kind="still", source="jaffe")
    out = tmp_path / "manifest.parquet"
    report = build_manifest([tmp_path / "data" / "studio", tmp_path / "data" / "jaffe"], out)
    df, meta = read_manifest(out)
    assert tuple(df.columns) == MANIFEST.names
    assert meta["schema_version"] == SCHEMA_VERSION and tuple(meta["affects"]) == AFFECTS
    assert report.rows_out == len(df) == 3 * 7 * 6 + 3 * 7 * 2
    assert set(df["ingest"]) == {"data/studio", "data/jaffe"}
    assert all((tmp_path / p).is_file() for p in df["image"])       # relative to the manifest's folder
    assert df["image"].is_unique and not df["image"].str.startswith("/").any()
    assert df["identity"].str.contains(":").all()
    assert (df["affect_index"] == df["affect"].map(AFFECTS.index)).all()
    assert meta["identities"] == sorted(df["identity"].unique())
    assert (df["identity_index"] == df["identity"].map(meta["identities"].index)).all()
    assert df["frame"].dtype == "Int64" and df.loc[df["source"] == "jaffe", "frame"].isna().all()
    # landmarks are stored in crop pixels: the template face sits inside the 32 px crop
    lm = np.stack(df["landmarks"].to_numpy())
    assert lm.shape == (len(df), 136) and lm.min() > -1 and lm.max() < 33


def test_same_inputs_and_seed_give_identical_bytes(tmp_path):
    write_ingest(tmp_path / "a", identities=5, frames=8)
    kw = dict(split="identity", folds=2, seed=3, min_gap="2f")
    build_manifest([tmp_path / "a"], tmp_path / "m1.parquet", BuildOptions(**kw))
    build_manifest([tmp_path / "a"], tmp_path / "m2.parquet", BuildOptions(**kw))
    assert sha(tmp_path / "m1.parquet") == sha(tmp_path / "m2.parquet")
    build_manifest([tmp_path / "a"], tmp_path / "m3.parquet", BuildOptions(**{**kw, "seed": 4}))
    a, _ = read_manifest(tmp_path / "m1.parquet")
    b, _ = read_manifest(tmp_path / "m3.parquet")
    assert not a["split"].equals(b["split"]) or not a["fold"].equals(b["fold"])


@pytest.mark.parametrize("kind,split", [("video", "identity"), ("still", "frame"), ("video", "frame")])
def test_record_part_order_does_not_change_bytes(tmp_path, kind, split):
    src = write_ingest(tmp_path / "a", identities=3, frames=4, kind=kind, stills=4)
    build_manifest([src], tmp_path / "m1.parquet", BuildOptions(split=split, folds=3))
    part = src / "records" / "part-0000.parquet"
    rec = pd.read_parquet(part)
    part.unlink()
    half = len(rec) // 2  # same rows, reversed and spread over two parts
    rec.iloc[half:][::-1].to_parquet(src / "records" / "part-a.parquet", index=False)
    rec.iloc[:half][::-1].to_parquet(src / "records" / "part-b.parquet", index=False)
    build_manifest([src], tmp_path / "m2.parquet", BuildOptions(split=split, folds=3))
    assert sha(tmp_path / "m1.parquet") == sha(tmp_path / "m2.parquet")


def test_duplicate_records_are_counted_once(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=3)
    rec = pd.read_parquet(src / "records")
    rec.iloc[:5].to_parquet(src / "records" / "part-0001.parquet", index=False)  # e.g. a unit redone on resume
    r = build_manifest([src], tmp_path / "m.parquet")
    assert r.dropped["duplicate record of the same crop"] == 5 and r.rows_out == len(rec)
    assert r.rows_in == len(rec) + 5


def test_affects_option_and_contempt(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=3, affects=AFFECTS + ("contempt",))
    r = build_manifest([src], tmp_path / "m.parquet")
    assert r.dropped["affect not selected"] == 3 * 3
    df, meta = read_manifest(tmp_path / "m.parquet")
    assert "contempt" not in set(df["affect"])
    build_manifest([src], tmp_path / "all.parquet", BuildOptions(affects="all"))
    df, meta = read_manifest(tmp_path / "all.parquet")
    assert meta["affects"][-1] == "contempt" and (df.loc[df.affect == "contempt", "affect_index"] == 7).all()
    build_manifest([src], tmp_path / "two.parquet", BuildOptions(affects="joy,AN"))
    df, meta = read_manifest(tmp_path / "two.parquet")
    assert meta["affects"] == ["anger", "joy"] and set(df["affect_index"]) == {0, 1}


def _no_manifest(tmp_path):
    return not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".*.tmp"))


def test_bad_input_without_records(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no records") as err:
        build_manifest([tmp_path / "empty"], tmp_path / "m.parquet")
    assert "fex ingest" in err.value.hint
    assert _no_manifest(tmp_path)


def test_bad_input_incompatible_schema(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=2, mutate=lambda d: d.drop(columns=["item"]))
    with pytest.raises(ManifestError, match="lack column.*item.*incompatible") as err:
        build_manifest([src], tmp_path / "m.parquet")
    assert "re-run `fex ingest`" in err.value.hint
    src = write_ingest(tmp_path / "b", identities=3, frames=2,
                       mutate=lambda d: d.assign(time=["x"] * len(d)))
    with pytest.raises(ManifestError, match="'time' has type"):
        build_manifest([src], tmp_path / "m.parquet")
    assert _no_manifest(tmp_path)


def test_mixed_crop_sizes_need_size(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=2)
    rec = pd.read_parquet(src / "records")
    big = rec.assign(crop_size=64, image=rec["image"].str.replace("/32/", "/64/"))
    for p in big["image"]:
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        (src / p).write_bytes((src / p.replace("/64/", "/32/")).read_bytes())
    big.to_parquet(src / "records" / "part-0001.parquet", index=False)
    with pytest.raises(ManifestError, match="several sizes"):
        build_manifest([src], tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="no records of crop size 128"):
        build_manifest([src], tmp_path / "m.parquet", BuildOptions(size=128))
    assert _no_manifest(tmp_path)
    r = build_manifest([src], tmp_path / "m.parquet", BuildOptions(size=64))
    assert r.crop_size == 64 and r.other_sizes == len(rec)
    assert (read_manifest(tmp_path / "m.parquet")[0]["crop_size"] == 64).all()


def test_empty_after_filters_and_unsatisfiable_split(tmp_path):
    src = write_ingest(tmp_path / "a", identities=2, frames=3)
    with pytest.raises(ManifestError, match="no records left after filtering.*detector score") as err:
        build_manifest([src], tmp_path / "m.parquet", BuildOptions(min_score=99))
    assert "--min-score" in err.value.hint
    with pytest.raises(ManifestError, match="needs at least 3 identities") as err:
        build_manifest([src], tmp_path / "m.parquet", BuildOptions(split="identity"))
    assert "--split frame" in err.value.hint
    with pytest.raises(ManifestError, match="--folds 3 needs at least 3 identities"):
        build_manifest([src], tmp_path / "m.parquet", BuildOptions(split="frame", folds=3))
    with pytest.raises(ManifestError, match="--fractions"):
        build_manifest([src], tmp_path / "m.parquet", BuildOptions(fractions="0.5,0.2"))
    assert _no_manifest(tmp_path)


def test_manifest_outside_ingest_ancestor_is_refused(tmp_path):
    src = write_ingest(tmp_path / "data" / "a", identities=3, frames=2)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ManifestError, match=r"not inside the manifest's folder") as err:
        build_manifest([src], tmp_path / "elsewhere" / "m.parquet")
    assert err.value.hint.endswith(f"--out {tmp_path.resolve()}/manifest.parquet")
    with pytest.raises(ManifestError, match="more than once"):
        build_manifest([src, tmp_path / "data" / "a" / "."], tmp_path / "m.parquet")


def test_escaping_record_path_is_refused(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=2)
    part = src / "records" / "part-0000.parquet"
    rec = pd.read_parquet(part)
    rec.loc[0, "image"] = "../../etc/passwd"
    rec.to_parquet(part, index=False)
    with pytest.raises(ManifestError, match="leave the ingest folder"):
        build_manifest([src], tmp_path / "m.parquet")


def test_missing_crops_fail_or_are_dropped(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=3)
    victim = sorted((src / "crops").rglob("*.png"))[0]
    victim.unlink()
    with pytest.raises(ManifestError, match="1 crop files are missing") as err:
        build_manifest([src], tmp_path / "m.parquet")
    assert "--drop-missing" in err.value.hint
    r = build_manifest([src], tmp_path / "m.parquet", BuildOptions(drop_missing=True))
    assert r.dropped["crop file missing (--drop-missing)"] == 1 and r.rows_out == 3 * 7 * 3 - 1


def test_failed_build_keeps_previous_manifest(tmp_path):
    src = write_ingest(tmp_path / "a", identities=3, frames=2)
    out = tmp_path / "m.parquet"
    build_manifest([src], out)
    before = sha(out)
    with pytest.raises(ManifestError):
        build_manifest([src], out, BuildOptions(min_score=99))
    assert sha(out) == before and not list(tmp_path.glob(".*.tmp"))


def test_options_are_one_checked_frozen_value_whose_asdict_the_manifest_records(tmp_path):
    opts = BuildOptions(affects="joy,AN", min_gap="10 frames", split="frame", fractions="0.5,0.5", guard="3f", seed=2)
    assert opts.affects == ("anger", "joy") and str(opts.min_gap) == "10f" and str(opts.guard) == "3f"
    assert opts.fractions == (0.5, 0.0, 0.5) and dataclasses.replace(opts) == opts  # resolving twice changes nothing
    assert BuildOptions().guard is None and BuildOptions().fractions == (0.8, 0.1, 0.1)  # guard: frame split only
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 3  # type: ignore[misc]
    for bad, said in [(dict(balance="even"), "--balance 'even'"), (dict(split="time"), "--split 'time'"),
                      (dict(cap=5), "--cap 5 with --balance weight"), (dict(ramp=0.0), "--ramp 0"),
                      (dict(max_pad=1.5), "--max-pad 1.5"), (dict(min_gap="soon"), "--min-gap 'soon'"),
                      (dict(split="frame", guard="x"), "--guard 'x'"), (dict(affects="bored"), "bored")]:
        with pytest.raises(FexError, match=re.escape(said)):  # at construction, before any file is read
            BuildOptions(**bad)
    src = write_ingest(tmp_path / "a", identities=3, frames=12)
    build_manifest([src], tmp_path / "m.parquet", opts)
    meta = read_meta(tmp_path / "m.parquet")
    assert meta["options"] == opts.asdict() and "check_files" not in meta["options"]
    assert meta["options"]["guard"] == meta["split"]["guard"] == "3f" and meta["options"]["affects"] == ["anger", "joy"]
    assert "ramp" not in meta["options"] and "partial" not in meta["options"]  # recorded only when used
