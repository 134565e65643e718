"""Loading any registered model for inference: `load_editor(path)` -> Editor, used by `fex eval` and `fex edit`."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fexdata.errors import EditError
from fextrain.checkpoint import (CHECKPOINT, GENERATOR, CheckpointError, load_checkpoint,
                                 read_export)
from fextrain.models.base import GANModel
from fextrain.models.registry import build_from_config


@dataclass
class Editor:
    """A trained model in eval mode on `device`, behind the uniform inference interface."""

    gan: GANModel
    model: str  # registry name
    affects: tuple[str, ...]  # the index order of affect vectors
    size: int  # input and output side in pixels
    config: dict[str, Any]  # the run's config (TrainConfig as a dict)
    identities: tuple[str, ...]  # train identity names (index order of the identity ids the model saw)
    step: int
    device: torch.device
    has_discriminator: bool  # False when only the exported generator was loaded

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor,
             identity: torch.Tensor | None = None) -> torch.Tensor:
        """x float NCHW in [-1, 1] at `size`; vectors [B, K] (mixed/scaled allowed) -> NCHW in [-1, 1].

        `identity` (identity-editing models only, `gan.identity_edit`): [B] indices into `identities`
        or [B, len(identities)] weights; None lets the model choose (DE-GAN: the average train identity).
        """
        d = self.device
        args = (x.to(d), source_vec.to(d, torch.float32), target_vec.to(d, torch.float32))
        if identity is None:
            return self.gan.edit(*args)
        if not self.gan.identity_edit:
            raise EditError(f"model {self.model!r} edits expressions, not identities",
                            hint="leave --identity out, or use a run of an identity-editing model (degan)")
        return self.gan.edit(*args, identity=identity.to(d))

    @property
    def warps(self) -> bool:
        """Whether the model edits by warping its source (`warp_fields`), so paste-back can warp the full-resolution
        face."""
        return hasattr(self.gan, "warp_fields")

    def warp_fields(self, x: torch.Tensor, source_vec: torch.Tensor,
                    target_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A warping model's (edit, flow, luminance change) from one forward (`WarpRefine.warp_fields`)."""
        d = self.device
        return self.gan.warp_fields(x.to(d), source_vec.to(d, torch.float32), target_vec.to(d, torch.float32))

    def identity_index(self, name: str) -> int:
        """Index of a train identity by name (e.g. 'jaffe:KA'), for `edit(..., identity=)`."""
        if name not in self.identities:
            shown = ", ".join(self.identities[:10]) + (" ..." if len(self.identities) > 10 else "")
            raise EditError(f"identity {name!r} is not one of this run's train identities: {shown}",
                            hint="name one of the run's train identities (config.json, `identities`)")
        return self.identities.index(name)

    def classify(self, x: torch.Tensor) -> torch.Tensor | None:
        """Affect logits [B, K] from the discriminator's head; None without one."""
        return self.gan.classify(x.to(self.device)) if self.has_discriminator else None

    def real_fake(self, x: torch.Tensor) -> torch.Tensor | None:
        """Real/fake logits [B] (> 0: real) from the discriminator; None without one or without a threshold."""
        return self.gan.real_fake(x.to(self.device)) if self.has_discriminator else None


def _editor(gan: GANModel, config: dict[str, Any], step: int, device: str | torch.device, has_d: bool) -> Editor:
    device = torch.device(device)
    gan.to(device).eval()
    return Editor(gan=gan, model=config["model"], affects=tuple(config["affects"]), size=int(config["size"]),
                  config=config, identities=tuple(config.get("identities") or ()), step=int(step), device=device,
                  has_discriminator=has_d)


def load_editor(path: str | Path, device: str | torch.device = "cpu") -> Editor:
    """Load a model for inference from a run directory or an exported generator.

    A run directory gives its latest checkpoint (every network, so `classify` works) or, when it has
    none, its export. A `.safetensors` file gives the exported generator alone (its `.json` beside it,
    or the metadata inside the file), so `classify` returns None.
    """
    path = Path(path)
    if path.is_dir() and (path / CHECKPOINT).is_file():
        state = load_checkpoint(path / CHECKPOINT)
        config = state["config"]
        gan = build_from_config(config)
        for name, net in gan.networks().items():
            net.load_state_dict(state["nets"][name])
        return _editor(gan, config, state["step"], device, True)
    weights = path / GENERATOR if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path}: no checkpoint ({CHECKPOINT}) and no exported generator ({GENERATOR})")
    tensors, meta = read_export(weights)
    config = meta.get("config")
    if config is None:  # an export from before configs were embedded: the run's config.json beside it
        run_config = weights.parent / "config.json"
        if not run_config.is_file():
            raise CheckpointError(f"{weights}: the export carries no config and there is no config.json beside it")
        config = json.loads(run_config.read_text())
    gan = build_from_config(config)
    gan.networks()["generator"].load_state_dict(tensors)
    return _editor(gan, config, meta.get("step", 0), device, False)


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """(TrainConfig, generator, discriminator or None, step) of a run, in eval mode on `device`.

    Kept for callers written before `fextrain.models.load_editor`, which new code should use.
    """
    from fextrain.config import from_dict  # config imports the registry, which loads this module

    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() and not (run_dir / GENERATOR).is_file():
        raise CheckpointError(f"{run_dir}: not a fex run directory (no {CHECKPOINT} or {GENERATOR})")
    ed = load_editor(run_dir, device)
    nets = ed.gan.networks()
    discriminator = nets["discriminator"] if ed.has_discriminator else None
    return from_dict(ed.config, saved=True), nets["generator"], discriminator, ed.step


__all__ = ["Editor", "load_editor", "load_run"]
