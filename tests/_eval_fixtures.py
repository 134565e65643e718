"""Tiny real inputs for `fex eval` tests: a manifest of dlib-detectable sample faces and a trained run.

The faces come from `fexdata.sample` (the astronaut photo re-styled per identity and warped per
affect), written as PNG crops and listed in a manifest written with `fexdata.manifest.write_manifest`;
identities are split subject-independently (train / val / test) as `fex build-manifest` does.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd

from fexdata.affects import AFFECTS
from fexdata.manifest import write_manifest
from fexdata.sample import sample_face

SPLIT_OF_IDENTITY = {0: "train", 1: "train", 2: "train", 3: "val", 4: "test", 5: "test"}


def write_face_manifest(root: Path, size: int = 64, per_affect: int = 2, affects: tuple[str, ...] = AFFECTS,
                        splits: dict[int, str] = SPLIT_OF_IDENTITY, gray: bool = False) -> Path:
    """Write root/crops/*.png and root/manifest.parquet; returns the manifest path. `gray`: grayscale faces
    (three equal channels), as a gray photo set gives them."""
    rows = []
    identities = sorted(f"sample:c{i}" for i in splits)
    for ident, split in splits.items():
        name = f"sample:c{ident}"
        for a, affect in enumerate(affects):
            for j in range(per_affect):
                rel = f"crops/c{ident}/{affect}_{j}.png"
                img = sample_face(ident, affect, size=size, intensity=0.7 + 0.3 * j, seed=j + 1)
                if gray:
                    img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                rows.append({"image": rel, "identity": name, "identity_index": identities.index(name),
                             "affect": affect, "affect_index": a, "split": split, "weight": 1.0,
                             "source": "sample", "source_path": rel, "item": rel, "ingest": ".",
                             "affect_raw": affect, "crop_size": size})
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet", affects=affects)


def train_tiny_run(manifest: Path, out: Path, steps: int = 3, resume: bool = False, model: str = "fexgan") -> Path:
    """Train a registered model's tiny architecture for `steps` (total) real steps on CPU (`fextrain.train`)."""
    from _train_fixtures import tiny_config

    from fextrain.train import train

    cfg = tiny_config(manifest, out, model, steps=steps, num_samples=2, cache_dir=str(out.parent / "cache"))
    train(cfg, resume=resume, progress=False, log=lambda msg: None)
    return out


def oracle_run_dir(path: Path) -> Path:
    """A run folder that passes `fex eval`'s input checks (a generator file is there) for tests that replace
    the model with a FunctionEditor at `load_editor`; nothing reads the file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "generator.safetensors").write_bytes(b"")
    return path


class FunctionEditor:
    """A stand-in model behind the uniform editor interface: `edit` applies `fn(x, source_vec, target_vec)`.

    Known-answer tests use it for oracle 'generators' (a copy, a blurred copy, one face for everyone) whose
    metrics are known exactly; it has no discriminator, so `classify` and `real_fake` return None.
    """

    def __init__(self, fn, affects, size: int = 64, step: int = 0, model: str = "oracle") -> None:
        self.fn, self.affects, self.size, self.step, self.model = fn, tuple(affects), size, step, model
        self.config = {"model": model, "size": size}
        self.identities = ()

    def edit(self, x, source_vec, target_vec):
        return self.fn(x, source_vec, target_vec)

    def classify(self, x):
        return None

    def real_fake(self, x):
        return None
