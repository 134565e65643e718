"""STOPGAP, deleted once `fextrain.models.load_editor` (branch `loop`) is on main.

Gives `fex edit` the Editor interface of the model contract (/work/notes/model_contract.md) over today's
`fextrain.checkpoint.load_run`: `.edit(x, source_vec, target_vec)`, `.classify(x)`, `.affects`, `.size`,
`.model`, `.config`, `.identities`, `.step`, `.device`, `.has_discriminator`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class _Editor:
    generator: nn.Module
    discriminator: nn.Module | None
    model: str
    affects: tuple[str, ...]
    size: int
    config: dict[str, Any]
    identities: tuple[str, ...]
    step: int
    device: torch.device
    has_discriminator: bool

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        mu, _ = self.generator.encode(x.to(self.device), source_vec.to(self.device, torch.float32))
        return self.generator.decode(mu, target_vec.to(self.device, torch.float32))

    def classify(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.discriminator is None else self.discriminator(x.to(self.device))[1]


def load_editor(path: str | Path, device: str | torch.device = "cpu") -> Any:
    try:
        from fextrain.models import load_editor as real  # type: ignore[attr-defined]
    except ImportError:
        real = None
    if real is not None:
        return real(path, device)
    from fextrain.checkpoint import load_run

    path = Path(path)
    run_dir = path.parent if path.is_file() else path
    cfg, generator, discriminator, step = load_run(run_dir, device)
    config = asdict(cfg)
    return _Editor(generator, discriminator, cfg.model, tuple(cfg.affects), int(cfg.size), config, (), step,
                   torch.device(device), discriminator is not None)
