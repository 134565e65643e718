"""Fixed helper networks trained from a manifest and cached: load by fingerprint, else train and save.

The eval judge (`fextrain.evaluate.judge`) and ExprGAN's identity network (`fextrain.identity_net`) are
trained from a manifest's train split and then reused, by `fex eval` / `fex edit` and by every run,
resume and DDP rank on the same data. A cache entry is two files: the weights (safetensors) and a JSON
sidecar holding the fingerprint of what trained them (pixels, labels, settings, code version), the
SHA-256 of the weights file and whatever the owner needs to rebuild the network.

The weights are written first and the sidecar last, each atomically, so a sidecar only ever vouches for
weights it has hashed. An entry that is absent, trained on other data, unreadable, truncated or edited
(its weights no longer hash to the sidecar's digest) is a miss: it is retrained and overwritten, never
loaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save as save_bytes

from fexdata.paths import atomic_write_bytes, atomic_write_text

T = TypeVar("T")
Weights = dict[str, torch.Tensor]


def fingerprint(header: Any, images: np.ndarray, *parts: bytes | np.ndarray) -> str:
    """SHA-256 of `header` (JSON: version, settings, shapes), then each part (arrays as their bytes), then
    the images, read in chunks so a memory-mapped pack is never loaded whole."""
    h = hashlib.sha256(json.dumps(header).encode())
    for part in parts:
        h.update(part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes())
    for start in range(0, len(images), 1024):
        h.update(np.ascontiguousarray(images[start : start + 1024]).tobytes())
    return h.hexdigest()


class CacheMiss(Exception):
    """A cache entry that cannot be used; `str(miss)` says why (for the user's log)."""


@dataclass(frozen=True)
class CachedNet:
    """One cache entry: `weights` (safetensors) and `sidecar` (JSON)."""

    weights: Path
    sidecar: Path

    @classmethod
    def named(cls, folder: Path, stem: str) -> "CachedNet":
        return cls(folder / f"{stem}.safetensors", folder / f"{stem}.json")

    def read(self, fingerprint: str | None) -> tuple[Weights, dict[str, Any]]:
        """(weights, sidecar) when the entry exists, was trained for `fingerprint` (None: any) and its weights
        are intact; else raises CacheMiss."""
        if not (self.weights.is_file() and self.sidecar.is_file()):
            raise CacheMiss("none cached")
        try:
            meta = json.loads(self.sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CacheMiss(f"{self.sidecar.name} is unreadable ({e})") from None
        if not isinstance(meta, dict):
            raise CacheMiss(f"{self.sidecar.name} is not a cache sidecar")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise CacheMiss("the cached one was trained on other data or settings")
        data = self.weights.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
            raise CacheMiss(f"{self.weights.name} does not match its sidecar's digest (corrupt or rewritten)")
        try:
            return load_bytes(data), meta
        except SafetensorError as e:  # hashed right but unreadable: written by an incompatible version
            raise CacheMiss(f"{self.weights.name} is unreadable ({e})") from None

    def load(self, fingerprint: str | None, restore: Callable[[Weights, dict[str, Any]], T]) -> T:
        """`restore(weights, sidecar)` of a usable entry (`read`); raises CacheMiss, also when the weights do
        not fit the network `restore` builds."""
        weights, meta = self.read(fingerprint)
        try:
            return restore(weights, meta)
        except (RuntimeError, KeyError, TypeError, ValueError) as e:  # load_state_dict, or a sidecar field
            raise CacheMiss(f"{self.weights.name} does not fit the network ({str(e).splitlines()[0]})") from None

    def write(self, weights: Weights, fingerprint: str, meta: dict[str, Any]) -> None:
        """Weights, then the sidecar that vouches for them (fingerprint, digest, `meta`)."""
        data = save_bytes({k: v.detach().cpu().contiguous() for k, v in weights.items()})
        atomic_write_bytes(self.weights, data)
        sidecar = {"fingerprint": fingerprint, **meta, "weights_sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_text(self.sidecar, json.dumps(sidecar, indent=2) + "\n")


def load_or_train(entry: CachedNet, fingerprint: str, restore: Callable[[Weights, dict[str, Any]], T],
                  train: Callable[[], tuple[T, Weights, dict[str, Any]]]) -> tuple[T, str | None]:
    """(object, None) restored from `entry` when it holds a usable net for `fingerprint`; else trained, written,
    and returned with the reason the cache could not serve it ("none cached", "... corrupt ...").

    `restore(weights, sidecar)` rebuilds the object; `train()` returns (object, its weights, the sidecar
    fields to keep)."""
    try:
        return entry.load(fingerprint, restore), None
    except CacheMiss as miss:
        why = str(miss)
    obj, weights, meta = train()
    entry.write(weights, fingerprint, meta)
    return obj, why


__all__ = ["CacheMiss", "CachedNet", "fingerprint", "load_or_train"]
