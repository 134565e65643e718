"""The training loop's data part: one batch per iteration, shaped for whichever model is training.

Every model gets the same `fextrain.models.Batch`: source images (balance-weighted draws from the
train split, augmented on the device), their affect ids, train-identity ids and intensities, and
target affect ids. How targets are drawn is the model's declaration (`GANModel.paired`):

* paired (FExGAN): `fexdata.dataset.PairSampler` - the target affect is one the source's identity
  shows, and `Batch.target` a random real image of that identity with it (same augmentation), with
  its manifest intensity in `Batch.target_intensity` (FExGAN's target condition uses it);
* unpaired (StarGAN): the target affect is the affect of an independent balance-weighted draw, so
  targets follow the same balanced distribution as sources (the official code permutes the batch's
  labels, which has that distribution too); no target image, so one image per identity is enough.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from fexdata import parquet
from fexdata.dataset import FaceDataset, PairSampler
from fexdata.manifest import ManifestError
from fextrain.augment import AugmentConfig, augment_pairs, move_points, random_affines
from fextrain.pixels import to_unit_range
from fextrain.models import Batch
from fextrain.runtime import ImageStore


class UnpairedSampler:
    """Vectorised draws of (source idx, None, target affect), both halves following the balance weights."""

    def __init__(self, dataset: FaceDataset | Any, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        weights = np.asarray(dataset.weights, np.float64)
        total = weights.sum()
        if not np.isfinite(total) or total <= 0 or (weights < 0).any():
            raise ValueError("weights must be non-negative with a positive sum")
        self._cdf = np.cumsum(weights) / total
        self._affects = np.asarray(dataset.affect_ids, np.int64)

    def _draw(self, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self._cdf, self.rng.random(n), side="right"), len(self._cdf) - 1)

    def sample(self, n: int) -> tuple[np.ndarray, None, np.ndarray]:
        src = self._draw(n).astype(np.int64)
        return src, None, self._affects[self._draw(n)]


def train_intensities(ds: FaceDataset) -> np.ndarray | None:
    """The `intensity` column of the dataset's rows, in its order; None when the manifest gives none."""
    manifest = parquet.open_file(ds.manifest_path, hint="rebuild it with `fex build-manifest`")  # one verified read
    if "intensity" not in manifest.schema_arrow.names:
        return None  # an older manifest: the one case without intensities
    try:
        column = manifest.read(columns=["intensity"]).column("intensity")
    except (OSError, pa.ArrowException) as exc:  # damage is an error, never "no intensities"
        raise ManifestError(f"{ds.manifest_path}: cannot read its intensity column ({exc})",
                            hint="rebuild it with `fex build-manifest`") from None
    values = column.to_numpy().astype(np.float32)[ds.rows]  # nulls (unknown) read as NaN
    return None if np.isnan(values).all() else values


def train_landmarks(ds: FaceDataset) -> np.ndarray:
    """[N, 68, 2] float32 landmarks of the dataset's rows in normalised crop coordinates (NaN where the manifest
    has none), for the models that declare `landmarks`."""
    manifest = parquet.open_file(ds.manifest_path, hint="rebuild it with `fex build-manifest`")
    if "landmarks" not in manifest.schema_arrow.names:
        return np.full((len(ds.rows), 68, 2), np.nan, np.float32)
    try:
        table = manifest.read(columns=["landmarks", "crop_size"])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise ManifestError(f"{ds.manifest_path}: cannot read its landmarks ({exc})",
                            hint="rebuild it with `fex build-manifest`") from None
    column = table.column("landmarks").combine_chunks()
    flat = np.full((len(column), 136), np.nan, np.float32)
    present = column.is_valid().to_numpy(zero_copy_only=False)
    if present.any():
        flat[present] = column.drop_null().flatten().to_numpy().reshape(-1, 136)
    side = table.column("crop_size").to_numpy().astype(np.float32)[:, None]
    # crop pixel p (centres at integers) -> (p + 0.5) / side * 2 - 1, grid_sample's align_corners=False
    return ((flat + 0.5) / side * 2 - 1)[ds.rows].reshape(-1, 68, 2)


class BatchSource:
    """Draws, gathers and augments one `Batch` per call, on the training device."""

    def __init__(self, ds: FaceDataset, store: ImageStore, *, paired: bool, batch: int, augment: AugmentConfig,
                 rng: torch.Generator, seed: int, channels_last: bool, intensity: np.ndarray | None = None,
                 landmarks: np.ndarray | None = None) -> None:
        self.ds, self.store, self.paired, self.batch, self.augment = ds, store, paired, batch, augment
        self.rng, self.channels_last = rng, channels_last
        self.sampler = PairSampler(ds, seed=seed) if paired else UnpairedSampler(ds, seed=seed)
        # Train identities indexed 0..n-1 (manifest-wide ids skip the other splits' identities).
        present, local = np.unique(ds.identity_ids, return_inverse=True)
        names = ds.identities
        self.identities = tuple(names[i] if i < len(names) else str(i) for i in present)
        dev = store.device
        self._affect = torch.from_numpy(ds.affect_ids).to(dev)
        self._identity = torch.from_numpy(local.astype(np.int64)).to(dev)
        self._intensity = None if intensity is None else torch.from_numpy(intensity).to(dev)
        self._landmarks = None if landmarks is None else torch.from_numpy(landmarks).to(dev)

    def next(self) -> Batch:
        b = self.batch
        src, tgt, tgt_aff = self.sampler.sample(b)
        x = to_unit_range(self.store.gather(src if tgt is None else np.concatenate([src, tgt])))
        if not self.channels_last:
            x = x.contiguous()
        # The same draws as augment_pairs makes itself, so a model's random stream does not depend on landmarks.
        theta = random_affines(b, self.augment, x.device, self.rng)
        x_src, x_tgt = augment_pairs(x[:b], x[b:] if self.paired else None, self.augment, theta=theta)
        picks = [src, tgt_aff] if tgt is None else [src, tgt_aff, tgt]
        labels = torch.from_numpy(np.stack(picks)).to(self.store.device, non_blocking=True)  # one copy
        rows = labels[0]
        known, points = self._intensity, self._landmarks
        return Batch(x=x_src, affect=self._affect[rows], identity=self._identity[rows], target_affect=labels[1],
                     target=x_tgt, intensity=None if known is None else known[rows],
                     target_intensity=None if known is None or tgt is None else known[labels[2]],
                     landmarks=None if points is None else move_points(points[rows], theta),
                     target_landmarks=None if points is None or tgt is None else move_points(points[labels[2]], theta))

    def grid_sources(self, n: int) -> np.ndarray:
        """Fixed faces for the sample grids: one per identity (its neutral one when it has one), then more."""
        ds = self.ds
        affects = ds.frame["affect"].to_numpy()
        order = np.lexsort((np.arange(len(ds)), affects != "neutral", ds.identity_ids))
        _, first = np.unique(ds.identity_ids[order], return_index=True)
        chosen = list(order[np.sort(first)][:n])
        taken = set(chosen)
        rest = [i for i in order if i not in taken]
        if len(chosen) < n and rest:
            chosen += [rest[int(j)] for j in np.linspace(0, len(rest) - 1, min(n - len(chosen), len(rest)))]
        return np.asarray(chosen[:n], dtype=np.int64)
