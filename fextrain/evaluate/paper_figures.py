"""The papers' qualitative figures for a trained generator (FExGAN figures 4-6, plus an intensity sweep).

* random samples: the decoder alone on random latents, one row per latent, one column per affect;
* identities: one neutral source per identity, turned into every affect;
* mixed expressions: two affects switched on together (anger+sadness, joy+disgust, fear+surprise);
* intensity sweep: one affect's weight from 0 to beyond 1 (training saw weights around 1, in [0, 2]).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fexdata.images import write_png
from fextrain.evaluate.figures import as_uint8_images, image_grid
from fextrain.evaluate.generate import edit, one_hot

MIXED_PAIRS: tuple[tuple[str, str], ...] = (("anger", "sadness"), ("joy", "disgust"), ("fear", "surprise"))
DEFAULT_SWEEP: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def random_samples_figure(
    path: Path, generator: torch.nn.Module, affects: Sequence[str], dim: int, rows: int, seed: int, cell: int,
    device: str = "cpu",
) -> Path:
    """Each row one latent z ~ N(0, I), decoded with every affect (the same z across a row)."""
    k = len(affects)
    z_rows = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))
    z = z_rows.repeat_interleave(k, dim=0)
    targets = one_hot(np.tile(np.arange(k), rows), k)
    with torch.no_grad():
        images = generator.decode(z.to(device), targets.to(device)).float().cpu()
    arr = as_uint8_images(images)
    grid = image_grid([list(arr[r * k : (r + 1) * k]) for r in range(rows)], col_labels=list(affects),
                      row_labels=[f"z{r}" for r in range(rows)], cell=cell)
    return write_png(path, grid)


def identities_figure(
    path: Path, generator: torch.nn.Module, sources: np.ndarray, source_affects: np.ndarray,
    labels: Sequence[str], affects: Sequence[str], size: int, cell: int, device: str = "cpu",
) -> Path:
    """One row per identity: its source, then the source edited into each affect."""
    k, n = len(affects), len(sources)
    targets = one_hot(np.tile(np.arange(k), n), k)
    src_vecs = one_hot(np.repeat(source_affects, k), k)
    out = as_uint8_images(edit(generator, np.repeat(sources, k, axis=0), src_vecs, targets, size, device=device))
    rows = [[sources[i], *out[i * k : (i + 1) * k]] for i in range(n)]
    return write_png(path, image_grid(rows, col_labels=["source", *affects], row_labels=list(labels), cell=cell))


def mixed_figure(
    path: Path, generator: torch.nn.Module, sources: np.ndarray, source_affects: np.ndarray,
    labels: Sequence[str], affects: Sequence[str], size: int, cell: int, device: str = "cpu",
) -> Path | None:
    """Per source: for each pair (a, b) the edits a, b and a+b (both weights 1, as in FExGAN fig. 6).

    Pairs whose affects the run does not have are left out; None when no pair is available.
    """
    pairs = [(a, b) for a, b in MIXED_PAIRS if a in affects and b in affects]
    if not pairs:
        return None
    k = len(affects)
    vecs, headers = [], []
    for a, b in pairs:
        va, vb = one_hot([affects.index(a)], k)[0], one_hot([affects.index(b)], k)[0]
        vecs += [va, vb, va + vb]
        headers += [a, b, f"{a}+{b}"]
    m = len(vecs)
    targets = torch.stack(vecs).repeat(len(sources), 1)
    src_vecs = one_hot(np.repeat(source_affects, m), k)
    out = as_uint8_images(edit(generator, np.repeat(sources, m, axis=0), src_vecs, targets, size, device=device))
    rows = [[sources[i], *out[i * m : (i + 1) * m]] for i in range(len(sources))]
    return write_png(path, image_grid(rows, col_labels=["source", *headers], row_labels=list(labels), cell=cell))


def intensity_figure(
    path: Path, generator: torch.nn.Module, sources: np.ndarray, source_affects: np.ndarray,
    labels: Sequence[str], affects: Sequence[str], affect: str, weights: Sequence[float], size: int, cell: int,
    device: str = "cpu",
) -> Path:
    """Per source: the target vector weight * one_hot(affect) for each weight (0 = no affect at all)."""
    k, m = len(affects), len(weights)
    base = one_hot([affects.index(affect)], k)[0]
    targets = torch.stack([w * base for w in weights]).repeat(len(sources), 1)
    src_vecs = one_hot(np.repeat(source_affects, m), k)
    out = as_uint8_images(edit(generator, np.repeat(sources, m, axis=0), src_vecs, targets, size, device=device))
    rows = [[sources[i], *out[i * m : (i + 1) * m]] for i in range(len(sources))]
    headers = ["source", *[f"{w:g}*{affect}" for w in weights]]
    return write_png(path, image_grid(rows, col_labels=headers, row_labels=list(labels), cell=cell))
