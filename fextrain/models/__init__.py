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

from .base import Batch, GANModel, Optim, StepContext, affect_vector, one_hot
from .registry import MODELS, UnknownModel, build_from_config, build_model, model_class, register

# Registered models: each module's @register runs on import.
from . import degan, exprgan, fexgan, fexgan_skip, stargan, warp_refine  # noqa: E402,F401
from .editor import Editor, load_editor, load_run  # noqa: E402

__all__ = ["MODELS", "Batch", "Editor", "GANModel", "Optim", "StepContext", "UnknownModel", "affect_vector", "build_from_config",
           "build_model", "load_editor", "load_run", "model_class", "one_hot", "register"]
