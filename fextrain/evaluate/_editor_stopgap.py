"""STOPGAP until `fextrain.models.load_editor` lands on main: today's checkpoint behind the uniform editor.

The model registry (branch `loop`) gives every model `edit(x, source_vec, target_vec)` and `classify(x)`;
`fex eval` is written against that interface only. This adapter wraps today's FExGAN checkpoint loading
in the same shape and is deleted when the real one is merged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fextrain.checkpoint import load_run
from fextrain.config import to_dict


@dataclass
class Editor:
    generator: torch.nn.Module
    discriminator: torch.nn.Module | None
    model: str
    affects: tuple[str, ...]
    size: int
    config: dict[str, Any]
    identities: tuple[str, ...]
    step: int
    device: torch.device

    @torch.no_grad()
    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        d = self.device
        mu, _ = self.generator.encode(x.to(d), source_vec.to(d, torch.float32))
        return self.generator.decode(mu, target_vec.to(d, torch.float32))

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.discriminator is None else self.discriminator(x.to(self.device))[1]

    @torch.no_grad()
    def discriminate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self.discriminator is None else self.discriminator(x.to(self.device))


def load_editor(path: str | Path, device: str | torch.device = "cpu") -> Editor:
    cfg, generator, discriminator, step = load_run(path, device)
    return Editor(generator, discriminator, cfg.model, tuple(cfg.affects), int(cfg.size), to_dict(cfg), (), step,
                  torch.device(device))
