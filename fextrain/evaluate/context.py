"""`EvalContext`: what the sections of one evaluation share, each piece computed once and only when asked.

A section asks for `ctx.judge`, `ctx.edits` or `ctx.edit_descriptors`; the first asker pays, the others
reuse it, and `fex eval --sections identity` never trains a judge. Every image a section sees from the
model comes through `ctx.edit`, i.e. the model's uniform `edit(x, source_vec, target_vec)`: nothing here
knows how a model encodes or decodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from fexdata.dataset import FaceDataset
from fextrain.evaluate.grids import as_uint8_images
from fextrain.evaluate.identity import Descriptors, FaceDescriber
from fextrain.evaluate.judge import Judge, effective_epochs, load_or_train_judge
from fextrain.evaluate.options import EvalOptions
from fextrain.models import one_hot
from fextrain.pixels import to_unit_range


def to_model_input(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float NCHW in [-1, 1], resized to the model's side when given."""
    x = to_unit_range(torch.from_numpy(np.array(images, copy=True)))
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted seeded subset of range(n) of at most `limit` indices (all when limit is None)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@dataclass
class EditSet:
    """The generated set every metric reads: each source edited into every affect, source-major.

    `images[i * k + a]` is source i edited to affect a; all images are uint8 NHWC at the model's side,
    exactly the pixels a user who saved the edits would see.
    """

    sources: np.ndarray  # [n, S, S, 3] uint8 real test faces
    source_affects: np.ndarray  # [n] int64
    images: np.ndarray  # [n * k, S, S, 3] uint8
    targets: np.ndarray  # [n * k] int64 target affect of each edit
    k: int
    indices: np.ndarray  # [n] the sources' rows in the test split

    def at_target(self, affect: int) -> np.ndarray:
        """[n, S, S, 3]: every source's edit to `affect`, in source order."""
        return self.images[affect :: self.k]


@dataclass
class FittedJudge:
    judge: Judge
    reused: bool  # loaded from OUT/judge instead of trained
    train_count: int  # train split images, held-out ones included
    epochs: int  # the most epochs it could train (judge.training says how many it ran)


class EvalContext:
    """The loaded model, the manifest's splits and the evaluation's options, plus shared lazy results."""

    def __init__(self, editor: Any, manifest: Path, splits: list[str], options: EvalOptions, out_dir: Path,
                 device: str, say: Callable[[str], None]) -> None:
        self.editor = editor  # .edit / .classify / .real_fake / .affects / .size / .model / .config (fextrain.models)
        self.manifest = manifest
        self.splits = splits
        self.options = options
        self.out_dir = out_dir
        self.device = device
        self.say = say
        self.affects: tuple[str, ...] = tuple(editor.affects)
        self.k = len(self.affects)
        self.size = int(editor.size)
        self.step = int(editor.step)
        self._datasets: dict[str, FaceDataset] = {}

    def dataset(self, split: str) -> FaceDataset:
        """The manifest's `split` at the model's side (packed once, then memory-mapped)."""
        if split not in self._datasets:
            o = self.options
            self._datasets[split] = FaceDataset(self.manifest, split, size=self.size, cache_dir=o.cache_dir,
                                                progress=o.progress)
        return self._datasets[split]

    @property
    def test(self) -> FaceDataset:
        return self.dataset("test")

    @property
    def identity_edit(self) -> bool:
        """True for models whose edit keeps the face's expression and redraws its identity (DE-GAN)."""
        return bool(getattr(getattr(self.editor, "gan", None), "identity_edit", False))

    @torch.no_grad()
    def edit(self, images: np.ndarray, source_affects: np.ndarray, targets: np.ndarray | torch.Tensor,
             identities: np.ndarray | None = None) -> np.ndarray:
        """uint8 edits of uint8 images through the model's `edit`, in batches.

        `source_affects` are affect ids; `targets` affect ids too, or target vectors [N, K] (mixed or scaled);
        `identities` train-identity ids for models that draw a chosen identity (DE-GAN), else None.
        """
        source_vecs = one_hot(torch.as_tensor(np.asarray(source_affects, np.int64)), self.k)
        target_vecs = targets if isinstance(targets, torch.Tensor) else \
            one_hot(torch.as_tensor(np.asarray(targets, np.int64)), self.k)
        ids = None if identities is None else torch.as_tensor(np.asarray(identities, np.int64))
        bs, outs = self.options.batch_size, []
        for start in range(0, len(images), bs):
            x = to_model_input(images[start : start + bs], self.size).to(self.device)
            args = (x, source_vecs[start : start + bs], target_vecs[start : start + bs])
            out = self.editor.edit(*args) if ids is None else self.editor.edit(*args, identity=ids[start : start + bs])
            outs.append(as_uint8_images(out.float().cpu()))
        return np.concatenate(outs) if outs else np.zeros((0, self.size, self.size, 3), np.uint8)

    @cached_property
    def judge(self) -> FittedJudge:
        """The independent judge, trained on the real train split only (or loaded from OUT/judge)."""
        train, settings = self.dataset("train"), self.options.judge_settings()
        self.say(f"judge: {'loading or ' if (self.out_dir / 'judge').exists() else ''}training on "
                 f"{len(train)} train images")
        judge, reused = load_or_train_judge(self.out_dir / "judge", train.images, train.affect_ids, self.affects,
                                            settings, self.options.progress, self.device, train.identity_ids)
        return FittedJudge(judge, reused, len(train), int(judge.training.get("epochs_max") or
                                                          effective_epochs(len(train), settings)))

    @cached_property
    def edit_probs(self) -> np.ndarray:
        """The judge's affect probabilities of every edit [n * k, K], in `edits` order."""
        return self.judge.judge.probabilities(self.edits.images)

    @cached_property
    def test_probs(self) -> np.ndarray:
        """The judge's affect probabilities of the real test faces [n, K], read 1,024 at a time (a large test
        split is memory-mapped)."""
        test, judge = self.test, self.judge.judge
        chunks = [judge.probabilities(test.image_array(np.arange(start, min(start + 1024, len(test)))))
                  for start in range(0, len(test), 1024)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.affects)))

    @cached_property
    def source_probs(self) -> np.ndarray:
        """The judge's affect probabilities of the edits' sources [n, K]."""
        return self.judge.judge.probabilities(self.edits.sources)

    @cached_property
    def edits(self) -> EditSet:
        """Test sources (all, or a seeded subset of `max_sources`) x every affect."""
        o, k = self.options, self.k
        idx = subset(len(self.test), o.max_sources, o.seed)
        sources, src_aff = self.test.image_array(idx), self.test.affect_ids[idx]
        self.say(f"generating {len(idx)} test sources x {k} affects = {len(idx) * k} images")
        chunk = o.batch_size  # sources per progress tick (k edits each)
        images = [
            self.edit(np.repeat(sources[i : i + chunk], k, axis=0), np.repeat(src_aff[i : i + chunk], k),
                      np.tile(np.arange(k), len(sources[i : i + chunk])))
            for i in tqdm(range(0, len(sources), chunk), desc="generate", unit="chunk", disable=not o.progress,
                          leave=False)
        ]
        return EditSet(sources, src_aff, np.concatenate(images), np.tile(np.arange(k), len(idx)), k, idx)

    @cached_property
    def describer(self) -> FaceDescriber | None:
        """dlib's detector + descriptor, or None when identity metrics are switched off."""
        o = self.options
        return FaceDescriber(o.landmarks, o.detect_size) if o.identity else None

    @cached_property
    def source_descriptors(self) -> Descriptors:
        self.say(f"identity: dlib descriptors of {len(self.edits.sources)} sources")
        return self.describer.describe(self.edits.sources)

    @cached_property
    def edit_descriptors(self) -> Descriptors:
        self.say(f"identity: dlib descriptors of {len(self.edits.images)} edits")
        return self.describer.describe(self.edits.images, progress=self.options.progress)
