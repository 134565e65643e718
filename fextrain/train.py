"""The one training loop: any registered model (`fextrain.models`) on a manifest's train split, resumable exactly.

nanoGPT's shape: `setup(cfg) -> Run` checks the run and builds everything once (a frozen value holding
the resolved config - a copy, the caller's is never changed - and what was derived from it), then
`loop(run)` trains. Each iteration: 1. the data part draws a batch shaped for the model (`fextrain.batches`); 2. the
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fexdata.dataset import FaceDataset, crop_side, training_rows
from fexdata.ingest.recipe import read_recipe
from fexdata.manifest import ManifestError, read_manifest
from fexdata.packed_cache import default_cache_dir
from fexdata.paths import locked, read_json_or_empty, remove_temp_files, resolve_inside
from fexdata.versions import versions
from fextrain import distributed as dd
from fextrain.batches import BatchSource, train_intensities, train_landmarks
from fextrain.checkpoint import (CHECKPOINT, FORMAT, GENERATOR, GENERATOR_META, export_generator, load_checkpoint,
                                 save_checkpoint)
from fextrain.config import TrainConfig, from_dict, save_json, to_dict
from fextrain.logger import RunLogger, grid_path
from fextrain.models import GANModel, StepContext, build_from_config, model_class
from fextrain.models.base import arch_fields
from fextrain.runtime import ImageStore, Runtime, TrainingError
from fextrain.samples import render_grid

__all__ = ["NonFiniteLoss", "NonFiniteWeights", "Run", "RunLock", "TrainResult", "TrainingError", "check_manifest",
           "check_resumable", "loop", "nonfinite_state", "setup", "train"]

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
    `cfg` is read, never changed.
    """
    info = dd.init_distributed(cfg.device)
    try:
        with RunLock(Path(cfg.out), info.is_main) as lock:
            run = setup(cfg, resume=resume, info=info, lock=lock, progress=progress and info.is_main,
                        log=log if info.is_main else (lambda _msg: None))
            return loop(run, on_step)
    finally:
        dd.shutdown(info)


class RunLock:
    """Rank 0 holds RUN/.train.lock from when the folder exists until the run ends, as `fex edit` does its
    --out: two processes never write one run, and temporary files found under the lock are a dead writer's."""

    def __init__(self, run_dir: Path, active: bool) -> None:
        self.run_dir, self.active, self.held = run_dir, active, False
        self._stack = ExitStack()

    def take(self) -> None:
        if self.active and not self.held:
            busy = TrainingError(f"another fex train is writing to {self.run_dir}",
                                 hint="wait for it to finish (or stop it), or use another --out")
            self._stack.enter_context(locked(self.run_dir / LOCK_NAME, busy))
            self.held = True

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()


@dataclass(frozen=True)
class Run:
    """One process's training run as `setup` resolved it: the config it trains with and what was built from it."""

    cfg: TrainConfig  # the caller's, resolved: absolute paths, affects, identities, recipe, versions, full arch
    resume: bool
    info: dd.DistInfo
    log: Callable[[str], None]
    progress: bool
    lock: RunLock
    rt: Runtime
    rng: torch.Generator  # the device random stream: augmentation and the model's own draws
    data: BatchSource
    model: GANModel
    start: int  # the checkpoint's step (0 for a new run)
    raw: dict[str, nn.Module]  # the placed networks (what checkpoints hold)
    opts: dict[str, torch.optim.Optimizer]
    nets: dict[str, nn.Module]  # Runtime.wrap's three views of each network
    plain: dict[str, nn.Module]
    eager: dict[str, nn.Module]
    grid_images: np.ndarray  # the sample grids' fixed source faces and their affects
    grid_affects: np.ndarray

    @property
    def main(self) -> bool:
        return self.info.is_main

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def context(self, step: int) -> StepContext:
        return StepContext(step=step, total=self.cfg.steps, nets=self.nets, plain=self.plain, eager=self.eager,
                           raw=self.raw, optimizers=self.opts, autocast=self.rt.autocast, rng=self.rng)


# .. set-up ..............................................................................................

def setup(cfg: TrainConfig, *, resume: bool = False, info: dd.DistInfo | None = None, lock: RunLock | None = None,
          progress: bool = False, log: Callable[[str], None] = print) -> Run:
    """Check the run directory and manifest, then build the data, model and optimisers (restored on `resume`).

    `lock`: the run's RunLock (`train` holds one; a caller that only times steps passes none). `cfg` is not changed:
    the resolved config is a copy (`Run.cfg`).
    """
    info = info or dd.DistInfo()
    lock = lock or RunLock(Path(cfg.out), active=False)
    cfg, state = _open(cfg, resume, lock)
    rt = Runtime(cfg.device, cfg.amp, cfg.channels_last, cfg.compile, info)
    affects = list(check_manifest(cfg.manifest, cfg.size, cfg.holdout_fold))
    recipe = read_recipe(cfg.manifest)

    # The packed cache is built by rank 0 alone; the others open it once it exists.
    rows = dict(split="train") if cfg.holdout_fold is None else dict(split="all", exclude_fold=cfg.holdout_fold)
    ds = _rank_0_first(info, lambda main: FaceDataset(cfg.manifest, size=cfg.size, cache_dir=cfg.cache_dir or None,
                                                      progress=progress and main, **rows))
    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
    rng = torch.Generator(device=rt.device)
    kind = model_class(cfg.model)
    data = BatchSource(ds, ImageStore(ds.images, rt.device, cfg.data_on_device), paired=kind.paired, batch=cfg.batch,
                       augment=cfg.augment, rng=rng, seed=cfg.seed + 1_000_003 * info.rank,
                       channels_last=rt.channels_last, intensity=train_intensities(ds),
                       landmarks=train_landmarks(ds) if kind.landmarks else None)
    cfg = replace(cfg, affects=affects, recipe=recipe, versions=versions(), identities=list(data.identities))
    model: GANModel = build_from_config(to_dict(cfg))
    # Fixed loss helpers (ExprGAN's identity network): rank 0 fits and caches them, the others load.
    helpers = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(cfg.manifest)
    costs = _rank_0_first(info, lambda main: model.prepare(ds, cache_dir=helpers, device=rt.device,
                                                           progress=progress and main, steps=cfg.steps))
    for cost in (costs or {}).values():  # what each helper cost (trained, or from the cache), in the run's log
        log(cost["summary"])
    skip = {"size", "num_affects", "num_identities"}
    cfg = replace(cfg, arch=json.loads(json.dumps({k: v for k, v in asdict(model.arch).items() if k not in skip})))
    start = 0 if state is None else _resume_step(cfg, state, log)
    raw = {name: rt.place(net) for name, net in model.networks().items()}
    opts = model.optimizers(cfg.lr, cfg.betas)
    if state is not None:
        _restore(state, raw, opts, cfg.betas)
    # Random streams: the global one (latent noise, dropout) and the device one (augmentation, conditions).
    torch.manual_seed(cfg.seed + 7919 * (info.rank + 1))
    rng.manual_seed(cfg.seed + 104_729 * (info.rank + 1))
    if state is not None:
        _restore_rng(state.get("rng") or [], info, rt.device, rng, data, log)
    wrapped = {name: rt.wrap(net, name in model.sometimes_unused) for name, net in raw.items()}
    idx = data.grid_sources(cfg.num_samples)
    return Run(cfg=cfg, resume=resume, info=info, log=log, progress=progress, lock=lock, rt=rt, rng=rng, data=data,
               model=model, start=start, raw=raw, opts=opts, nets={n: w[0] for n, w in wrapped.items()},
               plain={n: w[1] for n, w in wrapped.items()}, eager={n: w[2] for n, w in wrapped.items()},
               grid_images=np.asarray(ds.images[idx]), grid_affects=ds.affect_ids[idx])


def _open(cfg: TrainConfig, resume: bool, lock: RunLock) -> tuple[TrainConfig, dict[str, Any] | None]:
    """Refuse a missing --out or manifest and a run that cannot start or resume here; (cfg with absolute
    paths, the checkpoint's state on `resume`)."""
    if not cfg.out:
        raise TrainingError("no run directory: pass --out")
    run_dir = Path(cfg.out)
    if run_dir.is_dir():
        lock.take()
    if resume and not (run_dir / CHECKPOINT).is_file():
        raise TrainingError(f"--resume: no checkpoint at {run_dir / CHECKPOINT}; start the run without --resume")
    _refuse_finished(run_dir, resume)
    if not cfg.manifest:
        raise TrainingError("no manifest: pass --manifest (or set `manifest` in --config)")
    if resume and not os.path.isabs(cfg.manifest) and not Path(cfg.manifest).is_file():
        raise TrainingError(f"cannot find the manifest {cfg.manifest}: the run's config gives it relative to the "
                            "folder the run was started from", hint="pass --manifest with its path from here")
    # Absolute in the run's config, so --resume (and fex eval / fex edit) work from any folder.
    cfg = replace(cfg, manifest=os.path.abspath(cfg.manifest),
                  cache_dir=os.path.abspath(cfg.cache_dir) if cfg.cache_dir else cfg.cache_dir)
    return cfg, (load_checkpoint(run_dir / CHECKPOINT, "cpu") if resume else None)


def _refuse_finished(run_dir: Path, resume: bool) -> None:
    if not resume and (run_dir / CHECKPOINT).is_file():
        raise TrainingError(f"{run_dir} already holds a run ({CHECKPOINT}); pass --resume to "
                            "continue it or choose another --out")


def _rank_0_first(info: dd.DistInfo, build: Callable[[bool], Any]) -> Any:
    """`build(main)` on rank 0, then on the other ranks (which find what rank 0 wrote to the cache)."""
    if info.is_main:
        out = build(True)
    dd.barrier(info)
    if not info.is_main:
        out = build(False)
    return out


def check_resumable(cfg: TrainConfig, saved: TrainConfig) -> None:
    """Refuse to resume a run whose weights depend on a setting that changed since its checkpoint."""
    keys = ["model", "size", "arch", "affects", "holdout_fold"]
    if "num_identities" in arch_fields(model_class(cfg.model)):
        keys.append("identities")  # its identity head is sized by them
    for key in keys:
        old, new = getattr(saved, key), getattr(cfg, key)
        if old != new:
            raise TrainingError(f"cannot resume {Path(cfg.out)}: {key} changed from {old} to {new}; "
                                "start a new run with another --out")


def _resume_step(cfg: TrainConfig, state: dict[str, Any], log: Callable[[str], None]) -> int:
    """The checkpoint's step, once its config is checked against `cfg` (other library versions are only noted)."""
    saved = from_dict(state["config"], saved=True)
    check_resumable(cfg, saved)
    moved = [f"{k} {v} -> {cfg.versions[k]}" for k, v in saved.versions.items() if cfg.versions.get(k, v) != v]
    if moved:
        log(f"note: this run was last trained with other versions ({', '.join(moved)}); continuing")
    return int(state["step"])


def _restore(state: dict[str, Any], raw: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer],
             betas: tuple[float, float]) -> None:
    for name, net in raw.items():
        net.load_state_dict(state["nets"][name])
    for name, opt in opts.items():
        opt.load_state_dict(state["optimizers"][name])
        for group in opt.param_groups:  # a changed --betas applies from here on (--lr: set_lr)
            group["betas"] = tuple(betas)


def _restore_rng(states: list[dict[str, Any]], info: dd.DistInfo, dev: torch.device, rng: torch.Generator,
                 data: BatchSource, log: Callable[[str], None]) -> None:
    if len(states) != info.world_size:
        log(f"note: the checkpoint holds random states for {len(states)} process(es), this run has "
            f"{info.world_size}; random streams restart from the seed")
        return
    mine = states[info.rank]
    torch.set_rng_state(mine["torch"])
    data.sampler.rng.bit_generator.state = mine["sampler"]
    if mine.get("aug_device") == dev.type:
        rng.set_state(mine["aug"])
        if dev.type == "cuda" and mine.get("cuda") is not None:
            torch.cuda.set_rng_state(mine["cuda"], dev)
    else:
        log(f"note: resuming on {dev.type} a run saved on {mine.get('aug_device')}; "
            "augmentation random stream restarts")


# .. the loop ..............................................................................................

def loop(run: Run, on_step: Callable[[int, dict[str, float] | None], None] | None = None) -> TrainResult:
    """Train `run` from its start to `cfg.steps`: logs, checkpoints and sample grids at their cadences, a stop on a
    non-finite loss, and on Ctrl-C a checkpoint after the current step."""
    cfg, info, start, end = run.cfg, run.info, run.start, run.cfg.steps
    if run.resume:
        run.log(f"resuming {run.run_dir} from step {start} (training to step {end})")
    if run.resume and end <= start:
        return _up_to_date(run)
    logger = _begin(run)
    # step: the last one done (`--steps 0` does none: the model's `prepare` alone made its edits)
    meter, saved_at, last, status, step = Meter(start + 1), (start if run.resume else -1), {}, "done", start
    try:
        with _CtrlC() as stop:
            for step in range(start + 1, end + 1):
                # 1. data: sources (+ same-identity targets for paired models), affects, identities
                t0 = time.perf_counter()
                batch = run.data.next()
                data_time = time.perf_counter() - t0
                # 2. learning rate of this iteration (the model's schedule)
                set_lr(run, step - 1)
                # 3. D and G updates: the model's own step through the wrapped networks
                scalars = run.model.train_step(batch, run.context(step))
                # 4. logs, checkpoints, samples; Ctrl-C (every rank must agree before stopping, so under
                # torchrun the flag is only read at logging steps: one small all-reduce)
                meter.add(scalars, data_time)
                logger.bar.update(1)
                regular = step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or step == end
                logged = None
                if regular:
                    logged, saved_at = _interval_end(run, logger, meter, step, saved_at)
                    last, meter = logged, Meter(step + 1)
                if on_step is not None:
                    on_step(step, logged)
                if (regular or not info.enabled) and dd.any_rank(stop.requested, info, run.rt.device):
                    if not regular:
                        last, saved_at = _interval_end(run, logger, meter, step, saved_at)
                    run.log(f"stopping at step {step} (interrupted); checkpoint saved, resume with --resume")
                    status = "interrupted"
                    break
        # Only reached without an exception: the losses were finite (_save checks the weights).
        if saved_at != step:
            _save(run, step, saved_at)
        _samples(run, logger, step)
        if run.main:
            export_generator(run.raw["generator"], run.run_dir, to_dict(cfg), step)
    finally:
        logger.close()
    dd.barrier(info)
    return TrainResult(run.run_dir, start, step, status, last, is_main=run.main)


def _begin(run: Run) -> RunLogger:
    """Rank 0 takes the run directory (config.json, a dead writer's temporary files gone); the run's logger."""
    cfg, info, start, end = run.cfg, run.info, run.start, run.cfg.steps
    if run.main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        run.lock.take()
        _refuse_finished(run.run_dir, run.resume)  # a run another process finished while this one was setting up
        remove_temp_files(run.run_dir)  # a killed writer's (a checkpoint's is ~0.5 GB at 128 px)
        save_json(cfg, run.run_dir / "config.json")
    run.log(f"training {cfg.model} {cfg.size}px on {run.rt.device}{f' x{info.world_size}' if info.enabled else ''} "
            f"({run.rt.describe()}; images on {run.data.store.where}): {len(run.data.ds)} train images, "
            f"{len(cfg.affects)} affects, batch {cfg.batch}, "
            f"{f'steps {start + 1}..{end}' if end > start else 'no steps (the prepared model is saved as it is)'}, "
            f"preset {cfg.preset}")
    logger = RunLogger(run.run_dir, start=start, end=end, main=run.main, progress=run.progress, log=run.log)
    due = run.resume and cfg.sample_every and start % cfg.sample_every == 0
    if due and not grid_path(run.run_dir, start).is_file():
        _samples(run, logger, start)  # due with the checkpoint resumed from, whose session stopped before writing it
    return logger


def set_lr(run: Run, done: int) -> None:
    """The model's learning-rate schedule after `done` iterations: a pure function of the step count,
    so a resumed run follows it exactly (and a changed --lr or --steps applies from there)."""
    lr = run.cfg.lr * run.model.lr_factor(done, run.cfg.steps)
    for opt in run.opts.values():
        for group in opt.param_groups:
            group["lr"] = lr


def _interval_end(run: Run, logger: RunLogger, meter: Meter, step: int,
                  saved_at: int) -> tuple[dict[str, float], int]:
    """End of a logging interval: NaN check, scalars, and the periodic checkpoint and samples; returns
    (the logged scalars, the step of the last checkpoint written).

    The NaN check comes first, so a checkpoint is only ever written from a finite state.
    """
    cfg, info = run.cfg, run.info
    names, mean = meter.means(run.model.metrics, info)
    if not bool(torch.isfinite(mean).all()):
        bad = {k: v for k, v in zip(names, mean.tolist()) if not np.isfinite(v)}
        raise NonFiniteLoss(f"non-finite loss between steps {meter.since} and {step} "
                            f"({', '.join(f'{k}={v}' for k, v in bad.items())}); training stopped and "
                            f"{_kept(run, saved_at)}; try a lower --lr or smaller loss weights")
    elapsed = max(time.perf_counter() - meter.t0, 1e-9)
    logged = {**dict(zip(names, mean.tolist())),
              "img_per_s": meter.n * cfg.batch * info.world_size / elapsed,
              "data_frac": meter.data_time / elapsed,
              **run.model.scheduled(step, cfg.steps),
              **{f"lr_{n}": o.param_groups[0]["lr"] for n, o in run.opts.items()}}
    logger.scalars(step, logged, run.model.progress)
    if step % cfg.ckpt_every == 0 and step != cfg.steps:
        _save(run, step, saved_at)
        saved_at = step
    if cfg.sample_every and step % cfg.sample_every == 0 and step != cfg.steps:
        _samples(run, logger, step)
    return logged, saved_at


# .. outputs ...............................................................................................

def _save(run: Run, step: int, saved_at: int) -> None:
    """The checkpoint of `step` (`saved_at`: the step of the one on disk, named if this one is refused)."""
    # Every rank checks (DDP keeps their weights equal), so all stop together.
    bad = nonfinite_state(run.raw, run.opts)
    if bad is not None:
        raise NonFiniteWeights(f"non-finite values in {bad} at step {step} although the logged losses were "
                               f"finite; training stopped and {_kept(run, saved_at)}",
                               hint="try a lower --lr or smaller loss weights")
    dev = run.rt.device
    mine = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "aug": run.rng.get_state(), "aug_device": dev.type, "sampler": run.data.sampler.rng.bit_generator.state}
    states = dd.gather_objects(mine, run.info)
    if run.main:
        save_checkpoint(run.ckpt_path, {
            "format": FORMAT, "step": step, "config": to_dict(run.cfg),
            "nets": {n: net.state_dict() for n, net in run.raw.items()},
            "optimizers": {n: o.state_dict() for n, o in run.opts.items()}, "rng": states})


def _samples(run: Run, logger: RunLogger, step: int) -> None:
    if run.main:
        logger.samples(step, render_grid(run.model, run.grid_images, run.grid_affects, len(run.cfg.affects),
                                         run.rt.device, run.rt.autocast()))


def _up_to_date(run: Run) -> TrainResult:
    """Nothing to train; a stop after the last checkpoint may have left its grid or generator export unwritten."""
    start = run.start
    if run.main and _unfinished(run.run_dir, start):
        remove_temp_files(run.run_dir)
        logger = RunLogger(run.run_dir, start=start, end=start, main=True, progress=False, log=run.log)
        try:
            if not grid_path(run.run_dir, start).is_file():
                _samples(run, logger, start)
            export_generator(run.raw["generator"], run.run_dir, to_dict(run.cfg), start)
        finally:
            logger.close()
        run.log(f"wrote the sample grid and generator export of step {start}, which a stop had left unwritten")
    run.log(f"{run.run_dir} is already at step {start} (--steps {run.cfg.steps}); nothing to train")
    return TrainResult(run.run_dir, start, start, "up-to-date", is_main=run.main)


def _unfinished(run_dir: Path, step: int) -> bool:
    """True when the grid or the generator export of the checkpoint's step is missing (or an older one)."""
    exported = read_json_or_empty(run_dir / GENERATOR_META).get("step")
    return not grid_path(run_dir, step).is_file() or exported != step or not (run_dir / GENERATOR).is_file()


def _kept(run: Run, saved_at: int) -> str:
    if saved_at < 0:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint (step {saved_at}) is kept in {run.ckpt_path}"


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
