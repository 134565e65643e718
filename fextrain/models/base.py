"""The model contract: what a model gives the one training loop (`fextrain.train`), `fex eval` and `fex edit`.

A model is one file in `fextrain/models/` holding a `GANModel` subclass registered with
`@register("name")`; it imports this contract, the registry and the layers models share
(`fextrain/models/blocks.py`), never another model's file. The class declares, as class attributes:

* `Arch`      - a dataclass of its architecture (`arch.*` config keys); it has `size` and
                `num_affects` fields (and `num_identities` when the model conditions on identity),
                which the loop fills from the manifest;
* `Loss`      - a dataclass of its loss weights, schedules and condition laws (`loss.*` keys);
* `defaults`  - `Optim(steps, batch, lr, betas)`: the paper's optimisation settings, used where the
                run's config leaves them unset;
* `paired`    - True when a step needs, per source, a real image of the same identity showing the
                target affect (`Batch.target`); False for unpaired models (targets are affect ids only);
* `metrics`   - the names of the scalars `train_step` returns, in log order; `progress`: the few
                shown on the progress bar; `reconstruction`: the one measuring reconstruction;
* `summary`   - one line for `fex train --help`;
* `presets`   - {name: `Preset`}: named settings cheaper than the paper's (`fex train --preset cpu-64`),
                applied under the run's own config; "paper" (the defaults above) is implicit, never listed.

and implements:

* `__init__(arch, loss)`    - build its networks as submodules (`self.generator`, `self.discriminator`, ...);
* `networks()`              - {name: module} of every network the loop places, wraps and checkpoints
                              ("generator" is the one exported for inference);
* `optimizers(lr, betas)`   - {name: optimiser}; one per network by default (`ctx.update(name, loss)`);
* `lr_factor(done, total)`  - the learning-rate schedule: a multiplier of `lr` after `done` steps;
* `train_step(batch, ctx)`  - one iteration: its D and G updates through `ctx`'s verbs alone (`StepContext`:
                              train, frozen, no_grad, gradient_penalty, update, autocast, rng); returns
                              {metric: 0-d tensor}, detached (a step may omit keys, e.g. G terms on D-only steps);
* `edit(x, source_vec, target_vec) -> image` - x float NCHW in [-1, 1]; vectors [B, K] float in the
                              manifest's affect order, one-hot or mixed / scaled ("0.5*joy",
                              "anger+sadness"); returns float NCHW in [-1, 1]. Deterministic in eval
                              mode, usable under torch.no_grad();
* `classify(x)`             - affect logits [B, K] from the discriminator's classification head, or
                              None when the model has none.
* `real_fake(x)`            - a real/fake logit [B] (> 0: "real") from the discriminator, or None when
                              its score has no such threshold (a Wasserstein critic) or it has none.

Optional, for models that need them:

* `prepare(data, cache_dir=, device=, progress=, steps=)` - fit or load fixed helpers its losses use
                              (ExprGAN's identity network) from the training data before the first step, on
                              every start and resume; cached under `cache_dir` by a fingerprint, so
                              every rank and every resume gets the same ones. Rank 0 runs it first.
                              `steps` is the run's total (a helper's budget may scale with it); returns
                              {helper: {..., "summary": one line}}, which the run's log shows.
* `fitted_without_steps(arch)` - True when `prepare` alone makes the edits (warp-refine's expression prior with
                              nothing learnt on top), so `fex train --steps 0` is allowed.
* `sometimes_unused`        - names of networks some of whose parameters get no gradient in some steps
                              (a stage schedule, a head trained only in some stages); DDP then searches
                              for unused parameters after each forward instead of failing.
* `landmarks`               - True when `train_step` needs both frames' 68 landmarks (`Batch.landmarks`,
                              `Batch.target_landmarks`), moved by the same augmentation as the images.
* `identity_edit`           - True when `edit(..., identity=ids)` draws a chosen train identity
                              (DE-GAN); `identity` is [B] train-identity indices (`Editor.identities`
                              order) or [B, N_i] weights over them. Other models ignore `identity`.
* Stage schedules (ExprGAN's three stages, DE-GAN's recognition stage) are functions of `ctx.step`
  and `ctx.total` alone, so a resumed run crosses a stage boundary exactly where an unbroken one does.

The loop owns the rest: device, bf16 autocast, channels_last, DDP and torch.compile wrapping, the
image store and batch sampling (`fextrain.batches`), checkpoints, logs, sample grids (rendered
through `edit`), the NaN stop and Ctrl-C.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn

from fextrain.losses import gradient_penalty


@dataclass(frozen=True)
class Optim:
    """A model's paper optimisation settings (the run's config may override each)."""

    steps: int  # total iterations
    batch: int
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class Preset:
    """Named training settings of a model (`fex train --preset NAME`): `size`, `steps`, `batch` and `lr` replace
    the paper's, `arch` and `loss` override fields of its Arch and Loss; the run's config overrides each."""

    size: int
    steps: int
    batch: int
    lr: float | None = None  # None: the paper's
    arch: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # one line: what it is and what it was measured to do

    def as_config(self) -> dict[str, Any]:
        """Its settings as TrainConfig keys (a copy: the caller's merges never reach the class attribute)."""
        out = {"size": self.size, "steps": self.steps, "batch": self.batch, "arch": copy.deepcopy(self.arch),
               "loss": copy.deepcopy(self.loss)}
        return out if self.lr is None else {**out, "lr": self.lr}


@dataclass
class Batch:
    """One training batch on the device, as the loop's data part prepares it for every model."""

    x: torch.Tensor  # [B, 3, S, S] source images in [-1, 1], augmented
    affect: torch.Tensor  # [B] int64 source affect ids (the manifest's affect order)
    identity: torch.Tensor  # [B] int64 train-identity index (0..num_identities-1; `identities` of the run)
    target_affect: torch.Tensor  # [B] int64 target affect ids
    # [B, 3, S, S] a real image of the same identity with the target affect, augmented like its
    # source (paired models only; None for unpaired ones)
    target: torch.Tensor | None = None
    intensity: torch.Tensor | None = None  # [B] float source intensity (NaN where unknown); None: manifest has none
    # [B] float intensity of `target` (paired models; NaN where unknown); None: unpaired, or the manifest has none
    target_intensity: torch.Tensor | None = None
    # [B, 68, 2] the source's and the target's landmarks, (x, y) in the augmented crop's normalised coordinates
    # ([-1, 1], pixel centres as grid_sample's align_corners=False), NaN where unknown; only for models that
    # declare `landmarks = True` (None otherwise)
    landmarks: torch.Tensor | None = None
    target_landmarks: torch.Tensor | None = None


@dataclass
class StepContext:
    """What the loop hands a model's `train_step`: the step, and verbs that run each network the way a
    forward needs it. A model's step reads like a solver's: pick the verb, call the network, `update`.

    * `train(name)`     - the network whose output is back-propagated into its own parameters: D in its
                          update, G in its update, a second G forward (a cycle) included.
    * `frozen(name)`    - with-block: a network that only passes gradients through to another one (D in
                          G's update); its parameters frozen, its BatchNorm running statistics kept. The
                          backward (`update`) happens inside the block.
    * `no_grad(name, eval_mode=False)` - with-block, under torch.no_grad(): a forward that takes no
                          gradient at all (a fake for D's update, a logged probe); running statistics kept.
                          `eval_mode`: the network in eval mode inside (a fixed feature extractor: running
                          statistics normalise, no dropout). Methods besides `forward` (`encode`) work on it.
    * `gradient_penalty(name, real, fake, output=None)` - WGAN-GP of critic `name` (item `output` of its
                          output tuple) at random mixes of real and fake, from `rng`.
    * `update(name, loss)` - back-propagate `loss` and step optimiser `name`.
    * `autocast()` (bf16 when on, else a no-op), `rng` (the device random stream for the model's own draws),
      `step` (1-based) and `total`.

    The other fields are the loop's views of each network: `nets` DDP-wrapped under torchrun, then compiled
    when on; `plain` without DDP (compiled when on); `eager` DDP, never compiled (double backward); `raw` the
    bare modules. Which view a forward needs depends on DDP and compile, and the wrong one fails only under
    them, so models use the verbs, never the views (tests/test_step_context.py reads every model file).
    Under DDP every parameter of a network that is updated must take part in that update's loss (DDP
    reduces gradients bucket by bucket, and stops the run at the next forward when one never arrives).
    """

    step: int  # 1-based index of this iteration
    total: int  # the run's total iterations
    nets: dict[str, nn.Module]
    plain: dict[str, nn.Module]  # not DDP-wrapped (compiled when compile is on)
    eager: dict[str, nn.Module]  # DDP-wrapped, never compiled (double backward)
    optimizers: dict[str, torch.optim.Optimizer]
    autocast: Callable[[], AbstractContextManager]  # bf16 autocast when on, else a no-op
    rng: torch.Generator  # device random stream for the model's own draws (conditions, GP mixing)
    raw: dict[str, nn.Module]  # the bare networks (frozen/no_grad toggle their state)

    def train(self, name: str) -> nn.Module:
        """Network `name` for a forward whose output trains its own parameters (DDP, compiled when on)."""
        return self.nets[name]

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Back-propagate `loss` and take one step of optimiser `name`."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @contextmanager
    def frozen(self, name: str) -> Iterator[nn.Module]:
        """The network without DDP, its parameters frozen and its normalisation statistics kept as they are."""
        net = self.raw[name]
        net.requires_grad_(False)
        try:
            with _statistics_kept(net):
                yield self.plain[name]
        finally:
            net.requires_grad_(True)

    @contextmanager
    def no_grad(self, name: str, eval_mode: bool = False) -> Iterator[nn.Module]:
        """The network without DDP under torch.no_grad(), its normalisation statistics kept as they are;
        `eval_mode`: in eval mode inside the block (its previous mode restored after)."""
        net = self.raw[name]
        with torch.no_grad(), _statistics_kept(net), _eval_mode(net) if eval_mode else nullcontext():
            yield self.plain[name]

    def gradient_penalty(self, name: str, real: torch.Tensor, fake: torch.Tensor,
                         output: int | None = None) -> torch.Tensor:
        """WGAN-GP of critic `name` (`fextrain.losses.gradient_penalty`), through its DDP view without compile:
        compiled graphs do not support the double backward. `output`: the item of a tuple output that scores."""
        critic = self.eager[name]
        return gradient_penalty(lambda x: critic(x) if output is None else critic(x)[output], real, fake, self.rng)


@contextmanager
def _statistics_kept(net: nn.Module) -> Iterator[None]:
    """`net`'s BatchNorm layers stop tracking inside the block: in train mode batch statistics still normalise,
    and neither the running statistics nor num_batches_tracked move (in eval mode the running ones normalise)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


@contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    """`net` in eval mode inside the block (running statistics, no dropout); its mode restored after."""
    was = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was)


class GANModel(nn.Module):
    """Base class of every registered model; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    Arch: ClassVar[type]
    Loss: ClassVar[type]
    defaults: ClassVar[Optim]
    paired: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ()
    progress: ClassVar[tuple[str, ...]] = ()
    reconstruction: ClassVar[str] = ""  # the metric measuring reconstruction (L1 to a target, or a cycle)
    summary: ClassVar[str] = ""  # one line for `fex train --help`
    presets: ClassVar[dict[str, Preset]] = {}  # named cheaper settings ("paper", the defaults, is implicit)
    sometimes_unused: ClassVar[frozenset[str]] = frozenset()  # networks DDP wraps with find_unused_parameters
    identity_edit: ClassVar[bool] = False  # edit() draws the train identity given as `identity`
    landmarks: ClassVar[bool] = False  # train_step reads Batch.landmarks / target_landmarks

    def __init__(self, arch: Any, loss: Any) -> None:
        super().__init__()
        self.arch, self.loss = arch, loss

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self, lr: float, betas: tuple[float, float]) -> dict[str, torch.optim.Optimizer]:
        # Default (foreach on CUDA) rather than fused=True: fused Adam rejects gradients whose strides
        # differ from the parameters' (pytorch#110758, #126585), which channels_last and compile can produce.
        return {name: torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas))
                for name, net in self.networks().items()}

    def lr_factor(self, done: int, total: int) -> float:
        """Multiplier of the learning rate after `done` of `total` steps (constant by default)."""
        return 1.0

    def scheduled(self, step: int, total: int) -> dict[str, float]:
        """Scheduled loss weights at `step`, logged beside the losses (none by default)."""
        return {}

    @classmethod
    def fitted_without_steps(cls, arch: dict[str, Any]) -> bool:
        """True when, with these `arch` settings, `prepare` alone makes the model's edits, so a run of 0 steps
        (`fex train --steps 0`) is a usable model; False by default: untrained networks edit nothing."""
        return False

    def prepare(self, data: Any, *, cache_dir: Path, device: torch.device, progress: bool,
                steps: int | None = None) -> dict[str, dict[str, Any]]:
        """Fit or load fixed loss helpers from the training FaceDataset `data` (nothing by default); returns
        what each cost, {helper: {..., "summary": one line}}."""
        return {}

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def edit(self, x: torch.Tensor, source_vec: torch.Tensor, target_vec: torch.Tensor,
             identity: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def real_fake(self, x: torch.Tensor) -> torch.Tensor | None:
        return None


def require_sizes(arch: Any, *names: str) -> None:
    """Refuse widths and layer sizes below 1 (a network with 0 channels builds, then fails far from the cause)."""
    for name in names:
        value = getattr(arch, name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(int(v) < 1 for v in values):
            raise ValueError(f"{name} must be at least 1; got {list(values) if values is value else value}")


def arch_fields(cls: type[GANModel]) -> set[str]:
    return {f.name for f in fields(cls.Arch)}


def one_hot(index: torch.Tensor, num_affects: int) -> torch.Tensor:
    """Float one-hot affect vectors [B, K], e.g. [0, 0, 0, 0, 1, 0, 0] for neutral."""
    return torch.nn.functional.one_hot(index.long(), num_affects).float()


def affect_vector(spec: str, affects: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Parse an inference condition such as 'joy', 'anger+sadness' or '0.6*joy + 0.3*surprise' (fex's affect
    grammar, fexdata.affects.affect_spec) into a float vector [K] in the run's affect order."""
    from fexdata.affects import affect_spec

    return torch.tensor(affect_spec(spec, tuple(affects)), dtype=torch.float32)
