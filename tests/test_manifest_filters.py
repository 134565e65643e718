"""Each quality filter removes exactly the rows it should and counts them under its reason."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _manifest_fixtures import write_ingest
from fexdata.manifest import ManifestError, build_manifest, read_manifest
from fexdata.manifest.build import BuildOptions
from fexdata.manifest.filters import Gap, landmark_reasons, parse_gap, thin_by_gap


def _build(tmp_path, mutate=None, **kw):
    src = write_ingest(tmp_path / "a", identities=3, frames=10, mutate=mutate)
    report = build_manifest([src], tmp_path / "m.parquet", BuildOptions(split="none", **kw))
    return report, read_manifest(tmp_path / "m.parquet")[0]


def test_score_sharpness_faces(tmp_path):
    def mutate(d):
        d = d.copy()
        d.loc[d["frame"] == 1, "det_score"] = 0.1
        d.loc[d["frame"] == 2, "sharpness"] = 5.0
        d.loc[d["frame"] == 3, "face_count"] = 2
        d.loc[d["frame"] == 4, "det_score"] = np.nan  # no score: cannot be judged, kept
        return d
    r, df = _build(tmp_path, mutate, min_score=0.5, min_sharpness=20, max_faces=1)
    n_items = 3 * 7
    assert r.dropped["detector score below --min-score"] == n_items
    assert r.dropped["sharpness below --min-sharpness"] == n_items
    assert r.dropped["more faces than --max-faces"] == n_items
    assert set(df["frame"].astype(int)) == {0, 4, 5, 6, 7, 8, 9}
    assert r.rows_out + sum(r.dropped.values()) == r.rows_in


def test_filters_off_by_default(tmp_path):
    r, df = _build(tmp_path, lambda d: d.assign(det_score=-5.0, sharpness=0.0, face_count=4))
    assert r.rows_out == r.rows_in and sum(r.dropped.values()) == 0


def test_landmark_sanity_reasons():
    from _manifest_fixtures import template_landmarks
    good = template_landmarks(50, 50, 100, 100).ravel()
    outside = template_landmarks(200, 50, 100, 100).ravel()           # runs off a 256 px frame
    collapsed = good.copy().reshape(68, 2)
    collapsed[42:48] = collapsed[36:42] + [1, 0]                      # both eyes in one place
    flipped = template_landmarks(50, 50, 100, 100)
    flipped[:, 1] = 200 - flipped[:, 1]                               # upside down: mouth above eyes
    missing = np.full(136, np.nan)                                    # bbox alignment: no landmarks
    lm = np.stack([good, outside, collapsed.ravel(), flipped.ravel(), missing])
    w = h = np.full(5, 256.0)
    assert landmark_reasons(lm, w, h).tolist() == [-1, 0, 1, 2, -1]
    # unknown frame size: the outside check cannot judge, the others still apply
    assert landmark_reasons(lm, np.full(5, np.nan), np.full(5, np.nan)).tolist() == [-1, -1, 1, 2, -1]


def test_landmark_filter_in_build(tmp_path):
    def mutate(d):
        d = d.copy()
        sel = (d["frame"] == 0).to_numpy()
        d.loc[sel, "landmarks"] = pd.Series([(np.array(v) + 1000).tolist() for v in d.loc[sel, "landmarks"]],
                                            index=d.index[sel])
        return d
    r, df = _build(tmp_path, mutate)
    assert r.dropped["landmarks outside the frame"] == 3 * 7 and (df["frame"] != 0).all()
    r2, _ = _build(tmp_path / "off", mutate, landmark_check=False)
    assert r2.rows_out == r2.rows_in


def test_parse_gap():
    assert parse_gap("0.5s") == Gap(0.5, "s") and parse_gap("10f") == Gap(10, "f")
    assert parse_gap("0.25") == Gap(0.25, "s") and parse_gap("3 frames") == Gap(3, "f")
    assert parse_gap(None) is None and parse_gap("0") is None
    with pytest.raises(ManifestError, match="'half a second' is not a time gap") as err:
        parse_gap("half a second")
    assert "0.5s" in err.value.hint and "10f" in err.value.hint


def test_thin_by_gap_matches_greedy_reference():
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(50), rng.integers(1, 40, 50))
    t = np.concatenate([np.sort(rng.random((group == g).sum()) * 10) for g in range(50)])
    keep = thin_by_gap(group, t, 0.7)
    ref = np.zeros_like(keep)
    last = {}
    for i, (g, ti) in enumerate(zip(group, t)):
        if g not in last or ti - last[g] >= 0.7:
            ref[i], last[g] = True, ti
    assert (keep == ref).all()


def test_min_gap_seconds_and_frames(tmp_path):
    r, df = _build(tmp_path, min_gap="0.1s")   # 30 fps: frames 0, 3, 6, 9 survive per clip
    assert set(df["frame"].astype(int)) == {0, 3, 6, 9}
    assert r.dropped["closer than --min-gap to a kept frame"] == 3 * 7 * 6
    r, df = _build(tmp_path / "f", min_gap="4f")
    assert set(df["frame"].astype(int)) == {0, 4, 8}
    # stills are never thinned
    src = write_ingest(tmp_path / "s", identities=3, kind="still", stills=3, source="jaffe")
    r = build_manifest([src], tmp_path / "s.parquet", BuildOptions(split="none", min_gap="10s"))
    assert r.rows_out == 3 * 7 * 3
