"""The model registry: every architecture `fex train --model NAME` trains and `fex eval` / `fex edit` load.

Contract (details in `fextrain/models/base.py` and docs/models.md):

    MODELS: dict[str, type[GANModel]]            name -> class, filled by @register("name")
    build_model(name, *, size, num_affects, num_identities=0, loss=None, **arch) -> GANModel
    load_editor(path, device="cpu") -> Editor     path: a run directory (its latest checkpoint, else its
                                                  export) or an exported generator.safetensors (+ .json)
    Editor.edit(x, source_vec, target_vec) -> x'  x, x' float NCHW in [-1, 1]; vectors [B, K] float in
                                                  `Editor.affects` order, may be mixed or scaled
    Editor.classify(x) -> logits [B, K] | None    the discriminator's affect head (None: no head, or
                                                  only the exported generator was loaded)
    Editor.affects, .size, .model (registry name), .config (the run's config dict), .identities
    (train identity names, the index order of Batch.identity), .step, .device, .gan (the GANModel)

An Editor is in eval mode; call it under torch.no_grad(). A new model is one file here with a
`@register`-ed GANModel subclass, imported at the bottom of this module.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Mapping

from fexdata.errors import TrainingError

from .base import Batch, GANModel, Optim, StepContext, affect_vector, one_hot

MODELS: dict[str, type[GANModel]] = {}


class UnknownModel(TrainingError):
    """A model name that is not in the registry."""


def register(name: str) -> Callable[[type[GANModel]], type[GANModel]]:
    """Class decorator: make a GANModel subclass trainable as `fex train --model NAME`."""
    def add(cls: type[GANModel]) -> type[GANModel]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        cls.name = name
        MODELS[name] = cls
        return cls
    return add


def model_class(name: str) -> type[GANModel]:
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}",
                           "`fex train --help` lists the models and docs/models.md describes them")
    return MODELS[name]


def build_model(name: str, *, size: int, num_affects: int, num_identities: int = 0,
                loss: Mapping[str, Any] | Any | None = None, **arch: Any) -> GANModel:
    """A freshly initialised model: `arch` overrides its Arch dataclass, `loss` its Loss (dict or instance)."""
    cls = model_class(name)
    known = {f.name for f in fields(cls.Arch)}
    given = {"size": size, "num_affects": num_affects, "num_identities": num_identities}
    try:
        arch_cfg = cls.Arch(**{k: v for k, v in given.items() if k in known}, **arch)
        if loss is None or isinstance(loss, Mapping):
            loss = cls.Loss(**(loss or {}))
    except (TypeError, ValueError) as exc:  # an unknown key or a value the model refuses
        raise TrainingError(f"{name}: {exc}", f"see the {name} settings in docs/models.md") from None
    return cls(arch_cfg, loss)


def build_from_config(config: Mapping[str, Any]) -> GANModel:
    """The model a run's config (TrainConfig as a dict) describes, freshly initialised."""
    return build_model(config["model"], size=int(config["size"]), num_affects=len(config["affects"]),
                       num_identities=len(config.get("identities") or ()), loss=config.get("loss"),
                       **(config.get("arch") or {}))


# Registered models: each module's @register runs on import.
from . import fexgan, stargan  # noqa: E402,F401
from .editor import Editor, load_editor  # noqa: E402

__all__ = ["MODELS", "Batch", "Editor", "GANModel", "Optim", "StepContext", "UnknownModel", "affect_vector", "build_from_config",
           "build_model", "load_editor", "model_class", "one_hot", "register"]
