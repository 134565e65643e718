"""Tiny manifests and configs for the training tests (built in code, no downloads).

Faces come from `fexdata.sample.sample_face` (the public-domain astronaut photo, restyled per identity
and warped per affect), written as PNG crops and listed in a real manifest Parquet file written with
`fexdata.manifest.write_manifest`, so the tests read exactly what `fex build-manifest` produces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import pandas as pd

from fexdata.affects import AFFECTS
from fexdata.manifest import write_manifest
from fexdata.sample import sample_face
from fextrain.config import TrainConfig

# Small enough that a CPU step at 64x64 takes milliseconds.
TINY_ARCH: dict[str, Any] = {"base_width": 16, "max_width": 32, "bottleneck": 16, "latent_dim": 16,
                             "d_widths": [8, 16, 32]}
# A tiny architecture per registered model (tests parametrised over the registry need one for each;
# a model registered without an entry here fails those tests by name).
TINY_ARCHS: dict[str, dict[str, Any]] = {
    "fexgan": TINY_ARCH,
    "stargan": {"g_conv_dim": 8, "g_repeat": 2, "d_conv_dim": 4},
    "exprgan": {"enc_base": 8, "enc_max": 64, "dec_base": 16, "d_widths": [4, 8, 8, 16], "d_fc": 32, "q_hidden": 8, "dz_widths": [8, 8, 8]},
    "fexgan-skip": {"base_width": 16, "max_width": 32, "bottleneck": 16, "d_widths": [8, 16, 32]},
    "degan": {"base_width": 8, "max_width": 32, "rep_dim": 16, "noise_dim": 8, "local_width": 8, "local_fc": 8},
    "warp-refine": {"widths": [4, 8, 8, 16], "d_widths": [8, 16, 32]},
}
# Loss settings a tiny run needs, so that 60 steps at lr 1e-3 show the reconstruction wiring the shared
# tests look at (tiny decoders sit on a plateau of near-constant output for tens of steps otherwise):
# ExprGAN's identity network trained for a few steps and its controller stage short (tests/test_exprgan.py
# runs the default stage proportions); DE-GAN's own-identity reconstruction weighted as pix2pix's L1 (100).
TINY_LOSSES: dict[str, dict[str, Any]] = {
    "exprgan": {"id_net": {"width": 4, "steps": 20, "batch": 8}, "stage2_start": 0.1},
    "degan": {"lambda_rec": 100.0},
}


def write_tiny_manifest(root: Path, *, identities: int = 2, affects: tuple[str, ...] = ("anger", "joy", "neutral"),
                        per_cell: int = 2, size: int = 64, val_identities: int = 0,
                        manifest_affects: tuple[str, ...] = AFFECTS,
                        intensity: Callable[[int, str, int], float] | None = None) -> Path:
    """root/manifest.parquet over identities x affects x per_cell crops of `size` px (train split),
    plus `val_identities` more identities in a val split; `intensity(identity, affect, k)` fills the
    `intensity` column (NaN: unknown), which is otherwise left out."""
    rows = []
    crops = root / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    for ident in range(identities + val_identities):
        split = "train" if ident < identities else "val"
        for affect in affects:
            for k in range(per_cell):
                face = sample_face(ident, affect, size=size, intensity=0.6 + 0.4 * k / max(1, per_cell - 1), seed=k)
                rel = f"crops/id{ident}_{affect}_{k}.png"
                cv2.imwrite(str(root / rel), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                rows.append({
                    "image": rel, "identity": f"test:id{ident}", "affect": affect,
                    "affect_index": list(manifest_affects).index(affect), "split": split, "weight": 1.0,
                    "source": "test", "source_path": rel, "item": f"id{ident}_{affect}_{k}", "ingest": ".",
                    "crop_size": size,
                    **({} if intensity is None else {"intensity": intensity(ident, affect, k)}),
                })
    df = pd.DataFrame(rows)
    identities_sorted = sorted(set(df["identity"]))
    df["identity_index"] = [identities_sorted.index(i) for i in df["identity"]]
    return write_manifest(df, root / "manifest.parquet", affects=manifest_affects)


def tiny_config(manifest: Path, out: Path, model: str = "fexgan", **overrides: Any) -> TrainConfig:
    """A CPU config at 64x64 with the model's tiny architecture; every log/checkpoint cadence overridable.

    fp32 (amp off), so results do not depend on whether this CPU has native bf16 (amp auto would use it)."""
    settings: dict[str, Any] = dict(manifest=str(manifest), out=str(out), model=model, size=64, steps=4, batch=4,
                                    device="cpu", amp="off", log_every=1, ckpt_every=100, sample_every=0, num_samples=3,
                                    arch=dict(TINY_ARCHS[model]), loss=dict(TINY_LOSSES.get(model, {})),
                                    cache_dir=str(out.parent / f"{out.name}-cache"))
    settings.update(overrides)
    return TrainConfig(**settings)
