"""The one training loop: any registered model (`fextrain.models`) on a manifest's train split, resumable exactly.

Each iteration: 1. the data part draws a batch shaped for the model (`fextrain.batches`); 2. the
learning rate follows the model's schedule; 3. the model's own step runs its discriminator and
generator updates through the wrapped networks (`GANModel.train_step`); 4. logs, checkpoints and
sample grids at their cadences. Everything but step 3 is the same for every model.

Run directory (docs/train.md): config.json, checkpoints/last.pt (atomic, every `ckpt_every` steps,
at the end and on Ctrl-C), generator.safetensors + generator.json, samples/step_<n>.png, tb/ and
metrics.jsonl (the logged scalars, one JSON object per line). A non-finite loss stops the run without
writing a checkpoint, and no checkpoint is written from non-finite weights or optimiser state, so the
last one on disk is the last good state. One process at a time writes a run (RUN/.train.lock).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fexdata.dataset import FaceDataset, crop_side, training_rows
from fexdata.ingest.recipe import read_recipe
from fexdata.manifest import ManifestError, read_manifest
from fexdata.packed_cache import default_cache_dir
from fexdata.paths import locked, read_json_or_empty, remove_temp_files, resolve_inside
from fexdata.versions import versions
from fextrain import distributed as dd
from fextrain.batches import BatchSource, train_intensities
from fextrain.checkpoint import (CHECKPOINT, FORMAT, GENERATOR, GENERATOR_META, export_generator, load_checkpoint,
                                 save_checkpoint)
from fextrain.config import TrainConfig, from_dict, save_json, to_dict
from fextrain.logger import RunLogger, grid_path
from fextrain.models import GANModel, StepContext, build_from_config, model_class
from fextrain.models.base import arch_fields
from fextrain.runtime import ImageStore, Runtime, TrainingError
from fextrain.samples import render_grid

__all__ = ["NonFiniteLoss", "NonFiniteWeights", "TrainResult", "TrainingError", "check_manifest", "nonfinite_state",
           "train"]

LOCK_NAME = ".train.lock"


class NonFiniteLoss(TrainingError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class NonFiniteWeights(TrainingError):
    """Weights or optimiser state became NaN or infinite (an inf gradient can leave the loss finite); the last
    good checkpoint is kept."""


def nonfinite_state(nets: dict[str, torch.nn.Module], opts: dict[str, torch.optim.Optimizer]) -> str | None:
    """The name of a tensor of the networks' state or the optimisers' state that holds a NaN or an inf, else None.

    One fused max-norm over every floating-point tensor (NaN and inf survive a max): one device sync per
    checkpoint; only a failing check looks for the culprit tensor by tensor.
    """
    named = [(f"{n}.{k}", t) for n, net in nets.items() for k, t in net.state_dict().items()]
    named += [(f"the {n} optimiser's {k}", v) for n, opt in opts.items() for st in opt.state.values()
              for k, v in st.items() if torch.is_tensor(v)]
    named = [(name, t) for name, t in named if t.is_floating_point() and t.numel()]
    with torch.no_grad():
        if not named or bool(torch.isfinite(torch.nn.utils.get_total_norm([t for _, t in named], norm_type="inf"))):
            return None
        return next(name for name, t in named if not bool(torch.isfinite(t).all()))


@dataclass
class TrainResult:
    run_dir: Path
    start_step: int
    step: int
    status: str  # "done" | "interrupted" | "up-to-date"
    metrics: dict[str, float] = field(default_factory=dict)  # the last logged scalars
    is_main: bool = True  # False on the other ranks under torchrun (they print nothing)


def check_manifest(path: str | Path, size: int, holdout_fold: int | None = None) -> tuple[str, ...]:
    """Refuse a manifest training cannot use, before any step; returns its affect order.

    Needs a train split (or, holding out a fold, other folds) with at least two affects, one crop
    size no smaller than `size` (larger crops are shrunk once into the packed cache; enlarging would
    only teach blur), and every train crop on disk.
    """
    path = Path(path)
    df, meta = read_manifest(path, columns=["image", "affect", "split", "fold", "crop_size"])
    affects = tuple(meta.get("affects") or ())
    train = df[training_rows(df, holdout_fold)]
    folds = sorted(set(df["fold"].dropna().astype(int)))
    if holdout_fold is not None and (holdout_fold not in folds or len(folds) < 2):
        raise ManifestError(f"{path}: cannot hold out fold {holdout_fold} (folds here: {folds or 'none'})",
                            hint="hold out one of its folds, or rebuild it with `fex build-manifest --folds K`")
    if train.empty:
        splits = ", ".join(sorted(set(df["split"]))) or "none"
        raise ManifestError(f"{path}: no rows in the train split (splits present: {splits}); "
                            "rebuild it with `fex build-manifest`")
    present = sorted(set(train["affect"]))
    if len(present) < 2 or len(affects) < 2:
        raise ManifestError(f"{path}: the train split has only one affect ({present[0]}); changing "
                            "expressions needs at least two")
    side = min(int(s) for s in train["crop_size"])
    crop_side(path, train["crop_size"], size,
              hint=f"train with --size {side} or lower, or re-ingest at --size {size}")
    root = path.resolve().parent
    missing = [p for p in train["image"] if not resolve_inside(p, root).is_file()]
    if missing:
        raise ManifestError(f"{path}: {len(missing)} of {len(train)} train crops are missing, e.g. "
                            f"{missing[0]}; run `fex manifest-info {path}` or rebuild the manifest")
    return affects


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print,
          on_step: Callable[[int, dict[str, float] | None], None] | None = None) -> TrainResult:
    """Train `cfg.model` on `cfg.manifest` into `cfg.out` until `cfg.steps` (the run's total).

    `resume` continues from RUN/checkpoints/last.pt with the same step count, optimiser and schedule
    state and random streams. `on_step(step, logged)` is called after every step (logged holds the
    scalars on logging steps, else None). Raises TrainingError/ManifestError with a one-line reason.
    """
    info = dd.init_distributed(cfg.device)
    try:
        session = Session(cfg, resume, info, log if info.is_main else (lambda _msg: None))
        return session.run(progress, on_step)
    finally:
        dd.shutdown(info)


class Session:
    """One process's training run: what `setup` builds, the loop (`run`), and its checkpoints."""

    def __init__(self, cfg: TrainConfig, resume: bool, info: dd.DistInfo, log: Callable[[str], None]) -> None:
        self.cfg, self.resume, self.info, self.log = cfg, resume, info, log
        self.main = info.is_main
        self.progress = False
        self.run_dir = Path(cfg.out)
        self.ckpt_path = self.run_dir / CHECKPOINT
        self.hold, self.holding = ExitStack(), False  # rank 0's lock on the run directory (run() releases it)

    # .. set-up ..........................................................................................

    def setup(self) -> None:
        cfg, info = self.cfg, self.info
        state = self._load_state()
        self.rt = Runtime(cfg.device, cfg.amp, cfg.channels_last, cfg.compile, info)
        cfg.affects = list(check_manifest(cfg.manifest, cfg.size, cfg.holdout_fold))
        cfg.recipe = read_recipe(cfg.manifest)
        cfg.versions = versions()

        # The packed cache is built by rank 0 alone; the others open it once it exists.
        cache = cfg.cache_dir or None
        rows = dict(split="train") if cfg.holdout_fold is None else dict(split="all", exclude_fold=cfg.holdout_fold)
        if self.main:
            ds = FaceDataset(cfg.manifest, size=cfg.size, cache_dir=cache, progress=self.progress, **rows)
        dd.barrier(info)
        if not self.main:
            ds = FaceDataset(cfg.manifest, size=cfg.size, cache_dir=cache, progress=False, **rows)

        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
        self.rng = torch.Generator(device=self.rt.device)  # augmentation and the model's own draws
        self.data = BatchSource(ds, ImageStore(ds.images, self.rt.device, cfg.data_on_device),
                                paired=model_class(cfg.model).paired, batch=cfg.batch, augment=cfg.augment,
                                rng=self.rng, seed=cfg.seed + 1_000_003 * info.rank,
                                channels_last=self.rt.channels_last, intensity=train_intensities(ds))
        cfg.identities = list(self.data.identities)
        self.model: GANModel = build_from_config(to_dict(cfg))
        # Fixed loss helpers (ExprGAN's identity network): rank 0 fits and caches them, the others load.
        helpers = Path(cache) if cache else default_cache_dir(cfg.manifest)
        if self.main:
            self.model.prepare(ds, cache_dir=helpers, device=self.rt.device, progress=self.progress)
        dd.barrier(info)
        if not self.main:
            self.model.prepare(ds, cache_dir=helpers, device=self.rt.device, progress=False)
        skip = {"size", "num_affects", "num_identities"}
        cfg.arch = json.loads(json.dumps({k: v for k, v in asdict(self.model.arch).items() if k not in skip}))
        self.start = 0
        if state is not None:
            saved = from_dict(state["config"])
            self._check_resumable(saved)
            self.start = int(state["step"])
            moved = [f"{k} {v} -> {cfg.versions[k]}" for k, v in saved.versions.items() if cfg.versions.get(k, v) != v]
            if moved:
                self.log(f"note: this run was last trained with other versions ({', '.join(moved)}); continuing")

        self.raw = {name: self.rt.place(net) for name, net in self.model.networks().items()}
        self.opts = self.model.optimizers(cfg.lr, cfg.betas)
        if state is not None:
            self._restore(state)
        # Random streams: the global one (latent noise, dropout) and the device one (augmentation, conditions).
        torch.manual_seed(cfg.seed + 7919 * (info.rank + 1))
        self.rng.manual_seed(cfg.seed + 104_729 * (info.rank + 1))
        if state is not None:
            self._restore_rng(state.get("rng") or [])
        wrapped = {name: self.rt.wrap(net, name in self.model.sometimes_unused) for name, net in self.raw.items()}
        self.nets = {name: w[0] for name, w in wrapped.items()}
        self.plain = {name: w[1] for name, w in wrapped.items()}
        self.eager = {name: w[2] for name, w in wrapped.items()}
        idx = self.data.grid_sources(cfg.num_samples)
        self.grid_images, self.grid_affects = np.asarray(ds.images[idx]), ds.affect_ids[idx]

    def _load_state(self) -> dict[str, Any] | None:
        cfg = self.cfg
        if not cfg.out:
            raise TrainingError("no run directory: pass --out")
        if self.run_dir.is_dir():
            self._lock()
        if self.resume and not self.ckpt_path.is_file():
            raise TrainingError(f"--resume: no checkpoint at {self.ckpt_path}; start the run without --resume")
        self._refuse_finished()
        if not cfg.manifest:
            raise TrainingError("no manifest: pass --manifest (or set `manifest` in --config)")
        if self.resume and not os.path.isabs(cfg.manifest) and not Path(cfg.manifest).is_file():
            raise TrainingError(f"cannot find the manifest {cfg.manifest}: the run's config gives it relative to the "
                                "folder the run was started from", hint="pass --manifest with its path from here")
        # Absolute in the run's config, so --resume (and fex eval / fex edit) work from any folder.
        cfg.manifest = os.path.abspath(cfg.manifest)
        if cfg.cache_dir:
            cfg.cache_dir = os.path.abspath(cfg.cache_dir)
        return load_checkpoint(self.ckpt_path, "cpu") if self.resume else None

    def _lock(self) -> None:
        """Rank 0 holds RUN/.train.lock until run() returns, as `fex edit` does its --out: two processes
        never write one run, and temporary files found under the lock are a dead writer's."""
        if self.main and not self.holding:
            busy = TrainingError(f"another fex train is writing to {self.run_dir}",
                                 hint="wait for it to finish (or stop it), or use another --out")
            self.hold.enter_context(locked(self.run_dir / LOCK_NAME, busy))
            self.holding = True

    def _refuse_finished(self) -> None:
        if not self.resume and self.ckpt_path.is_file():
            raise TrainingError(f"{self.run_dir} already holds a run ({CHECKPOINT}); pass --resume to "
                                "continue it or choose another --out")

    def _check_resumable(self, saved: TrainConfig) -> None:
        keys = ["model", "size", "arch", "affects", "holdout_fold"]
        if "num_identities" in arch_fields(type(self.model)):
            keys.append("identities")  # its identity head is sized by them
        for key in keys:
            old, new = getattr(saved, key), getattr(self.cfg, key)
            if old != new:
                raise TrainingError(f"cannot resume {self.run_dir}: {key} changed from {old} to {new}; "
                                    "start a new run with another --out")

    def _restore(self, state: dict[str, Any]) -> None:
        cfg = self.cfg
        for name, net in self.raw.items():
            net.load_state_dict(state["nets"][name])
        for name, opt in self.opts.items():
            opt.load_state_dict(state["optimizers"][name])
            for group in opt.param_groups:  # a changed --betas applies from here on (--lr: set_lr)
                group["betas"] = tuple(cfg.betas)

    def set_lr(self, done: int) -> None:
        """The model's learning-rate schedule after `done` iterations: a pure function of the step count,
        so a resumed run follows it exactly (and a changed --lr or --steps applies from there)."""
        lr = self.cfg.lr * self.model.lr_factor(done, self.cfg.steps)
        for opt in self.opts.values():
            for group in opt.param_groups:
                group["lr"] = lr

    def _rng_state(self) -> dict[str, Any]:
        dev = self.rt.device
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "aug": self.rng.get_state(), "aug_device": dev.type,
                "sampler": self.data.sampler.rng.bit_generator.state}

    def _restore_rng(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.info.world_size:
            self.log(f"note: the checkpoint holds random states for {len(states)} process(es), this run has "
                     f"{self.info.world_size}; random streams restart from the seed")
            return
        mine, dev = states[self.info.rank], self.rt.device
        torch.set_rng_state(mine["torch"])
        self.data.sampler.rng.bit_generator.state = mine["sampler"]
        if mine.get("aug_device") == dev.type:
            self.rng.set_state(mine["aug"])
            if dev.type == "cuda" and mine.get("cuda") is not None:
                torch.cuda.set_rng_state(mine["cuda"], dev)
        else:
            self.log(f"note: resuming on {dev.type} a run saved on {mine.get('aug_device')}; "
                     "augmentation random stream restarts")

    def context(self, step: int) -> StepContext:
        return StepContext(step=step, total=self.cfg.steps, nets=self.nets, plain=self.plain, eager=self.eager,
                           raw=self.raw, optimizers=self.opts, autocast=self.rt.autocast, rng=self.rng)

    # .. outputs ...........................................................................................

    def save(self, step: int) -> None:
        # Every rank checks (DDP keeps their weights equal), so all stop together.
        bad = nonfinite_state(self.raw, self.opts)
        if bad is not None:
            raise NonFiniteWeights(f"non-finite values in {bad} at step {step} although the logged losses were "
                                   f"finite; training stopped and {self._kept()}",
                                   hint="try a lower --lr or smaller loss weights")
        states = dd.gather_objects(self._rng_state(), self.info)
        if self.main:
            save_checkpoint(self.ckpt_path, {
                "format": FORMAT, "step": step, "config": to_dict(self.cfg),
                "nets": {n: net.state_dict() for n, net in self.raw.items()},
                "optimizers": {n: o.state_dict() for n, o in self.opts.items()}, "rng": states})

    def samples(self, step: int) -> None:
        if self.main:
            self.logger.samples(step, render_grid(self.model, self.grid_images, self.grid_affects,
                                                  len(self.cfg.affects), self.rt.device, self.rt.autocast()))

    # .. the loop ..........................................................................................

    def run(self, progress: bool, on_step: Callable[[int, dict[str, float] | None], None] | None) -> TrainResult:
        with self.hold:
            return self._run(progress, on_step)

    def _run(self, progress: bool, on_step: Callable[[int, dict[str, float] | None], None] | None) -> TrainResult:
        self.progress = progress and self.main
        self.setup()
        cfg, info = self.cfg, self.info
        start, end = self.start, cfg.steps
        if self.resume:
            self.log(f"resuming {self.run_dir} from step {start} (training to step {end})")
        if end <= start:
            if self.main and self._unfinished(start):
                # Killed after its last checkpoint, the session that ended there left its grid or export unwritten.
                remove_temp_files(self.run_dir)
                self.logger = RunLogger(self.run_dir, start=start, end=start, main=True, progress=False, log=self.log)
                try:
                    if not grid_path(self.run_dir, start).is_file():
                        self.samples(start)
                    export_generator(self.raw["generator"], self.run_dir, to_dict(cfg), start)
                finally:
                    self.logger.close()
                self.log(f"wrote the sample grid and generator export of step {start}, which a stop had left unwritten")
            self.log(f"{self.run_dir} is already at step {start} (--steps {end}); nothing to train")
            return TrainResult(self.run_dir, start, start, "up-to-date", is_main=self.main)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._refuse_finished()  # a run another process finished while this one was setting up
            remove_temp_files(self.run_dir)  # a killed writer's (a checkpoint's is ~0.5 GB at 128 px)
            save_json(cfg, self.run_dir / "config.json")
        self.log(f"training {cfg.model} {cfg.size}px on {self.rt.device}{f' x{info.world_size}' if info.enabled else ''} "
                 f"({self.rt.describe()}; images on {self.data.store.where}): {len(self.data.ds)} train images, "
                 f"{len(cfg.affects)} affects, batch {cfg.batch}, steps {start + 1}..{end}")
        self.logger = RunLogger(self.run_dir, start=start, end=end, main=self.main, progress=self.progress,
                                log=self.log)
        due = self.resume and cfg.sample_every and start % cfg.sample_every == 0
        if due and not grid_path(self.run_dir, start).is_file():
            self.samples(start)  # due with the checkpoint resumed from, whose session stopped before writing it
        self.meter = Meter(start + 1)
        self.saved_at, self.last = (start if self.resume else -1), {}
        try:
            with _CtrlC() as stop:
                status, step = self.loop(start, end, stop, on_step)
            # Only reached without an exception: the losses were finite (save() checks the weights).
            if self.saved_at != step:
                self.save(step)
            self.samples(step)
            if self.main:
                export_generator(self.raw["generator"], self.run_dir, to_dict(cfg), step)
        finally:
            self.logger.close()
        dd.barrier(info)
        return TrainResult(self.run_dir, start, step, status, self.last, is_main=self.main)

    def loop(self, start: int, end: int, stop: "_CtrlC", on_step: Callable | None) -> tuple[str, int]:
        step = start
        for step in range(start + 1, end + 1):
            # 1. data: sources (+ same-identity targets for paired models), affects, identities
            t0 = time.perf_counter()
            batch = self.data.next()
            data_time = time.perf_counter() - t0
            # 2. learning rate of this iteration (the model's schedule)
            self.set_lr(step - 1)
            # 3. D and G updates: the model's own step through the wrapped networks
            scalars = self.model.train_step(batch, self.context(step))
            # 4. logs, checkpoints, samples; Ctrl-C (every rank must agree before stopping, so under
            # torchrun the flag is only read at logging steps: one small all-reduce)
            self.meter.add(scalars, data_time)
            self.logger.bar.update(1)
            regular = step % self.cfg.log_every == 0 or step % self.cfg.ckpt_every == 0 or step == end
            logged = self.boundary(step) if regular else None
            if on_step is not None:
                on_step(step, logged)
            if (regular or not self.info.enabled) and dd.any_rank(stop.requested, self.info, self.rt.device):
                if not regular:
                    self.boundary(step)
                self.log(f"stopping at step {step} (interrupted); checkpoint saved, resume with --resume")
                return "interrupted", step
        return "done", step

    def boundary(self, step: int) -> dict[str, float]:
        """End of a logging interval: NaN check, scalars, and the periodic checkpoint and samples.

        The NaN check comes first, so a checkpoint is only ever written from a finite state.
        """
        cfg, info = self.cfg, self.info
        names, mean = self.meter.means(self.model.metrics, info)
        if not bool(torch.isfinite(mean).all()):
            bad = {k: v for k, v in zip(names, mean.tolist()) if not np.isfinite(v)}
            raise NonFiniteLoss(f"non-finite loss between steps {self.meter.since} and {step} "
                                f"({', '.join(f'{k}={v}' for k, v in bad.items())}); training stopped and "
                                f"{self._kept()}; try a lower --lr or smaller loss weights")
        elapsed = max(time.perf_counter() - self.meter.t0, 1e-9)
        self.last = {**dict(zip(names, mean.tolist())),
                     "img_per_s": self.meter.n * cfg.batch * info.world_size / elapsed,
                     "data_frac": self.meter.data_time / elapsed,
                     **self.model.scheduled(step, cfg.steps),
                     **{f"lr_{n}": o.param_groups[0]["lr"] for n, o in self.opts.items()}}
        self.logger.scalars(step, self.last, self.model.progress)
        if step % cfg.ckpt_every == 0 and step != cfg.steps:
            self.save(step)
            self.saved_at = step
        if cfg.sample_every and step % cfg.sample_every == 0 and step != cfg.steps:
            self.samples(step)
        self.meter = Meter(step + 1)
        return self.last

    def _unfinished(self, step: int) -> bool:
        """True when the grid or the generator export of the checkpoint's step is missing (or an older one)."""
        exported = read_json_or_empty(self.run_dir / GENERATOR_META).get("step")
        return (not grid_path(self.run_dir, step).is_file() or exported != step
                or not (self.run_dir / GENERATOR).is_file())

    def _kept(self) -> str:
        if self.saved_at < 0:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (step {self.saved_at}) is kept in {self.ckpt_path}"


class Meter:
    """Running sums of a logging interval's scalars, kept on the device (no sync per step)."""

    def __init__(self, since: int) -> None:
        self.since, self.n, self.data_time, self.t0 = since, 0, 0.0, time.perf_counter()
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, scalars: dict[str, torch.Tensor], data_time: float) -> None:
        self.n, self.data_time = self.n + 1, self.data_time + data_time
        for key, value in scalars.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self, order: tuple[str, ...], info: dd.DistInfo) -> tuple[list[str], torch.Tensor]:
        """(names, means averaged over ranks) in the model's metric order (keys it did not list go last)."""
        names = [k for k in order if k in self.sums] + sorted(set(self.sums) - set(order))
        vec = torch.stack([self.sums[k] / self.counts[k] for k in names])
        return names, dd.average(vec, info)


class _CtrlC:
    """Ctrl-C sets `requested` (the loop stops after the step and saves); a second one stops at once."""

    def __init__(self) -> None:
        self.requested, self.previous = False, None

    def __enter__(self) -> "_CtrlC":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
