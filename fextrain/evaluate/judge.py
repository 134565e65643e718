"""The independent judge: a small ResNet expression classifier trained only on real training images.

The GAN's own discriminator has seen the generator's output throughout training, so its verdict on
generated faces is not independent. Like the StarGAN report (a ResNet classifier with 93.54% test
accuracy), fex trains a separate classifier on the manifest's real train split, reports its accuracy on
the real test split, and then asks it whether generated faces show their target affect. Its pooled
features also give the feature space for a Fréchet distance that needs no downloaded weights.

It learns with the degradations a generator produces (blur, down-up sampling, noise, colour shifts,
JPEG: `degrade.py`) besides flips and shifts, so that softness is not read as an expression; the report
gives its accuracy on real test faces both clean and blurred, so a reader can see that it is robust.

A slice of the train split's identities (of its frames when it has fewer than 3 identities) is held out:
the judge trains on the rest, keeps the epoch with the best held-out accuracy and stops when it has not
improved for `patience` epochs, so it is fitted to people it has not seen rather than to the train faces
(a judge fitted to them rewards a generator that paints train-like prototypes).

The trained judge is cached (safetensors + JSON) keyed by a fingerprint of its training data and
settings, so evaluating a run again, or another run on the same manifest, reuses it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from fextrain import cached_net
from fextrain.pixels import to_uint8, to_unit_range, unit_range
from fextrain.cached_net import CachedNet, CacheMiss, load_or_train
from fextrain.evaluate.degrade import degrade
from fextrain.evaluate.scores import softmax

# Bumped whenever JudgeNet or its training changes, so a cached judge from older code is not reused.
# 4: trained with generator degradations (a version-3 judge read blur as anger).
# 5: held-out train identities, early stopping on them, best epoch kept.
JUDGE_VERSION = 5
JUDGE_WEIGHTS = "judge.safetensors"
JUDGE_META = "judge.json"


@dataclass(frozen=True)
class JudgeSettings:
    """Everything that changes the trained judge; part of the cache fingerprint."""

    size: int = 64  # input side; faces are resized to this (expression survives 64x64 well)
    width: int = 32  # channels of the first stage; doubled at each of the three stages
    epochs: int = 15
    min_steps: int = 300  # small manifests get more epochs: a judge needs a few hundred updates to work
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    degrade: bool = True  # generator degradations (degrade.py) on top of flips and shifts; False = version-3 recipe
    # `fex eval` holds out 0.2 with patience 5 (EvalOptions); the defaults keep the version-4 recipe for
    # callers that pass no identities (`fex edit --from auto`, studies at equal updates)
    holdout: float = 0.0  # share of train identities (of frames under 3 identities) held out to stop on; 0: none
    patience: int = 0  # held-out epochs without a better accuracy before training stops; 0: every epoch runs


class _BasicBlock(nn.Module):
    """Two 3x3 convs with a skip connection (He et al.'s basic block)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.skip(x))


class JudgeNet(nn.Module):
    """A ResNet with one basic block per stage: stride-2 stem, 3 stages (w, 2w, 4w), global pool, linear.

    Small on purpose: trains in seconds on CPU at 64x64, yet deep enough to read expressions.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        # A stride-2 stem: at 64x64 it made training 4.5x faster than stride 1 with the same accuracy on
        # unseen identities (benchmarked on sample faces), since a full-resolution stem dominates the cost.
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(
            _BasicBlock(width, width, 2),
            _BasicBlock(width, 2 * width, 2),
            _BasicBlock(2 * width, 4 * width, 2),
        )
        self.head = nn.Linear(4 * width, num_classes)
        self.feature_dim = 4 * width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features [B, 4*width]: the space of the judge Fréchet distance."""
        # Each image standardised per channel: skin tone, lighting and exposure say nothing about an
        # expression, and removing them lets a judge trained on few identities generalise to new ones.
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-3)
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resize_uint8(images: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """uint8 N x size x size x 3 from uint8 NHWC arrays or float NCHW tensors in [-1, 1].

    Generated tensors are quantised to uint8 first, so real and generated faces go through the very
    same resize (OpenCV area averaging, the right filter for shrinking).
    """
    if isinstance(images, torch.Tensor):
        images = to_uint8(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")
    if images.shape[1:3] == (size, size):
        return np.array(images, copy=True)  # also detaches from a read-only memory map
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(images):
        out[i] = cv2.resize(np.asarray(img), (size, size), interpolation=cv2.INTER_AREA)
    return out


def to_judge_input(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Images (uint8 NHWC or float NCHW in [-1, 1]) -> float NCHW in [-1, 1] at the judge's size."""
    return to_unit_range(torch.from_numpy(resize_uint8(images, size)))


def _augment(x: torch.Tensor, gen: torch.Generator, degradations: bool) -> torch.Tensor:
    """Degradations (when on), then horizontal flips and shifts of up to 1/16 of the side: expressions are
    mirror- and shift-invariant."""
    if degradations:
        x = degrade(x, gen)
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, h // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen, device=x.device).tolist()
    return padded[:, :, dy : dy + h, dx : dx + w]


class Judge:
    """A trained JudgeNet plus the affect order it predicts in."""

    def __init__(self, net: JudgeNet, affects: tuple[str, ...], settings: JudgeSettings, device: str = "cpu",
                 training: dict | None = None) -> None:
        self.net = net.to(device).eval()
        self.device = device
        self.affects = tuple(affects)
        self.settings = settings
        self.training = training or {}  # how it was trained: images, held-out slice and its accuracy, epochs

    @torch.no_grad()
    def _run(self, images: np.ndarray | torch.Tensor, batch_size: int, want_features: bool) -> np.ndarray:
        outs = []
        for start in range(0, len(images), batch_size):
            x = to_judge_input(images[start : start + batch_size], self.settings.size).to(self.device)
            feats = self.net.features(x)
            outs.append((feats if want_features else self.net.head(feats)).float().cpu().numpy())
        width = self.net.feature_dim if want_features else len(self.affects)
        return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)

    def logits(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        return self._run(images, batch_size, want_features=False)

    def predict(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Predicted affect index per image (int64)."""
        return self.logits(images, batch_size).argmax(axis=1).astype(np.int64)

    def probabilities(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Softmax over the affects per image [N, K] (float64)."""
        return softmax(self.logits(images, batch_size))

    def features(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        return self._run(images, batch_size, want_features=True).astype(np.float64)

    def save(self, folder: Path, fingerprint: str, train_count: int) -> None:
        _entry(folder).write(self.net.state_dict(), fingerprint, self._sidecar(train_count))

    def _sidecar(self, train_count: int) -> dict:
        """What the cache keeps beside the weights: enough to rebuild the judge and say how it was trained."""
        return {"affects": list(self.affects), "settings": asdict(self.settings), "train_count": train_count,
                "training": self.training}


def _entry(folder: Path) -> CachedNet:
    return CachedNet(folder / JUDGE_WEIGHTS, folder / JUDGE_META)


def effective_epochs(n: int, settings: JudgeSettings) -> int:
    """`settings.epochs`, raised so that training makes at least `settings.min_steps` updates (the most
    epochs a judge trains: early stopping may end it sooner)."""
    steps_per_epoch = max(1, -(-n // settings.batch_size))
    return max(settings.epochs, -(-settings.min_steps // steps_per_epoch))


def holdout_split(n: int, groups: np.ndarray | None, settings: JudgeSettings) -> tuple[np.ndarray, np.ndarray, str]:
    """(train rows, held-out rows, "identities" | "frames" | "none"): the seeded slice the judge stops on.

    Whole identities when `groups` (one id per row) has at least 3 of them, keeping at least 2 to train
    on; else a share of the frames, which shares people with training and so reads optimistic."""
    everything = np.arange(n)
    if settings.holdout <= 0 or n < 5:  # too few images to spare any
        return everything, everything[:0], "none"
    rng = np.random.default_rng(settings.seed)
    if groups is not None:
        ids = np.unique(groups)
        if len(ids) >= 3:
            k = min(len(ids) - 2, max(1, round(settings.holdout * len(ids))))
            held = np.isin(groups, rng.choice(ids, size=k, replace=False))
            return everything[~held], everything[held], "identities"
    held = np.zeros(n, bool)
    held[rng.choice(n, size=max(1, round(settings.holdout * n)), replace=False)] = True
    return everything[~held], everything[held], "frames"


@torch.no_grad()
def _score(net: JudgeNet, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[int, float]:
    """(correct, mean cross-entropy) of uint8 NCHW images `x` with labels `y`, in eval mode."""
    net.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(x), batch_size):
        logits = net(unit_range(x[start : start + batch_size]))
        yy = y[start : start + batch_size]
        correct += int((logits.argmax(1) == yy).sum())
        loss += float(F.cross_entropy(logits, yy, reduction="sum"))
    net.train()
    return correct, loss / max(1, len(x))


def train_judge(
    images: np.ndarray,
    labels: np.ndarray,
    affects: tuple[str, ...],
    settings: JudgeSettings = JudgeSettings(),
    progress: bool = True,
    device: str = "cpu",
    groups: np.ndarray | None = None,
) -> Judge:
    """Train a JudgeNet on uint8 N x H x W x 3 images with affect indices `labels` (int).

    `groups` (an identity id per image) picks the held-out identities (`holdout_split`). From half-way
    through the schedule on, the epoch with the best held-out accuracy (ties: lower held-out loss) is kept,
    and training stops after `patience` epochs without a better one. Classes are re-weighted by inverse
    frequency, so an unbalanced manifest does not teach the judge to answer with the commonest affect.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images and at least one image (got {len(images)}, {len(labels)})")
    torch.manual_seed(settings.seed)
    net = JudgeNet(len(affects), settings.width).to(device)
    # Resized once and kept as uint8 (12 KB a face at 64x64: 160K studio frames take 2 GB), read in
    # chunks so a memory-mapped pack is never loaded whole; batches become floats on the fly.
    x_every = torch.from_numpy(np.concatenate(
        [resize_uint8(images[i : i + 1024], settings.size) for i in range(0, len(images), 1024)]
    )).permute(0, 3, 1, 2).to(device)
    y_every = torch.from_numpy(labels).to(device)
    fit, held, held_by = holdout_split(len(labels), None if groups is None else np.asarray(groups), settings)
    x_all, y_all = x_every[torch.from_numpy(fit)], y_every[torch.from_numpy(fit)]
    x_held, y_held = x_every[torch.from_numpy(held)], y_every[torch.from_numpy(held)]
    counts = torch.bincount(y_all, minlength=len(affects)).float()
    class_weight = torch.where(counts > 0, counts.sum() / counts.clamp(min=1) / len(affects), torch.zeros_like(counts))
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, -(-len(x_all) // settings.batch_size))
    epochs = effective_epochs(len(x_all), settings)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=epochs * steps_per_epoch)
    # Held-out epochs count from half-way: OneCycle's learning rate peaks at 30% and is still high until
    # about then, so an earlier epoch is neither converged nor a fair stopping point (measured: stopping
    # right after the peak kept an epoch that read 1 of 7 faces of a new person right).
    settle = epochs // 2
    best: tuple[int, float] | None = None  # (held-out correct, held-out loss) of the kept epoch
    best_state, best_epoch, since_best, ran = None, epochs, 0, 0
    net.train()
    bar = tqdm(range(epochs), desc="judge", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(len(x_all), generator=gen, device=device)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples; a lone leftover is skipped this epoch
                continue
            x = unit_range(x_all[idx])
            loss = F.cross_entropy(net(_augment(x, gen, settings.degrade)), y_all[idx], weight=class_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        ran = epoch + 1
        bar.set_postfix(loss=f"{total / len(order):.3f}")
        if not len(held) or ran <= settle:
            continue
        correct, held_loss = _score(net, x_held, y_held, 256)
        if best is None or correct > best[0] or (correct == best[0] and held_loss < best[1]):
            best, best_epoch, since_best = (correct, held_loss), ran, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since_best += 1
            if settings.patience and since_best >= settings.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    training = {
        "count": int(len(fit)),
        "held_out": {"by": held_by, "count": int(len(held)),
                     "identities": int(len(np.unique(np.asarray(groups)[held]))) if groups is not None else None,
                     "correct": None if best is None else best[0],
                     "accuracy": None if best is None else best[0] / len(held)},
        "epochs_max": epochs, "epochs_run": ran, "best_epoch": best_epoch,
    }
    return Judge(net, affects, settings, device, training)


def data_fingerprint(images: np.ndarray, labels: np.ndarray, affects: tuple[str, ...], settings: JudgeSettings,
                     groups: np.ndarray | None = None) -> str:
    """Hash of the training pixels, labels, identity groups, affect order and settings: the judge cache key."""
    extra = [b"groups", np.ascontiguousarray(groups, dtype=np.int64)] if groups is not None else []
    return cached_net.fingerprint([JUDGE_VERSION, list(affects), asdict(settings), list(images.shape)], images,
                                  np.ascontiguousarray(labels, dtype=np.int64), *extra)  # groups: who is held out


def _restore(weights: dict[str, torch.Tensor], meta: dict, device: str) -> Judge:
    settings = JudgeSettings(**meta["settings"])
    net = JudgeNet(len(meta["affects"]), settings.width)
    net.load_state_dict(weights)
    return Judge(net, tuple(meta["affects"]), settings, device, meta.get("training"))


def load_judge(folder: Path, fingerprint: str | None = None, device: str = "cpu") -> Judge | None:
    """The cached judge in `folder`, or None when absent, corrupt or trained on other data/settings."""
    try:
        return _entry(folder).load(fingerprint, lambda weights, meta: _restore(weights, meta, device))
    except CacheMiss:
        return None


def load_or_train_judge(
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    affects: tuple[str, ...],
    settings: JudgeSettings = JudgeSettings(),
    progress: bool = True,
    device: str = "cpu",
    groups: np.ndarray | None = None,
) -> tuple[Judge, bool]:
    """(judge, reused): the cached judge when its fingerprint matches, else a freshly trained one.

    `groups`: an identity id per image, so the held-out slice is whole identities (see `train_judge`)."""
    def fit() -> tuple[Judge, dict, dict]:
        judge = train_judge(images, labels, affects, settings, progress, device, groups)
        return judge, judge.net.state_dict(), judge._sidecar(len(labels))

    key = data_fingerprint(images, labels, affects, settings, groups)
    judge, missed = load_or_train(_entry(folder), key, lambda w, meta: _restore(w, meta, device), fit)
    return judge, missed is None
