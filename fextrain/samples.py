"""Sample grids of a training run, rendered through the model's `edit()` like every other output."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from fextrain.pixels import to_uint8, to_unit_range
from fextrain.models import GANModel, one_hot


@torch.no_grad()
def render_grid(model: GANModel, images: np.ndarray, src_affects: np.ndarray, num_affects: int,
                device: torch.device, autocast: AbstractContextManager | None = None, pad: int = 2) -> np.ndarray:
    """A uint8 RGB grid: one row per source face; its columns are the source and one edit per affect.

    Edits run in eval mode (deterministic: no noise, running statistics, no dropout), so a grid
    consumes no random numbers and does not disturb training (the model's mode is restored). A model
    that edits identity (DE-GAN) draws column k on train identity k (modulo their number) instead.
    """
    was_training = model.training
    model.eval()
    identities = getattr(model.arch, "num_identities", 0) if model.identity_edit else 0
    try:
        with autocast or nullcontext():
            x = to_unit_range(torch.from_numpy(images).to(device)).contiguous()
            src = one_hot(torch.from_numpy(src_affects).to(device), num_affects)
            cols = [x]
            for k in range(num_affects):
                column = torch.full((len(x),), k, device=device)
                who = {"identity": column % identities} if identities else {}
                cols.append(model.edit(x, src, one_hot(column, num_affects), **who))
    finally:
        model.train(was_training)
    tiles = np.stack([to_uint8(c) for c in cols], axis=1)  # [n, K+1, H, W, 3]
    n, m, h, w, _ = tiles.shape
    grid = np.full((n * (h + pad) + pad, m * (w + pad) + pad, 3), 255, np.uint8)
    for r in range(n):
        for c in range(m):
            y, x0 = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x0:x0 + w] = tiles[r, c]
    return grid
