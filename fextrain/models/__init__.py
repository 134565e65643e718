"""Model registry: every architecture `fex train --model NAME` can build.

`build_model(name, **cfg)` returns `(generator, discriminator)`; `cfg` holds the architecture's own
settings (size, num_affects, widths, latent size). A new architecture is one module here plus one
line in MODELS.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .fexgan import build_fexgan

MODELS: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "fexgan": build_fexgan,
}


def build_model(name: str, **cfg) -> tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for a registered model name."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**cfg)
