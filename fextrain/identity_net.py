"""A face-identity network that fex trains itself, for identity-preserving training losses (ExprGAN's L_id).

ExprGAN compares a generated face with its source in the feature space of VGG-Face (activations of
conv1_2 ... conv5_2). Those weights cannot be fetched here, so fex trains a small VGG-shaped network
to tell the manifest's **train identities** apart (cross-entropy, all affects of each identity, so it
learns features that expression does not change) and uses the activations of its five stages the
same way.

It is deliberately not dlib's face descriptor: `fex eval` measures identity preservation with dlib's
network, and a training loss and the metric that judges it must never share a network (a generator
could learn to please one network's features without keeping the face). Nor is it the eval judge.

A run trains it for a share of its own steps (`identity_net_steps`; ExprGAN's `loss.id_net_share`), so a
smoke run starts in seconds. The trained network is cached beside the packed images (`fextrain.cached_net`:
safetensors + JSON), keyed by a fingerprint of its training pixels, labels and settings (the effective
steps included), so a resumed run, every DDP rank and other runs and seeds on the same data reuse the very
same weights.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fextrain import cached_net
from fextrain.augment import AugmentConfig, augment_pairs
from fextrain.cached_net import CachedNet, load_or_train
from fextrain.pixels import to_unit_range

# Bumped whenever IdentityNet or its training changes, so an older cached network is not reused.
IDENTITY_NET_VERSION = 1


@dataclass(frozen=True)
class IdentityNetSettings:
    """Everything that changes the trained network; part of the cache fingerprint."""

    width: int = 32  # channels of stage 1; VGG's 64-128-256-512-512 pattern at half width (x1, x2, x4, x8, x8)
    steps: int = 2000  # optimiser updates (a few minutes on a GPU at 128 px); a run may train it for fewer
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0


class IdentityNet(nn.Module):
    """Five VGG-style stages of two 3x3 convs (BatchNorm, ReLU), 2x2 max-pool between stages, then a
    global average pool and a linear identity classifier. `features(x)` returns the activation after
    each stage's second conv, the analogue of VGG-Face's conv1_2 ... conv5_2."""

    def __init__(self, num_identities: int, width: int = 32) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        stages, cin = [], 3
        for w in widths:
            stages.append(nn.Sequential(nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                        nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(cin, num_identities)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images [B, 3, S, S] in [-1, 1] -> the five stage activations (S, S/2, ..., S/16)."""
        out = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))


def feature_distance(net: IdentityNet, generated: torch.Tensor, real: torch.Tensor,
                     weights: tuple[float, ...]) -> torch.Tensor:
    """ExprGAN's eq. 7: sum_l beta_l * L1(phi_l(generated), phi_l(real)), each L1 a mean, in float32.

    `net` is frozen (eval mode, no parameter gradients); the gradient flows into `generated` only.
    """
    with torch.no_grad():
        target = net.features(real)
    total = generated.new_zeros((), dtype=torch.float32)
    for beta, a, b in zip(weights, net.features(generated), target):
        total = total + beta * (a.float() - b.float()).abs().mean()
    return total


@dataclass(frozen=True)
class IdentityNetCost:
    """What the identity network cost a run: for the log line, the summary and the tests."""

    steps: int  # optimiser updates it was trained for
    seconds: float  # wall time of that training (on the run that trained it, for a cached net)
    train_accuracy: float  # share of its last training batches (augmented, train mode) classified right
    cached: bool  # loaded from the cache instead of trained
    file: str  # the cached weights
    retrained: str | None = None  # why a cached net could not be used ("none cached", "... corrupt ...")

    def summary(self) -> str:
        how = "from the cache" if self.cached else f"trained ({self.retrained})" if self.retrained else "trained"
        return (f"identity net {how}: {self.steps} step{'s' * (self.steps != 1)}, {self.seconds:.1f} s to train, "
                f"train accuracy {self.train_accuracy:.2f} ({Path(self.file).name})")


def identity_net_steps(cap: int, run_steps: int | None, share: float) -> int:
    """Its training budget: `share` of the run's steps (at least 1), at most `cap`; `cap` when the run's
    steps are unknown. A smoke run thus starts in seconds and a long run gets the full network."""
    if run_steps is None:
        return cap
    return max(1, min(cap, math.ceil(share * run_steps)))


def train_identity_net(images: np.ndarray, labels: np.ndarray, settings: IdentityNetSettings,
                       device: torch.device | str = "cpu", progress: bool = False) -> tuple[IdentityNet, dict]:
    """Train on uint8 N x S x S x 3 images and identity classes 0..C-1: (the net in eval mode, how it trained:
    steps, seconds, train_accuracy over the last tenth of its steps)."""
    t0 = time.perf_counter()
    labels = np.asarray(labels, np.int64)
    num = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's stream
        torch.manual_seed(settings.seed)
        net = IdentityNet(num, settings.width).to(device)
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    y_all = torch.from_numpy(labels).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=settings.steps)
    batch = min(settings.batch, len(labels))
    tail = max(1, settings.steps // 10)  # the steps whose batches the reported train accuracy counts
    right, seen = torch.zeros((), device=device), 0
    net.train()
    bar = tqdm(range(settings.steps), desc="identity net", unit="step", disable=not progress, leave=False)
    for step in bar:
        idx = torch.randint(0, len(labels), (max(2, batch),), generator=gen, device=device)
        x = to_unit_range(torch.from_numpy(np.asarray(images[idx.cpu().numpy()])).to(device))
        x, _ = augment_pairs(x, None, AugmentConfig(), gen)  # zoom, crop, flip
        logits = net(x)
        loss = F.cross_entropy(logits, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= settings.steps - tail:
            right += (logits.detach().argmax(1) == y_all[idx]).sum()
            seen += len(idx)
        if progress:  # .item() waits for the GPU: only for a bar someone watches
            bar.set_postfix(loss=f"{loss.item():.3f}")
    training = {"steps": settings.steps, "seconds": round(time.perf_counter() - t0, 3),
                "train_accuracy": round(float(right) / max(1, seen), 4)}
    return net.eval().requires_grad_(False), training


def fingerprint(images: np.ndarray, labels: np.ndarray, settings: IdentityNetSettings) -> str:
    """Hash of the training pixels, labels and settings (its steps included): the cache key."""
    return cached_net.fingerprint([IDENTITY_NET_VERSION, asdict(settings), list(images.shape)], images,
                                  np.ascontiguousarray(labels, dtype=np.int64))


def load_or_train_identity_net(folder: Path, images: np.ndarray, labels: np.ndarray,
                               settings: IdentityNetSettings, device: torch.device | str = "cpu",
                               progress: bool = False) -> tuple[IdentityNet, IdentityNetCost]:
    """(frozen net in eval mode on `device`, what it cost): the cached one for this data, else trained and cached.

    `labels` are identity classes 0..C-1 (at least two: one identity teaches nothing about identity).
    """
    labels = np.asarray(labels, np.int64)
    classes = len(np.unique(labels))
    if classes < 2:
        raise ValueError(f"the identity network needs at least two train identities; the data has {classes}")
    key = fingerprint(images, labels, settings)
    entry = CachedNet.named(folder, f"identity-net-{key[:16]}")

    def restore(weights: dict[str, torch.Tensor], meta: dict) -> tuple[IdentityNet, dict]:
        net = IdentityNet(int(labels.max()) + 1, settings.width)
        net.load_state_dict(weights)
        return net.to(device).eval().requires_grad_(False), meta["training"]

    def train() -> tuple[tuple[IdentityNet, dict], dict[str, torch.Tensor], dict]:
        net, training = train_identity_net(images, labels, settings, device, progress)
        meta = {"version": IDENTITY_NET_VERSION, "settings": asdict(settings), "identities": classes,
                "train_images": len(labels), "training": training}
        return (net, training), net.state_dict(), meta

    (net, training), retrained = load_or_train(entry, key, restore, train)
    cost = IdentityNetCost(steps=int(training["steps"]), seconds=float(training["seconds"]),
                           train_accuracy=float(training["train_accuracy"]), cached=retrained is None,
                           file=str(entry.weights), retrained=retrained)
    return net, cost


__all__ = ["IdentityNet", "IdentityNetCost", "IdentityNetSettings", "feature_distance", "identity_net_steps",
           "load_or_train_identity_net", "train_identity_net"]
