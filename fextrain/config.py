"""Training configuration: one dataclass, loadable from YAML/JSON, overridable from the command line.

Precedence, lowest first: defaults < the preset (`--preset`, the model's `presets`) < the run's own
config.json (on --resume) < --config FILE < --set key=value < the explicit CLI options. The resolved config
(with the preset's resolved name) is written to RUN/config.json and into every checkpoint, so a run always
says exactly how it was trained.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from fexdata.errors import TrainingError
from fexdata.paths import atomic_write_text

from fextrain.augment import AugmentConfig
from fextrain.device import resolve_device
from fextrain.models.base import GANModel
from fextrain.models.registry import UnknownModel, model_class


class ConfigError(TrainingError):
    """A config file or override that cannot be used; the message names the key."""


@dataclass
class TrainConfig:
    """One run's settings. `steps`, `batch`, `lr` and `betas` left as None take the model's paper values
    (`GANModel.defaults`); `arch` overrides fields of the model's Arch dataclass and `loss` is its Loss."""

    manifest: str = ""
    out: str = ""
    model: str = "fexgan"  # a name in fextrain.models.MODELS
    # "paper" (the model's own defaults) or a name in the model's `presets`, whose settings from_dict lays under
    # the rest of the config ("auto" there: paper on CUDA, else cpu-64). A TrainConfig built directly only
    # records the name.
    preset: str = "paper"
    size: int = 128  # training resolution; 64 (CPU tests), 128 (the papers), 256
    steps: int | None = None  # the run's TOTAL iterations (fexgan: 100K, stargan: 200K)
    batch: int | None = None  # per device (fexgan: 32, stargan: 16); under torchrun each rank takes this many
    lr: float | None = None  # Adam, every network (fexgan: 2e-4, stargan: 1e-4)
    betas: tuple[float, float] | None = None  # Adam betas (both papers: 0.5, 0.999)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 where native: CUDA with bf16, CPUs with AVX512-BF16/AMX) | bf16 | off
    channels_last: str = "auto"  # auto (on CUDA) | on | off
    compile: bool = False  # torch.compile the networks (CUDA; first steps are slow while it compiles)
    data_on_device: str = "auto"  # auto | on | off: keep the packed uint8 training images on the GPU
    cache_dir: str = ""  # packed-image cache folder; empty: <manifest>.cache/ beside the manifest
    ckpt_every: int = 5000  # steps between checkpoints (one is always written at exit); ~0.5 GB each at 128
    sample_every: int = 1000  # steps between sample grids (0: only at exit)
    log_every: int = 50  # steps between scalar logs (TensorBoard, metrics.jsonl, bar)
    num_samples: int = 8  # source faces in each sample grid
    # Cross-validation (`fex eval --fer-folds`): train on every row outside this fold of the manifest's
    # identity-disjoint folds (`fex build-manifest --folds K`), whatever its split; None: the train split.
    holdout_fold: int | None = None
    arch: dict[str, Any] = field(default_factory=dict)  # the model's architecture settings (widths, ...)
    loss: Any = None  # the model's Loss dataclass (weights, schedules, condition laws); a dict is converted
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # affects, identities, recipe, versions and the rest of `arch` are filled by fextrain.train.setup in the
    # run's resolved copy (Run.cfg, RUN/config.json, checkpoints), never in the caller's config.
    affects: list[str] = field(default_factory=list)  # filled from the manifest: the affect vector order
    identities: list[str] = field(default_factory=list)  # filled from the train split: identity id order
    # filled from the manifest: how its faces were found, aligned and cropped, so that `fex edit` crops a
    # user's faces the same way even when the manifest has moved (None: the manifest does not say)
    recipe: dict[str, Any] | None = None
    # filled at training: `fexdata.versions.versions()` of the session that last trained the run (a resume
    # under other versions is allowed and noted)
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cls = _model(self.model)
        if self.preset == "auto" or not isinstance(self.preset, str):  # only from_dict knows the device auto means
            raise ConfigError(f"preset {self.preset!r} must be resolved to a name first: build the config with "
                              "from_dict or resolve")
        paper = cls.defaults
        self.steps = paper.steps if self.steps is None else self.steps
        self.batch = paper.batch if self.batch is None else self.batch
        self.lr = paper.lr if self.lr is None else self.lr
        self.betas = tuple(paper.betas if self.betas is None else self.betas)
        if self.loss is None or isinstance(self.loss, dict):
            self.loss = _build(cls.Loss, dict(self.loss or {}), "loss.")
        elif not isinstance(self.loss, cls.Loss):
            raise ConfigError(f"loss must be {cls.Loss.__name__} settings for model {self.model!r}")
        for key in _CHOICES:  # the runtime also takes a boolean for on/off
            if isinstance(getattr(self, key), bool):
                setattr(self, key, "on" if getattr(self, key) else "off")
        _validate(self)


# Smallest value of each whole-number setting (a batch of 1 or a cadence of 0 would fail deep inside the loop;
# a step count of 0 is only taken by a model whose `prepare` alone makes its edits: `_validate`).
_AT_LEAST = {"size": 16, "steps": 0, "batch": 2, "seed": 0, "ckpt_every": 1, "sample_every": 0, "log_every": 1,
             "num_samples": 0}
_CHOICES = {"amp": ("auto", "bf16", "off"), "channels_last": ("auto", "on", "off"),
            "data_on_device": ("auto", "on", "off")}


def _model(name: str) -> type[GANModel]:
    try:
        return model_class(name)
    except UnknownModel as exc:
        raise ConfigError(str(exc), exc.hint) from None


def preset_names(cls: type[GANModel]) -> tuple[str, ...]:
    """Every `--preset` value model `cls` takes."""
    return ("auto", "paper", *cls.presets)


def _check_preset(cls: type[GANModel], name: Any) -> None:
    if name != "paper" and (not isinstance(name, str) or name not in cls.presets):
        raise ConfigError(f"unknown preset {name!r} for model {cls.name}; its presets: "
                          f"{', '.join(preset_names(cls))}",
                          hint="`fex train --help` lists each model's presets; docs/train.md describes them")


def _preset_layer(data: dict[str, Any]) -> dict[str, Any]:
    """The settings of the preset `data` names, as config keys; resolves "auto" in `data` to the name it picks."""
    cls = _model(str(data.get("model") or TrainConfig.model))
    name = data.get("preset", TrainConfig.preset)
    if name == "auto":  # the paper's settings where they were meant to run, the cheap ones elsewhere
        cuda = resolve_device(str(data.get("device") or TrainConfig.device), ConfigError).startswith("cuda")
        name = "paper" if cuda or "cpu-64" not in cls.presets else "cpu-64"
    _check_preset(cls, name)
    data["preset"] = name
    return cls.presets[name].as_config() if name != "paper" else {}


def _validate(cfg: TrainConfig) -> None:
    """Refuse values outside their domain with the key's name, before anything is built or written."""
    for key, least in _AT_LEAST.items():
        if getattr(cfg, key) < least:
            hint = " (normalisation layers need more than one sample)" if key == "batch" else ""
            raise ConfigError(f"{key} must be at least {least}{hint}; got {getattr(cfg, key)}")
    if cfg.steps == 0 and not _model(cfg.model).fitted_without_steps(cfg.arch):
        raise ConfigError(f"steps 0 would save {cfg.model}'s untrained networks, which edit nothing",
                          hint="give --steps 1 or more; only warp-refine with arch.prior=true and "
                               "arch.residual=false is whole before its first step (its expression prior alone)")
    if cfg.holdout_fold is not None and cfg.holdout_fold < 0:
        raise ConfigError(f"holdout_fold must be a fold number (0 or more) or null; got {cfg.holdout_fold}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"lr must be a positive number; got {cfg.lr}")
    if len(cfg.betas) != 2 or not all(0 <= b < 1 for b in cfg.betas):
        raise ConfigError(f"betas must be two numbers in [0, 1) (Adam's); got {list(cfg.betas)}")
    for key, allowed in _CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"{key} must be {', '.join(allowed[:-1])} or {allowed[-1]}; got {getattr(cfg, key)!r}")
    # Loss weights, schedule fractions, augmentation strengths and widths: no model has a meaningful
    # negative or non-finite one (the models check their own ranges beyond that).
    for where, value in (("arch", cfg.arch), ("loss", cfg.loss), ("augment", cfg.augment)):
        _check_numbers(value, where)


def _check_numbers(value: Any, where: str) -> None:
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_numbers(item, where)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where} must be a finite number, 0 or more; got {value}")


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["betas"] = list(cfg.betas)
    return d


# Fields whose default is None ("the model's", "none") take this type once set, read from the annotation.
_OPTIONAL_NUMBERS = {"int | None": int, "float | None": float}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(where + k for k in unknown)}; known: {', '.join(known)}")
    kwargs = {}
    defaults = _defaults(cls)
    for name, value in data.items():
        default = defaults.get(name)
        if cls is TrainConfig and name == "loss":
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{where}loss must be a mapping, got {value!r}")
        elif default is None and str(known[name].type) in _OPTIONAL_NUMBERS and value is not None:
            value = _number(value, _OPTIONAL_NUMBERS[str(known[name].type)], where + name)
        elif is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{name} must be a mapping, got {value!r}")
            value = _build(type(default), value, f"{where}{name}.")
        elif name == "betas" and value is not None:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}betas must be two numbers, e.g. [0.5, 0.999]; got {value!r}")
            value = tuple(_number(b, float, where + name) for b in value)
        elif isinstance(default, str) and isinstance(value, bool):
            value = "on" if value else "off"  # YAML reads a bare on/off as a boolean
        elif isinstance(default, str) and not isinstance(value, str):
            if not isinstance(value, (int, float)):
                raise ConfigError(f"{where}{name} must be a string, got {value!r}")
            value = str(value)
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}{name} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
            value = _number(value, type(default), where + name)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {exc}") from None


def _defaults(cls: type) -> dict[str, Any]:
    """Field defaults of a dataclass without running its __post_init__."""
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _number(value: Any, kind: type, key: str) -> int | float:
    """Accept 5, 5.0 or "5" for an int key and any real number for a float key; refuse the rest."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise ConfigError(f"{key} must be a whole number, got {value!r}")
        return int(number)
    return number


def from_dict(data: dict[str, Any], *, saved: bool = False) -> TrainConfig:
    """Build a TrainConfig from a (possibly partial, nested) dict; unknown keys are errors. `data["preset"]`'s
    settings lie under everything else in `data` (a None there is unset: the preset's value, else the paper's).

    `saved`: `data` is a run's resolved config (RUN/config.json, a checkpoint's), which holds every setting
    already, so its preset only records how the run was made: a preset retuned or removed since changes
    nothing and breaks nothing in it."""
    data = dict(data)
    if "target_law" in data or "target_sigma" in data:  # configs of fex <= 0.1 kept these at the top
        data["loss"] = {**(data.get("loss") or {}), **{k: data.pop(k) for k in ("target_law", "target_sigma")
                                                       if k in data}}
    if "preset" in data and not saved:
        layer = _preset_layer(data)
        data = merge(layer, {k: v for k, v in data.items() if v is not None})
    return _build(TrainConfig, data, "")


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON config file (JSON is YAML, so one parser reads both)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base` (nested mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "arch":
            out[key] = merge(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["loss.gamma=50", "augment.flip=false"]` -> nested dict; values are read as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. loss.gamma=50")
        node = out
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} was set to a value above, "
                                  "so it has no keys")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def save_json(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as readable JSON, atomically."""
    atomic_write_text(path, json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def resolve(out: str | os.PathLike, *, resume: bool = False, config_file: str | os.PathLike | None = None,
            sets: list[str] | tuple[str, ...] = (), options: dict[str, Any] | None = None,
            preset: str = "paper") -> TrainConfig:
    """The run's config: defaults < preset < RUN/config.json (resume) < config_file < sets < options.

    `options` holds only what the user gave explicitly on the command line, so a default CLI value
    never overrides a config file or the resumed run's settings. `preset` names the preset where none of
    them does (`fex train` passes its default, auto); a resumed run keeps its own.
    """
    data: dict[str, Any] = {"preset": preset}
    saved = Path(out) / "config.json"
    if resume and saved.is_file():
        try:
            data = json.loads(saved.read_text())
        except ValueError as exc:
            raise ConfigError(f"{saved}: not valid JSON ({exc})",
                              hint="restore it, or delete it to resume with the checkpoint's own config") from None
        data.setdefault("preset", "paper")  # runs made before presets existed ran the paper's settings
    model, made_with = data.get("model"), data["preset"] if resume and saved.is_file() else None
    if config_file:
        data = merge(data, load_file(config_file))
    data = merge(data, parse_set(sets))
    data = merge(data, {k: v for k, v in (options or {}).items() if v is not None})
    data["out"] = str(out)
    # Checked before the merged config is read: the saved loss settings belong to the saved model.
    if model and data.get("model") != model:
        raise ConfigError(f"cannot resume {out}: model changed from {model} to {data.get('model')}",
                          hint="resume without --model, or start a new run with another --out")
    cfg = from_dict(data, saved=made_with is not None)
    # The saved settings lie over any preset, so another one would change nothing but the name it records.
    if made_with and cfg.preset != made_with:
        raise ConfigError(f"cannot resume {out}: preset changed from {made_with} to {cfg.preset}",
                          hint="resume without --preset, or start a new run with another --out")
    return cfg
