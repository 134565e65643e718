"""Running a trained generator for evaluation: edits of real faces and decodes of random latents.

Evaluation is deterministic: a source is encoded to its posterior mean (no reparameterisation noise)
and models run in eval mode (BatchNorm running statistics, no dropout), so the same run and manifest
give the same images and metrics every time.
"""
from __future__ import annotations

import numpy as np
import torch


def one_hot(indices: np.ndarray | list[int], num: int) -> torch.Tensor:
    """Affect vectors [N, num] with a 1 at each index."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    return torch.nn.functional.one_hot(idx, num).float()


def to_model_input(images: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float NCHW in [-1, 1], resized to the run's image size when given."""
    x = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


@torch.no_grad()
def edit(
    generator: torch.nn.Module,
    images: np.ndarray,
    source_vecs: torch.Tensor,
    target_vecs: torch.Tensor,
    size: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> torch.Tensor:
    """Generated images (float NCHW in [-1, 1], on CPU): each image re-rendered with its target vector.

    Vectors need not be one-hot: mixed expressions and intensity sweeps pass sums and scaled vectors.
    """
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size], size).to(device)
        mu, _ = generator.encode(x, source_vecs[start : start + batch_size].to(device))
        outs.append(generator.decode(mu, target_vecs[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0)


@torch.no_grad()
def latent_dim(generator: torch.nn.Module, size: int, num_affects: int, device: str = "cpu") -> int:
    """Width of the generator's latent code, read off one encode (no model attribute is assumed)."""
    mu, _ = generator.encode(torch.zeros(1, 3, size, size, device=device), torch.zeros(1, num_affects, device=device))
    return int(mu.shape[1])


@torch.no_grad()
def discriminate(
    discriminator: torch.nn.Module, images: torch.Tensor, batch_size: int = 64, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """(real/fake logits [N], affect logits [N, K]) as numpy arrays."""
    rf, aff = [], []
    for start in range(0, len(images), batch_size):
        r, a = discriminator(images[start : start + batch_size].to(device))
        rf.append(r.reshape(-1).float().cpu())
        aff.append(a.float().cpu())
    return torch.cat(rf).numpy(), torch.cat(aff).numpy()
