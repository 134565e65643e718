"""Checkpoints and exports of a run directory, written atomically and read without arbitrary pickle.

* `RUN/checkpoints/last.pt`: one dict (format, step, config, both networks, both optimisers, RNG
  states, pair-sampler state). Written to a temporary file and renamed, so a crash mid-write leaves
  the previous checkpoint intact. Read with `torch.load(weights_only=True)`: tensors, numbers,
  strings and containers only, so a checkpoint from elsewhere cannot run code.
* `RUN/generator.safetensors` + `RUN/generator.json`: the generator alone (encoder + decoder, with
  BatchNorm statistics) and what is needed to rebuild it, for inference without torch pickles.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import nn

from fexdata.paths import atomic_path, atomic_write_text
from fextrain.config import TrainConfig, from_dict
from fextrain.models import build_model

FORMAT = 1
CHECKPOINT = Path("checkpoints") / "last.pt"
GENERATOR = "generator.safetensors"
GENERATOR_META = "generator.json"


class CheckpointError(RuntimeError):
    """A checkpoint or export that is missing, unreadable or from an incompatible fex."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """torch.save `state` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; a clear CheckpointError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (was the run started with this --out?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncation, refused globals: all one message
        raise CheckpointError(f"{path}: cannot be loaded safely ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fex checkpoint of format {FORMAT}")
    return state


def _model_cfg(cfg: TrainConfig) -> dict[str, Any]:
    return {**cfg.arch, "size": cfg.size, "num_affects": len(cfg.affects)}


def build_from_config(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The run's (generator, discriminator), freshly initialised, as its config describes them."""
    return build_model(cfg.model, **_model_cfg(cfg))


def export_generator(generator: nn.Module, run_dir: str | os.PathLike, cfg: TrainConfig, step: int) -> Path:
    """Write RUN/generator.safetensors and RUN/generator.json (model name, architecture, affects, step)."""
    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    meta = {"model": cfg.model, "arch": _model_cfg(cfg), "affects": list(cfg.affects), "size": cfg.size,
            "step": int(step)}
    with atomic_path(run_dir / GENERATOR) as tmp:
        save_safetensors(tensors, str(tmp), metadata={"fex": json.dumps(meta, sort_keys=True)})
    atomic_write_text(run_dir / GENERATOR_META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return run_dir / GENERATOR


def load_generator(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the exported generator (eval mode) from RUN/generator.safetensors; returns (generator, meta)."""
    run_dir = Path(run_dir)
    meta_path, weights = run_dir / GENERATOR_META, run_dir / GENERATOR
    if not weights.is_file() or not meta_path.is_file():
        raise CheckpointError(f"{run_dir}: no exported generator ({GENERATOR} and {GENERATOR_META})")
    meta = json.loads(meta_path.read_text())
    generator, _ = build_model(meta["model"], **meta["arch"])
    generator.load_state_dict(load_safetensors(str(weights)))
    return generator.to(device).eval(), meta


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu"
             ) -> tuple[TrainConfig, nn.Module, nn.Module | None, int]:
    """(config, generator, discriminator, step) of a run, both networks in eval mode on `device`.

    From RUN/checkpoints/last.pt when present; otherwise from the exported generator alone, with
    discriminator None (a run directory copied without its checkpoints still evaluates).
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        cfg = from_dict(state["config"])
        generator, discriminator = build_from_config(cfg)
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        return cfg, generator.to(device).eval(), discriminator.to(device).eval(), int(state["step"])
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir}: not a fex run directory (no config.json or {CHECKPOINT})")
    cfg = from_dict(json.loads(config_path.read_text()))
    generator, meta = load_generator(run_dir, device)
    return cfg, generator, None, int(meta.get("step", 0))
