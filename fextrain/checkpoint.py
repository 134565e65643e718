"""Checkpoints and exports of a run directory, written atomically and read without arbitrary pickle.

* `RUN/checkpoints/last.pt`: one dict - format, step, config (the run's TrainConfig as a dict),
  `nets` / `optimizers` ({name: state_dict} for every network of the model and its optimisers; a
  learning-rate schedule is a function of the step) and `rng` (every random stream of every rank). Written to a
  temporary file and renamed, so a crash mid-write leaves the previous checkpoint intact. Read with
  `torch.load(weights_only=True)`: tensors, numbers, strings and containers only, so a checkpoint
  from elsewhere cannot run code.
* `RUN/generator.safetensors` + `RUN/generator.json`: the generator alone (with its normalisation
  statistics) and the run's config, for inference without torch pickles (`fextrain.models.load_editor`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from torch import nn

from fexdata.errors import TrainingError
from fexdata.paths import atomic_path, atomic_write_text

FORMAT = 2
CHECKPOINT = Path("checkpoints") / "last.pt"
GENERATOR = "generator.safetensors"
GENERATOR_META = "generator.json"


class CheckpointError(TrainingError):
    """A checkpoint or export that is missing, unreadable or from an incompatible fex."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """torch.save `state` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def _from_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (FExGAN only: generator/discriminator/g_opt/d_opt keys) as format 2."""
    nets = {k: state.pop(k) for k in ("generator", "discriminator") if k in state}
    opts = {name: state.pop(key) for name, key in (("generator", "g_opt"), ("discriminator", "d_opt")) if key in state}
    config = dict(state.get("config") or {})
    if "target_law" in config:  # these moved into the model's loss settings
        config["loss"] = {**config.get("loss", {}), "target_law": config.pop("target_law"),
                          "target_sigma": config.pop("target_sigma", 0.25)}
    return {**state, "format": FORMAT, "config": config, "nets": nets, "optimizers": opts}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; a clear CheckpointError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (was the run started with this --out?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncation, refused globals: all one message
        raise CheckpointError(f"{path}: cannot be loaded safely ({str(exc).splitlines()[0]})") from None
    if isinstance(state, dict) and state.get("format") == 1:
        return _from_format_1(state)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fex checkpoint of format {FORMAT}")
    return state


def export_generator(generator: nn.Module, run_dir: str | os.PathLike, config: dict[str, Any], step: int) -> Path:
    """Write RUN/generator.safetensors and RUN/generator.json (model, architecture, affects, step, config)."""
    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    meta = {"model": config["model"], "size": config["size"], "affects": list(config["affects"]),
            "arch": config.get("arch", {}), "identities": list(config.get("identities") or []),
            "step": int(step), "config": config}
    with atomic_path(run_dir / GENERATOR) as tmp:
        save_safetensors(tensors, str(tmp), metadata={"fex": json.dumps(meta, sort_keys=True)})
    atomic_write_text(run_dir / GENERATOR_META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return run_dir / GENERATOR


def read_export(weights: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of an exported generator; meta from the .json beside it, else from the file itself."""
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no such exported generator")
    try:
        tensors = load_safetensors(str(weights))
        with safe_open(str(weights), "pt") as fh:
            inside = (fh.metadata() or {}).get("fex")
    except Exception as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    beside = weights.with_suffix(".json")
    if beside.is_file():
        meta = json.loads(beside.read_text())
    elif inside:
        meta = json.loads(inside)
    else:
        raise CheckpointError(f"{weights}: no {beside.name} beside it and no fex metadata inside")
    return tensors, meta
