"""Balancing: cap keeps evenly spaced rows per cell; weight equalises identities and affects."""
from __future__ import annotations

import numpy as np
import pandas as pd

from _manifest_fixtures import write_ingest
from fexdata.manifest import build_manifest, read_manifest
from fexdata.manifest.build import BuildOptions
from fexdata.manifest.balance import balance_weights, cap_cells, ipf_cell_masses


def _uneven(tmp_path):
    # p00 has 20 frames per affect, p01 and p02 10; p02 lacks joy
    def mutate(d):
        keep = ~((d["identity"] != "studio:p00") & (d["frame"] >= 10))
        keep &= ~((d["identity"] == "studio:p02") & (d["affect"] == "joy"))
        return d[keep].reset_index(drop=True)
    return write_ingest(tmp_path / "a", identities=3, frames=20, mutate=mutate)


def test_cap_default_median_and_even_spacing(tmp_path):
    src = _uneven(tmp_path)
    r = build_manifest([src], tmp_path / "m.parquet", BuildOptions(balance="cap", split="none"))
    df, meta = read_manifest(tmp_path / "m.parquet")
    assert r.cap == 10 and meta["balance"] == {"mode": "cap", "cap": 10}
    assert r.dropped["over the cell cap (--balance cap)"] == 7 * 10 and r.rows_out + sum(r.dropped.values()) == r.rows_in
    counts = df.groupby(["identity", "affect"]).size()
    assert counts.max() == 10 and (counts == 10).all()
    frames = sorted(df.loc[(df.identity == "studio:p00") & (df.affect == "anger"), "frame"].astype(int))
    assert frames == list(range(1, 20, 2))          # evenly spaced over the 20 frames, not the first 10
    assert r.table_before.loc["studio:p00", "anger"] == 20 and r.table_after.loc["studio:p00", "anger"] == 10
    assert (df["weight"] == 1.0).all()


def test_cap_explicit_and_deterministic():
    df = pd.DataFrame({"identity": ["a"] * 7 + ["b"] * 2, "affect": ["joy"] * 9, "ingest": ".",
                       "item": "x", "time": np.arange(9.0), "frame": np.arange(9), "image": [f"{i}" for i in range(9)]})
    kept, cap = cap_cells(df, 3)
    assert cap == 3 and kept.groupby("identity").size().to_dict() == {"a": 3, "b": 2}
    assert kept["time"].tolist() == [2.0, 4.0, 6.0, 7.0, 8.0]


def test_ipf_equalises_margins_with_an_empty_cell():
    counts = np.array([[40, 10, 5], [3, 3, 0], [1, 9, 2]], float)
    m = ipf_cell_masses(counts)
    assert np.allclose(m.sum(axis=1), 1 / 3) and np.allclose(m.sum(axis=0), 1 / 3)
    assert m[1, 2] == 0


def test_weight_mode_makes_identities_and_affects_equally_likely(tmp_path):
    src = _uneven(tmp_path)
    build_manifest([src], tmp_path / "m.parquet", BuildOptions(balance="weight", split="none"))
    df, _ = read_manifest(tmp_path / "m.parquet")
    w = df["weight"]
    assert np.isclose(w.mean(), 1.0)
    by_ident = w.groupby(df["identity"]).sum() / w.sum()
    by_aff = w.groupby(df["affect"]).sum() / w.sum()
    assert np.allclose(by_ident, 1 / 3) and np.allclose(by_aff, 1 / 7)
    assert w[df.identity == "studio:p00"].iloc[0] < w[df.identity == "studio:p01"].iloc[0]


def test_weights_are_per_split():
    df = pd.DataFrame({"identity": ["a", "a", "a", "b", "c", "c"], "affect": ["joy"] * 6,
                       "split": ["train", "train", "train", "train", "test", "test"]})
    w = balance_weights(df)
    assert np.allclose(w[:4], [2 / 3, 2 / 3, 2 / 3, 2.0]) and np.allclose(w[4:], 1.0)


def test_none_keeps_everything(tmp_path):
    src = _uneven(tmp_path)
    r = build_manifest([src], tmp_path / "m.parquet", BuildOptions(balance="none", split="none"))
    assert r.rows_out == r.rows_in and (read_manifest(tmp_path / "m.parquet")[0]["weight"] == 1).all()
