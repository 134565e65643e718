"""The registry itself: model classes by name, and building one from a name or a run's config.

Model files import `register` from here (not from the package), so the package can import them
without a cycle.
"""
from __future__ import annotations

from typing import Any, Mapping

from fexdata.errors import TrainingError
from fexdata.registry import Registry
from fextrain.models.base import GANModel, arch_fields


class UnknownModel(TrainingError):
    """A model name that is not in the registry."""


MODELS: Registry[type[GANModel]] = Registry(
    "model", UnknownModel, "`fex train --help` lists the models and docs/models.md describes them", name_attr="name")
# Class decorator: make a GANModel subclass trainable as `fex train --model NAME` (sets cls.name).
register = MODELS.register
model_class = MODELS.lookup


def build_model(name: str, *, size: int, num_affects: int, num_identities: int = 0,
                loss: Mapping[str, Any] | Any | None = None, **arch: Any) -> GANModel:
    """A freshly initialised model: `arch` overrides its Arch dataclass, `loss` its Loss (dict or instance)."""
    cls = model_class(name)
    known = arch_fields(cls)
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
