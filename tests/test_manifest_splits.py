"""Split modes and folds: no leakage, every affect in every split, determinism; the leakage checks fail when they should."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from _manifest_fixtures import write_ingest
from fexdata.affects import AFFECTS
from fexdata.manifest import ManifestError, build_manifest, check_manifest, read_manifest
from fexdata.manifest.build import BuildOptions
from fexdata.manifest.splits import _allocate, frame_axis, parse_fractions, split_by_identity


def sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ten_people(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    write_ingest(root / "a", identities=10, frames=20)
    return root


def test_identity_split_is_subject_independent_and_covers_affects(ten_people):
    out = ten_people / "id.parquet"
    build_manifest([ten_people / "a"], out, BuildOptions(split="identity", seed=1))
    df, meta = read_manifest(out)
    assert meta["split"]["mode"] == "identity"
    assert (df.groupby("identity")["split"].nunique() == 1).all()
    per_split = df.groupby("split")["identity"].nunique().to_dict()
    assert per_split == {"train": 8, "val": 1, "test": 1}
    for s in ("train", "val", "test"):
        assert set(df.loc[df.split == s, "affect"]) == set(AFFECTS)
    assert check_manifest(df, meta, out.parent).ok
    build_manifest([ten_people / "a"], ten_people / "id2.parquet", BuildOptions(split="identity", seed=1))
    assert sha(out) == sha(ten_people / "id2.parquet")


def test_identity_split_places_rare_affects_in_every_split():
    # fear is shown by only 3 of 10 identities: each split must still get one of them
    rows = [(f"s:{i}", a) for i in range(10) for a in ("joy", "neutral")] + [(f"s:{i}", "fear") for i in (2, 5, 7)]
    df = pd.DataFrame(rows, columns=["identity", "affect"])
    for seed in range(20):
        split, warnings = split_by_identity(df, (0.8, 0.1, 0.1), seed, AFFECTS)
        got = pd.DataFrame({"split": split, "affect": df["affect"]})
        assert set(got.loc[got.affect == "fear", "split"]) == {"train", "val", "test"}, seed
        assert not warnings
    # shown by one identity only: it goes to train and the others are reported
    df1 = df[(df.affect != "fear") | (df.identity == "s:2")]
    split, warnings = split_by_identity(df1, (0.8, 0.1, 0.1), 0, AFFECTS)
    assert split[(df1.affect == "fear").to_numpy()][0] == "train"
    assert any("val has no fear" in w for w in warnings)


def test_frame_split_blocks_do_not_straddle(ten_people):
    out = ten_people / "frame.parquet"
    r = build_manifest([ten_people / "a"], out, BuildOptions(split="frame", blocks=5, guard="0"))
    df, meta = read_manifest(out)
    assert set(df["split"]) == {"train", "test"}
    assert df["block"].notna().all() and df["block"].between(0, 4).all()
    # whole blocks per split, 70/30 of the blocks of every clip, every identity x affect in both
    assert (df.groupby(["item", "block"])["split"].nunique() == 1).all()
    per_item = df.groupby(["item", "split"])["block"].nunique().unstack()
    assert (per_item["train"] == 4).all() and (per_item["test"] == 1).all()  # 3.5 -> 4 by largest remainder
    assert (df.groupby(["identity", "affect"])["split"].nunique() == 2).all()
    assert check_manifest(df, meta, out.parent).ok
    build_manifest([ten_people / "a"], ten_people / "frame2.parquet", BuildOptions(split="frame", blocks=5, guard="0"))
    assert sha(out) == sha(ten_people / "frame2.parquet")


def test_frame_split_guard_leaves_a_gap(ten_people):
    out = ten_people / "guard.parquet"
    r = build_manifest([ten_people / "a"], out, BuildOptions(split="frame", blocks=2, guard="3f", fractions="0.5,0.5"))
    df, _ = read_manifest(out)
    assert r.dropped["inside a split guard gap (--guard)"] == 10 * 7 * 2     # frames 10, 11 of each clip
    for _, g in df.groupby("item"):
        g = g.sort_values("frame")
        change = g["split"].ne(g["split"].shift()) & g["frame"].shift().notna()
        gaps = (g["frame"] - g["frame"].shift())[change]
        assert len(gaps) == 1 and (gaps.astype(int) >= 3).all()


def test_frame_split_stills_are_assigned_individually(tmp_path):
    src = write_ingest(tmp_path / "s", identities=2, kind="still", stills=10, source="jaffe")
    build_manifest([src], tmp_path / "m.parquet", BuildOptions(split="frame"))
    df, _ = read_manifest(tmp_path / "m.parquet")
    counts = df.groupby(["identity", "affect", "split"]).size().unstack()
    assert (counts["train"] == 7).all() and (counts["test"] == 3).all()
    assert df["block"].isna().all()


def test_folds_are_identity_disjoint_and_balanced(ten_people):
    out = ten_people / "folds.parquet"
    r = build_manifest([ten_people / "a"], out, BuildOptions(split="identity", folds=5))
    df, meta = read_manifest(out)
    assert (df.groupby("identity")["fold"].nunique() == 1).all()
    sizes = df.groupby("fold").size()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4] and sizes.nunique() == 1   # 2 identities each
    assert r.checks.fold_sizes == sizes.to_dict()


def test_leakage_is_detected(ten_people):
    df, meta = read_manifest(ten_people / "id.parquet")
    leaked = df.copy()
    victim = leaked["identity"].iloc[0]
    first = leaked.index[leaked.identity == victim][0]
    leaked.loc[first, "split"] = "test" if leaked.loc[first, "split"] != "test" else "train"
    res = check_manifest(leaked, meta, ten_people, check_files=False)
    assert not res.ok and any("leakage" in p and victim in p for p in res.problems)

    df, meta = read_manifest(ten_people / "frame.parquet")
    one = df.copy()
    rows = one.index[(one["item"] == one["item"].iloc[0]) & (one["block"] == 0)]
    one.loc[rows[0], "split"] = "test" if one.loc[rows[0], "split"] == "train" else "train"
    res = check_manifest(one, meta, ten_people, check_files=False)
    assert any("hold frames of two splits" in p for p in res.problems)

    over = df.copy()
    item = over["item"].iloc[0]
    sel = over["item"] == item
    blocks = over.loc[sel].groupby("block")["split"].first()
    a = blocks.index[blocks == "train"][0]
    b = blocks.index[blocks == "test"][0]
    over.loc[sel & (over.block == b), "time"] += (a - b) * 0.1  # slide a test block over a train block
    res = check_manifest(over, meta, ten_people, check_files=False)
    assert any("overlap a block of another split" in p for p in res.problems)


def test_fractions_and_allocation():
    assert parse_fractions("0.7,0.3", "frame") == (0.7, 0.0, 0.3)
    assert parse_fractions(None, "identity") == (0.8, 0.1, 0.1)
    with pytest.raises(ManifestError):
        parse_fractions("0.9,0.9", "identity")
    alloc = _allocate(np.array([1, 2, 3, 10, 7]), (0.8, 0.1, 0.1))
    assert (alloc.sum(axis=1) == [1, 2, 3, 10, 7]).all()
    assert alloc[2].tolist() == [1, 1, 1] and alloc[3].tolist() == [8, 1, 1]


def test_frame_axis_falls_back_to_frame_numbers():
    df = pd.DataFrame({"time": [np.nan, 0.5, np.nan], "frame": pd.array([4, 5, None], dtype="Int64")})
    t = frame_axis(df)
    assert t[0] == 4 and t[1] == 0.5 and np.isnan(t[2])
