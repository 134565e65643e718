"""Torch datasets over one split of a manifest, and the same-identity pair sampler of FExGAN-Meta.

* `FaceDataset` - one row per crop of the split: uint8 image tensor, affect, identity, weight. Pixels
  come from the packed cache (`packed_cache.py`), a memory-mapped N x H x W x 3 array decoded once,
  so training never waits on PNG decoding; `packed=False` decodes the PNGs on every access instead.
* `PairSampler` - vectorised numpy draws of (source, target, target affect): the target is a random
  image of the **same identity** showing the **target affect**, as FExGAN-Meta's reconstruction loss
  needs. Sources follow the manifest's balance weights.
* `PairDataset` - the same pairs through a torch `Dataset`/`DataLoader`, for simple loops and the
  loader benchmark; it gathers whole batches with numpy fancy indexing (`__getitems__`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import (BatchSampler, DataLoader, Dataset, SequentialSampler, WeightedRandomSampler,
                              get_worker_info)

from fexdata.manifest import ManifestError, read_manifest
from fexdata.packed_cache import decode_crop, load_or_build
from fexdata.paths import unsafe_paths

SPLITS = ("train", "val", "test")
_COLUMNS = ["image", "identity", "identity_index", "affect", "affect_index", "split", "fold", "weight"]


def training_rows(df: pd.DataFrame, holdout_fold: int | None = None) -> pd.Series:
    """Mask of the rows a run trains on: the train split, or, holding out a cross-validation fold
    (`TrainConfig.holdout_fold`), every row of the other folds whatever its split. A row without a
    fold belongs to no cross-validation round, so it is never trained on when a fold is held out."""
    if holdout_fold is None:
        return df["split"] == "train"
    return df["fold"].notna() & (df["fold"] != holdout_fold)


def crop_side(path: str | os.PathLike, crop_sizes: pd.Series, size: int, hint: str) -> int:
    """The manifest's one crop side, refused when its crops have several sides or one smaller than `size`.

    Training and evaluation feed a model at `size`: larger crops are shrunk once into the packed cache,
    smaller ones would be enlarged, which only shows (and teaches) the model blur. `hint` says what to do.
    """
    sides = sorted(set(int(s) for s in crop_sizes))
    if len(sides) > 1:
        raise ManifestError(f"{path}: crops of several sizes {sides}; a manifest must hold one crop size",
                            hint="rebuild it with `fex build-manifest --size N`")
    if sides and sides[0] < size:
        raise ManifestError(f"{path}: crops are {sides[0]}x{sides[0]}, smaller than the model's {size} px; "
                            "enlarging them would only add blur", hint=hint)
    return sides[0] if sides else size


class FaceDataset(Dataset):
    """One split of a manifest as a torch Dataset.

    `ds[i]` -> {"image": uint8 tensor 3xHxW (RGB), "affect": int, "identity": int, "weight": float}.
    Attributes: `affects` (tuple, the affect index order), `identities` (tuple, identity index order),
    `images` (N x H x W x 3 uint8, memory-mapped; None with packed=False), `affect_ids`,
    `identity_ids` (int64 arrays; identity ids index the manifest-wide `identities`), `weights`.

    `split` is "train", "val", "test" or "all"; `fold`, when given, keeps only that fold
    (`exclude_fold` keeps the rows of every other fold: the training side of a cross-validation
    round, `training_rows`). `rows` are the kept rows' positions in the manifest file.
    """

    def __init__(self, manifest_path: str | os.PathLike, split: str = "train", size: int = 128,
                 cache_dir: str | os.PathLike | None = None, *, packed: bool = True,
                 fold: int | None = None, exclude_fold: int | None = None,
                 rebuild_cache: bool = False, progress: bool = True) -> None:
        self.manifest_path = Path(manifest_path)
        self.split, self.size = split, int(size)
        df, meta = read_manifest(self.manifest_path, columns=_COLUMNS)
        if split != "all":
            if split not in SPLITS:
                raise ManifestError(f"unknown split {split!r}", hint=f"use one of {', '.join(SPLITS)} or 'all'")
            df = df[df["split"] == split]
        if fold is not None:
            df = df[df["fold"] == fold]
        if exclude_fold is not None:
            df = df[training_rows(df, exclude_fold)]
        if len(df) == 0:
            raise ManifestError(f"{self.manifest_path}: split {split!r}{'' if fold is None else f' fold {fold}'} "
                                f"is empty", hint=f"see `fex manifest-info {self.manifest_path}`")
        self.rows = df.index.to_numpy(np.int64)  # read_manifest's index is the file's row number
        self.frame = df.reset_index(drop=True)
        self.affects: tuple[str, ...] = tuple(meta["affects"])
        self.identities: tuple[str, ...] = tuple(meta.get("identities", []))
        self.affect_ids = self.frame["affect_index"].to_numpy(np.int64, copy=True)
        self.identity_ids = self.frame["identity_index"].to_numpy(np.int64, copy=True)
        self.weights = self.frame["weight"].to_numpy(np.float64, copy=True)
        unsafe = unsafe_paths(self.frame["image"])
        if unsafe.any():  # build-manifest never writes these; a hand-edited manifest might
            raise ManifestError(f"{self.manifest_path}: image path {self.frame['image'][unsafe].iloc[0]!r} "
                                f"leaves the manifest's folder",
                                hint="paths must be relative and without '..'; rebuild it with `fex build-manifest`")
        root = str(self.manifest_path.resolve().parent)
        self.paths = [os.path.join(root, p) for p in self.frame["image"].tolist()]
        self.packed = packed
        self._cache_args = (cache_dir, rebuild_cache, progress)
        self._cache_name = split if fold is None and exclude_fold is None else (
            f"{split}-fold{fold}" if fold is not None else f"{split}-notfold{exclude_fold}")
        self.images: np.ndarray | None = self._open_cache(rebuild_cache) if packed else None

    def _open_cache(self, rebuild: bool) -> np.ndarray:
        cache_dir, _, progress = self._cache_args
        return load_or_build(self.manifest_path, self._cache_name, self.size, self.paths, cache_dir,
                             rebuild=rebuild, progress=progress)

    # Memory maps must not be pickled into worker processes (that would copy the whole array);
    # workers reopen the cache, which is already built, instead.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["images"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.packed:
            self.images = self._open_cache(False)

    def __len__(self) -> int:
        return len(self.frame)

    def image_array(self, idx: np.ndarray | int) -> np.ndarray:
        """Pixels of one index (H x W x 3) or of an index array (n x H x W x 3), uint8 RGB."""
        if self.images is not None:
            return np.asarray(self.images[idx])
        if np.ndim(idx) == 0:
            return decode_crop(self.paths[int(idx)], self.size)
        return np.stack([decode_crop(self.paths[int(i)], self.size) for i in idx]) if len(idx) else \
            np.zeros((0, self.size, self.size, 3), np.uint8)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = np.ascontiguousarray(self.image_array(i).transpose(2, 0, 1))
        return {"image": torch.from_numpy(img), "affect": int(self.affect_ids[i]),
                "identity": int(self.identity_ids[i]), "weight": float(self.weights[i])}

    def weighted_sampler(self, num_samples: int | None = None, seed: int = 0) -> WeightedRandomSampler:
        """A sampler that draws rows with probability proportional to the manifest's `weight`."""
        gen = torch.Generator().manual_seed(seed)
        return WeightedRandomSampler(torch.as_tensor(self.weights, dtype=torch.double),
                                     num_samples or len(self), replacement=True, generator=gen)


class PairSampler:
    """Vectorised draws of (source idx, target idx, target affect) over a FaceDataset.

    * source: drawn with probability proportional to `dataset.weights` (the balance weights);
    * target affect: uniform over the affects the source's identity has in this split. With
      `distinct=False` (default, as FExGAN-Meta samples its condition) it may equal the source
      affect; with `distinct=True` it differs whenever that identity has at least two affects;
    * target: uniform over the images of the source's identity with the target affect.
    """

    def __init__(self, dataset: FaceDataset | Any, seed: int = 0, *, distinct: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.distinct = distinct
        ident = np.asarray(dataset.identity_ids, np.int64)
        affect = np.asarray(dataset.affect_ids, np.int64)
        weights = np.asarray(getattr(dataset, "weights", np.ones(len(ident))), np.float64)
        if len(ident) == 0:
            raise ManifestError("PairSampler needs a non-empty dataset",
                                hint="check the split with `fex manifest-info`")
        n_aff = int(affect.max()) + 1
        _, ident_local = np.unique(ident, return_inverse=True)
        cell = ident_local * n_aff + affect
        # CSR over cells: rows of cell c are members[start[c] : start[c] + count[c]]
        order = np.argsort(cell, kind="stable")
        self._members = order
        cells, start, count = np.unique(cell[order], return_index=True, return_counts=True)
        self._start, self._count = start.astype(np.int64), count.astype(np.int64)
        # CSR over identities: the affects (as cell numbers k) each identity has, sorted by affect
        cell_ident = cells // n_aff
        self._id_start = np.searchsorted(cell_ident, np.arange(ident_local.max() + 1)).astype(np.int64)
        self._id_count = np.bincount(cell_ident, minlength=ident_local.max() + 1).astype(np.int64)
        self._cell_affect = (cells % n_aff).astype(np.int64)
        self._row_ident = ident_local.astype(np.int64)
        # position of each row's own cell within its identity's affect list (for distinct draws)
        row_cell = np.searchsorted(cells, cell)
        self._row_pos = row_cell - self._id_start[ident_local]
        total = weights.sum()
        if not np.isfinite(total) or total <= 0 or (weights < 0).any():
            raise ManifestError("the manifest's weights must be non-negative with a positive sum",
                                hint="rebuild it with `fex build-manifest`")
        self._cdf = np.cumsum(weights) / total

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n draws -> (src_idx, tgt_idx, tgt_affect), int64 arrays indexing the dataset."""
        rng = self.rng
        src = np.minimum(np.searchsorted(self._cdf, rng.random(n), side="right"), len(self._cdf) - 1)
        ident = self._row_ident[src]
        n_aff = self._id_count[ident]
        if self.distinct:
            choices = np.maximum(n_aff - 1, 1)
            k = np.minimum((rng.random(n) * choices).astype(np.int64), choices - 1)
            own = self._row_pos[src]
            k = np.where((n_aff > 1) & (k >= own), k + 1, k)
        else:
            k = np.minimum((rng.random(n) * n_aff).astype(np.int64), n_aff - 1)
        tgt_cell = self._id_start[ident] + k
        tgt_affect = self._cell_affect[tgt_cell]
        j = np.minimum((rng.random(n) * self._count[tgt_cell]).astype(np.int64), self._count[tgt_cell] - 1)
        tgt = self._members[self._start[tgt_cell] + j]
        return src.astype(np.int64), tgt.astype(np.int64), tgt_affect


class PairDataset(Dataset):
    """`length` pre-drawn pairs as a torch Dataset (deterministic for a seed).

    Item -> {"source", "target": uint8 3xHxW tensors, "source_affect", "target_affect", "identity"}.
    Indexing with a list or array of indices returns the whole batch at once (N x 3 x H x W), and
    `loader()` feeds whole index batches that way: one numpy gather per batch, written straight into
    shared memory when it runs in a worker, instead of one Python call and one copy per sample.
    Batched images are NCHW views of NHWC memory (channels-last strides); `.float()` and `.to()`
    keep that layout, which convolutions accept as is.
    """

    def __init__(self, dataset: FaceDataset, length: int, seed: int = 0, *, distinct: bool = False) -> None:
        self.dataset = dataset
        self.src, self.tgt, self.tgt_affect = PairSampler(dataset, seed, distinct=distinct).sample(length)

    def __len__(self) -> int:
        return len(self.src)

    def _gather(self, idx: np.ndarray) -> torch.Tensor:
        ds = self.dataset
        shape = (len(idx), ds.size, ds.size, 3)
        if get_worker_info() is not None:
            # allocate in shared memory, as default_collate does, so sending the batch costs no copy
            storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(int(np.prod(shape)))
            out = torch.empty(0, dtype=torch.uint8).new(storage).resize_(shape)
        else:
            out = torch.empty(shape, dtype=torch.uint8)
        if ds.images is not None:
            np.take(ds.images, idx, axis=0, out=out.numpy())
        else:
            out.numpy()[:] = ds.image_array(idx)
        return out.permute(0, 3, 1, 2)

    def batch(self, indices: np.ndarray | list[int]) -> dict[str, torch.Tensor]:
        """The pairs at `indices` as one batch dict."""
        idx = np.asarray(indices, dtype=np.int64)
        s, t = self.src[idx], self.tgt[idx]
        ds = self.dataset
        return {"source": self._gather(s), "target": self._gather(t),
                "source_affect": torch.from_numpy(ds.affect_ids[s]),
                "target_affect": torch.from_numpy(self.tgt_affect[idx]),
                "identity": torch.from_numpy(ds.identity_ids[s])}

    def __getitem__(self, i: int | list[int] | np.ndarray) -> dict[str, Any]:
        if np.ndim(i) > 0:
            return self.batch(i)
        b = self.batch([int(i)])
        return {k: (v[0].contiguous() if v.ndim > 1 else int(v[0])) for k, v in b.items()}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        # a plain DataLoader(pairs, batch_size=B) gathers with one call, then collates as usual
        b = self.batch(indices)
        return [dict(zip(b, values)) for values in zip(*b.values())]

    def loader(self, batch_size: int = 32, num_workers: int = 0, drop_last: bool = False, **kwargs: Any) -> DataLoader:
        """A DataLoader yielding batch dicts, one gather per batch (pairs are already random: no shuffle)."""
        batches = BatchSampler(SequentialSampler(range(len(self))), batch_size, drop_last)
        return DataLoader(self, sampler=batches, batch_size=None, num_workers=num_workers,
                          persistent_workers=num_workers > 0, **kwargs)
