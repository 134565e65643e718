"""FaceDataset, the packed cache (reuse, invalidation) and the pair sampler's invariants."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from _manifest_fixtures import pixel_code, write_ingest
from fexdata.affects import AFFECTS
from fexdata.dataset import FaceDataset, PairDataset, PairSampler
from fexdata.manifest import ManifestError, build_manifest, read_manifest
from fexdata.manifest.build import BuildOptions


@pytest.fixture()
def manifest(tmp_path):
    # p02 lacks fear and p01 has only 2 frames of joy: the sampler must cope with uneven cells
    def mutate(d):
        d = d[~((d.identity == "studio:p02") & (d.affect == "fear"))]
        return d[~((d.identity == "studio:p01") & (d.affect == "joy") & (d.frame >= 2))].reset_index(drop=True)
    write_ingest(tmp_path / "a", identities=3, frames=6, mutate=mutate)
    out = tmp_path / "m.parquet"
    build_manifest([tmp_path / "a"], out, BuildOptions(split="frame", guard="0", blocks=3))
    return out


def test_face_dataset_items_match_manifest(manifest):
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    df, meta = read_manifest(manifest)
    train = df[df.split == "train"].reset_index(drop=True)
    assert len(ds) == len(train) and ds.affects == AFFECTS
    assert ds.images.shape == (len(train), 16, 16, 3) and ds.images.dtype == np.uint8
    assert isinstance(ds.images, np.memmap)
    for i in (0, len(ds) // 2, len(ds) - 1):
        item = ds[i]
        assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.uint8
        assert item["affect"] == AFFECTS.index(train.affect[i]) == ds.affect_ids[i]
        assert item["identity"] == meta["identities"].index(train.identity[i])
        ident, aff, frame = pixel_code(ds.images[i])            # the pixels are the row's crop
        assert (f"studio:p{ident:02d}", AFFECTS[aff], frame) == (train.identity[i], train.affect[i], train.frame[i])
    assert np.isclose(ds.weights.mean(), 1.0)
    unpacked = FaceDataset(manifest, split="train", size=16, packed=False)
    assert unpacked.images is None and torch.equal(unpacked[3]["image"], ds[3]["image"])


def test_weighted_sampler_follows_weights(manifest):
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    draws = np.array(list(ds.weighted_sampler(20000, seed=1)))
    share = np.bincount(ds.identity_ids[draws], minlength=3) / len(draws)
    assert np.allclose(share, 1 / 3, atol=0.02)       # identities equally likely despite uneven cells


def test_cache_reused_and_rebuilt_when_manifest_changes(manifest, tmp_path):
    cache = manifest.with_name(manifest.name + ".cache")
    FaceDataset(manifest, split="train", size=16, progress=False)
    npy, sidecar = cache / "m-train-16.npy", cache / "m-train-16.json"
    assert npy.is_file() and json.loads(sidecar.read_text())["count"] > 0
    mtime = npy.stat().st_mtime_ns
    FaceDataset(manifest, split="train", size=16, progress=False)
    assert npy.stat().st_mtime_ns == mtime                   # reused, not rebuilt
    FaceDataset(manifest, split="train", size=24, progress=False)
    assert (cache / "m-train-24.npy").is_file() and npy.stat().st_mtime_ns == mtime
    # a different manifest at the same path (other seed) -> rebuilt with the new rows
    build_manifest([tmp_path / "a"], manifest, BuildOptions(split="frame", guard="0", blocks=3, seed=9))
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    assert npy.stat().st_mtime_ns != mtime
    df, _ = read_manifest(manifest)
    train = df[df.split == "train"].reset_index(drop=True)
    assert [pixel_code(ds.images[i])[2] for i in range(len(ds))] == train["frame"].astype(int).tolist()


def test_cache_dir_override_and_corrupt_sidecar(manifest, tmp_path):
    where = tmp_path / "elsewhere"
    FaceDataset(manifest, split="test", size=16, cache_dir=where, progress=False)
    assert (where / "m-test-16.npy").is_file() and not manifest.with_name(manifest.name + ".cache").exists()
    (where / "m-test-16.json").write_text("{not json")
    ds = FaceDataset(manifest, split="test", size=16, cache_dir=where, progress=False)   # rebuilt, not crashed
    assert json.loads((where / "m-test-16.json").read_text())["split"] == "test" and len(ds) > 0


def test_missing_crop_while_packing_is_a_clear_error(manifest, tmp_path):
    df, _ = read_manifest(manifest)
    os.remove(manifest.parent / df.loc[df.split == "train", "image"].iloc[0])
    with pytest.raises(ManifestError, match="cannot decode crop") as err:
        FaceDataset(manifest, split="train", size=16, progress=False)
    assert "fex manifest-info" in err.value.hint
    assert not (manifest.with_name(manifest.name + ".cache") / "m-train-16.json").exists()


def test_bad_split_name_and_empty_split(manifest):
    with pytest.raises(ManifestError, match="unknown split"):
        FaceDataset(manifest, split="training")
    with pytest.raises(ManifestError, match="'val' is empty"):
        FaceDataset(manifest, split="val")


@pytest.mark.parametrize("distinct", [False, True])
def test_pair_sampler_invariants(manifest, distinct):
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    src, tgt, tgt_aff = PairSampler(ds, seed=0, distinct=distinct).sample(20000)
    assert src.dtype == tgt.dtype == tgt_aff.dtype == np.int64
    assert (ds.identity_ids[src] == ds.identity_ids[tgt]).all()          # same identity
    assert (ds.affect_ids[tgt] == tgt_aff).all()                          # showing the target affect
    for ident in np.unique(ds.identity_ids):                              # only affects that identity has
        has = set(ds.affect_ids[ds.identity_ids == ident])
        assert set(tgt_aff[ds.identity_ids[src] == ident]) == has
    same = (ds.affect_ids[src] == tgt_aff).mean()
    assert same == 0 if distinct else 0.05 < same < 0.3
    # p01 has only 2 joy frames: they are still all reachable as targets, and nothing else is
    joy_p01 = np.flatnonzero((ds.affect_ids == AFFECTS.index("joy")) & (ds.identity_ids == 1))
    hits = tgt[(tgt_aff == AFFECTS.index("joy")) & (ds.identity_ids[src] == 1)]
    assert set(hits) == set(joy_p01)
    # deterministic for a seed
    again = PairSampler(ds, seed=0, distinct=distinct).sample(20000)
    assert all((a == b).all() for a, b in zip((src, tgt, tgt_aff), again))


def test_pair_sampler_sources_follow_weights():
    class Tiny:  # two identities, one with 9x more rows: weights make them equally likely sources
        identity_ids = np.array([0] * 9 + [1])
        affect_ids = np.array([0, 1] * 4 + [0, 0])
        weights = np.array([1 / 9] * 9 + [1.0])
    src, tgt, aff = PairSampler(Tiny(), seed=2).sample(40000)
    assert abs((Tiny.identity_ids[src] == 1).mean() - 0.5) < 0.02
    assert (aff[src == 9] == 0).all()                                 # identity 1 only has affect 0


def test_pair_dataset_through_dataloader(manifest):
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    pairs = PairDataset(ds, length=40, seed=1)
    batches = list(pairs.loader(batch_size=16, num_workers=0))
    assert [b["source"].shape[0] for b in batches] == [16, 16, 8]
    b = batches[0]
    assert b["source"].shape == (16, 3, 16, 16) and b["target"].dtype == torch.uint8
    assert torch.equal(b["target"][0], ds[int(pairs.tgt[0])]["image"])
    assert torch.equal(b["target_affect"], torch.from_numpy(pairs.tgt_affect[:16]))
    assert (b["identity"] == torch.from_numpy(ds.identity_ids[pairs.tgt[:16]])).all()
    single = pairs[5]
    assert torch.equal(single["source"], ds[int(pairs.src[5])]["image"]) and single["target_affect"] == pairs.tgt_affect[5]


def test_pair_dataset_with_worker_processes(manifest):
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    pairs = PairDataset(ds, length=32, seed=1)
    got = torch.cat([b["source"] for b in pairs.loader(batch_size=8, num_workers=2)])
    want = torch.from_numpy(np.ascontiguousarray(ds.images[pairs.src].transpose(0, 3, 1, 2)))
    assert torch.equal(got, want)


def test_pair_dataset_plain_dataloader_and_batch_indexing(manifest):
    from torch.utils.data import DataLoader
    ds = FaceDataset(manifest, split="train", size=16, progress=False)
    pairs = PairDataset(ds, length=24, seed=3)
    plain = next(iter(DataLoader(pairs, batch_size=8)))
    fast = pairs[np.arange(8)]
    for k in plain:
        assert torch.equal(plain[k], fast[k]), k
    assert fast["source"].shape == (8, 3, 16, 16)


def test_escaping_image_path_in_edited_manifest_is_refused(manifest, tmp_path):
    from fexdata.manifest import write_manifest
    df, meta = read_manifest(manifest)
    df.loc[0, "image"] = "../outside.png"
    bad = write_manifest(df, tmp_path / "bad.parquet", affects=meta["affects"])
    with pytest.raises(ManifestError, match="leaves the manifest's folder"):
        FaceDataset(bad, split=df.loc[0, "split"], size=16)
