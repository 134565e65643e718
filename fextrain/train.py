"""The training loop: one FExGAN step after another on a manifest's train split, resumable exactly.

Each step (FExGAN eq. 1-7):
1. draw B (source, target) pairs: the target is a random image of the source's identity showing the
   target affect (`fexdata.dataset.PairSampler`), gather their pixels from the packed uint8 images
   (kept on the GPU when they fit) and augment the batch on the device (`fextrain.augment`);
2. condition: A_s = one-hot of the source affect, A_t(lambda) drawn around the target's one-hot;
3. discriminator step on (source image, A_s) as real and the detached G(source, A_s, A_t) as fake;
4. generator step against the updated discriminator: adversarial (binary + target affect), KL, and
   L1 to the target image.
The order (D then G, a fresh D forward for G) is the usual PyTorch GAN loop; the reference code
updated both from one forward, which changes nothing in the losses themselves.

Run directory (docs/design.md): config.json, checkpoints/last.pt (atomic, every `ckpt_every` steps,
at the end and on Ctrl-C), generator.safetensors + generator.json, samples/step_<n>.png, tb/ and
metrics.jsonl (the logged scalars, one JSON object per line). A non-finite loss stops the run without
writing a checkpoint, so the last one on disk is the last good state.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fexdata.dataset import FaceDataset, PairSampler
from fexdata.images import write_png
from fexdata.manifest import ManifestError, read_manifest
from fexdata.paths import resolve_inside
from fextrain import distributed as dd
from fextrain.augment import augment_pairs, to_uint8, to_unit_range
from fextrain.checkpoint import CHECKPOINT, FORMAT, build_from_config, export_generator, load_checkpoint, save_checkpoint
from fextrain.config import TrainConfig, from_dict, save_json, to_dict
from fextrain.losses import binary_weight, discriminator_accuracies, discriminator_loss, generator_loss
from fextrain.models.fexgan import one_hot, sample_target_affects

# Scalars logged every `log_every` steps, in this order (TensorBoard tags: loss/..., acc/...).
METRICS = ("g_total", "g_adv_bin", "g_adv_cls", "g_kl", "g_l1",
           "d_total", "d_real_bin", "d_real_cls", "d_fake_bin", "d_fake_cls",
           "acc_real_bin", "acc_real_cls", "acc_fake_bin", "acc_fake_cls")


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


class NonFiniteLoss(TrainingError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    start_step: int
    step: int
    status: str  # "done" | "interrupted" | "up-to-date"
    metrics: dict[str, float] = field(default_factory=dict)  # the last logged scalars
    is_main: bool = True  # False on the other ranks under torchrun (they print nothing)


# --- checks and set-up ------------------------------------------------------------------------------


def check_manifest(path: str | Path, size: int) -> tuple[str, ...]:
    """Refuse a manifest training cannot use, before any step; returns its affect order.

    Needs a train split with at least two affects, one crop size no smaller than `size` (larger
    crops are shrunk once into the packed cache; enlarging would only teach blur), and every train
    crop on disk.
    """
    path = Path(path)
    df, meta = read_manifest(path, columns=["image", "affect", "split", "crop_size"])
    affects = tuple(meta.get("affects") or ())
    train = df[df["split"] == "train"]
    if train.empty:
        splits = ", ".join(sorted(set(df["split"]))) or "none"
        raise ManifestError(f"{path}: no rows in the train split (splits present: {splits}); "
                            "rebuild it with `fex build-manifest`")
    present = sorted(set(train["affect"]))
    if len(present) < 2 or len(affects) < 2:
        raise ManifestError(f"{path}: the train split has only one affect ({present[0]}); changing "
                            "expressions needs at least two")
    sizes = sorted(set(int(s) for s in train["crop_size"]))
    if len(sizes) > 1:
        raise ManifestError(f"{path}: crops of several sizes {sizes}; a manifest must hold one crop size")
    if sizes[0] < size:
        raise ManifestError(f"{path}: crops are {sizes[0]}x{sizes[0]}, smaller than --size {size}; "
                            f"train with --size {sizes[0]} or lower, or re-ingest at --size {size}")
    root = path.resolve().parent
    missing = [p for p in train["image"] if not resolve_inside(p, root).is_file()]
    if missing:
        raise ManifestError(f"{path}: {len(missing)} of {len(train)} train crops are missing, e.g. "
                            f"{missing[0]}; run `fex manifest-info {path}` or rebuild the manifest")
    return affects


def resolve_device(spec: str, info: dd.DistInfo) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {spec}: no CUDA device is visible to torch")
        return torch.device("cuda", info.local_rank) if info.enabled else torch.device(spec)
    if spec != "cpu":
        raise TrainingError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA GPUs that support it (auto), forced (bf16) or never (off)."""
    if mode == "off":
        return None
    if mode == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingError("--set amp=bf16: this GPU has no bf16 support; use amp=off")
        return torch.bfloat16
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    raise TrainingError(f"amp must be auto, bf16 or off; got {mode!r}")


def use_channels_last(mode: Any, device: torch.device) -> bool:
    if mode in ("auto", None):
        return device.type == "cuda"
    if isinstance(mode, bool):
        return mode
    if str(mode).lower() in ("on", "true", "yes", "1"):
        return True
    if str(mode).lower() in ("off", "false", "no", "0"):
        return False
    raise TrainingError(f"channels_last must be auto, on or off; got {mode!r}")


class ImageStore:
    """The split's packed uint8 images where the training device reads them fastest.

    On a GPU with room (data_on_device auto/on) the whole array is copied there once and a batch is one
    `index_select`; otherwise the memory-mapped array is gathered with numpy and, for CUDA, copied
    through pinned memory.
    """

    def __init__(self, images: np.ndarray, device: torch.device, mode: str = "auto") -> None:
        self.device = device
        self.host = images
        self.tensor: torch.Tensor | None = None
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = images.nbytes < 0.4 * free
            if mode == "on" or (mode == "auto" and fits):
                self.tensor = torch.empty(images.shape, dtype=torch.uint8, device=device)
                step = max(1, (256 << 20) // max(1, images[0].nbytes))
                for a in range(0, len(images), step):
                    self.tensor[a:a + step].copy_(torch.from_numpy(np.ascontiguousarray(images[a:a + step])))

    @property
    def where(self) -> str:
        return "gpu" if self.tensor is not None else "host"

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 [n, H, W, 3] on the device for dataset rows `idx`."""
        if self.tensor is not None:
            return self.tensor.index_select(0, torch.from_numpy(idx).to(self.device, non_blocking=True))
        batch = torch.from_numpy(np.asarray(self.host[idx]))
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch


def _tb_group(key: str) -> str:
    """TensorBoard section of a logged scalar: loss/, acc/, perf/ or sched/."""
    if key.startswith("acc_"):
        return "acc"
    if key.startswith(("g_", "d_")):
        return "loss"
    return "perf" if key in ("img_per_s", "data_frac") else "sched"


class _RealFake(nn.Module):
    """D on the real and the fake batch in one module call, so DDP sees one forward per backward."""

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.d = discriminator

    def forward(self, real: torch.Tensor, fake: torch.Tensor):
        return self.d(real), self.d(fake)


def grid_sources(ds: FaceDataset, n: int) -> np.ndarray:
    """Fixed faces for the sample grids: one per identity (its neutral one when it has one), then more."""
    affects = ds.frame["affect"].to_numpy()
    order = np.lexsort((np.arange(len(ds)), affects != "neutral", ds.identity_ids))
    _, first = np.unique(ds.identity_ids[order], return_index=True)
    chosen = list(order[np.sort(first)][:n])
    taken = set(chosen)
    rest = [i for i in order if i not in taken]
    if len(chosen) < n and rest:
        chosen += [rest[int(j)] for j in np.linspace(0, len(rest) - 1, min(n - len(chosen), len(rest)))]
    return np.asarray(chosen[:n], dtype=np.int64)


@torch.no_grad()
def render_grid(generator: nn.Module, images: np.ndarray, src_affects: np.ndarray, num_affects: int,
                device: torch.device, amp: torch.dtype | None = None, pad: int = 2) -> np.ndarray:
    """A uint8 RGB grid: one row per source face; its columns are the source and one output per affect.

    Outputs use the posterior mean and eval-mode BatchNorm/dropout, so a grid consumes no random
    numbers and does not disturb training (the model's mode is restored).
    """
    was_training = generator.training
    generator.eval()
    try:
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            x = to_unit_range(torch.from_numpy(images).to(device)).contiguous()
            mu, _ = generator.encode(x, one_hot(torch.from_numpy(src_affects).to(device), num_affects))
            cols = [x]
            for k in range(num_affects):
                cols.append(generator.decode(mu, one_hot(torch.full((len(x),), k, device=device), num_affects)))
    finally:
        generator.train(was_training)
    tiles = np.stack([to_uint8(c) for c in cols], axis=1)  # [n, K+1, H, W, 3]
    n, m, h, w, _ = tiles.shape
    grid = np.full((n * (h + pad) + pad, m * (w + pad) + pad, 3), 255, np.uint8)
    for r in range(n):
        for c in range(m):
            y, x0 = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x0:x0 + w] = tiles[r, c]
    return grid


# --- the run ----------------------------------------------------------------------------------------


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print,
          on_step: Callable[[int, dict[str, float] | None], None] | None = None) -> TrainResult:
    """Train `cfg.model` on `cfg.manifest` into `cfg.out` until `cfg.steps` (the run's total).

    `resume` continues from RUN/checkpoints/last.pt with the same step count, optimiser state,
    schedule and random streams. `on_step(step, logged)` is called after every step (logged holds the
    scalars on logging steps, else None). Raises TrainingError/ManifestError with a one-line reason.
    """
    info = dd.init_distributed(cfg.device)
    try:
        return _Run(cfg, resume, progress, log, on_step, info).run()
    finally:
        dd.shutdown(info)


class _Run:
    def __init__(self, cfg: TrainConfig, resume: bool, progress: bool, log: Callable[[str], None],
                 on_step: Callable[[int, dict[str, float] | None], None] | None, info: dd.DistInfo) -> None:
        self.cfg, self.resume, self.info, self.on_step = cfg, resume, info, on_step
        self.main = info.is_main
        self.progress = progress and self.main
        self.log = log if self.main else (lambda _msg: None)
        self.run_dir = Path(cfg.out)
        self.ckpt_path = self.run_dir / CHECKPOINT

    # .. set-up ..

    def _load_state(self) -> dict[str, Any] | None:
        cfg = self.cfg
        if not cfg.out:
            raise TrainingError("no run directory: pass --out")
        if self.resume and not self.ckpt_path.is_file():
            raise TrainingError(f"--resume: no checkpoint at {self.ckpt_path}; start the run without --resume")
        if not self.resume and self.ckpt_path.is_file():
            raise TrainingError(f"{self.run_dir} already holds a run ({CHECKPOINT}); pass --resume to "
                                "continue it or choose another --out")
        if not cfg.manifest:
            raise TrainingError("no manifest: pass --manifest (or set `manifest` in --config)")
        return load_checkpoint(self.ckpt_path, "cpu") if self.resume else None

    def _check_resumable(self, saved: TrainConfig) -> None:
        cfg = self.cfg
        for key in ("model", "size", "arch", "affects"):
            old, new = getattr(saved, key), getattr(cfg, key)
            if old != new:
                raise TrainingError(f"cannot resume {self.run_dir}: {key} changed from {old} to {new}; "
                                    "start a new run with another --out")

    def setup(self) -> None:
        cfg, info = self.cfg, self.info
        self.device = resolve_device(cfg.device, info)
        state = self._load_state()
        affects = check_manifest(cfg.manifest, cfg.size)
        cfg.affects = list(affects)
        self.K = len(affects)
        if cfg.target_law not in ("scaled", "noisy", "onehot"):
            raise TrainingError(f"target_law must be scaled, noisy or onehot; got {cfg.target_law!r}")
        if cfg.batch < 2:
            raise TrainingError("--batch must be at least 2 (BatchNorm needs more than one sample)")

        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
        self.G, self.D = build_from_config(cfg)
        if hasattr(self.G, "cfg") and hasattr(self.G.cfg, "to_dict"):
            cfg.arch = {k: v for k, v in self.G.cfg.to_dict().items() if k not in ("size", "num_affects")}
        self.start_step = 0
        if state is not None:
            self._check_resumable(from_dict(state["config"]))
            self.start_step = int(state["step"])

        self.amp = amp_dtype(cfg.amp, self.device)
        self.channels_last = use_channels_last(cfg.channels_last, self.device)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G.to(self.device, memory_format=fmt)
        self.D.to(self.device, memory_format=fmt)
        # Default (foreach on CUDA) rather than fused=True: fused Adam rejects gradients whose strides
        # differ from the parameters' (pytorch#110758, #126585), which channels_last and compile can produce.
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        if state is not None:
            self.G.load_state_dict(state["generator"])
            self.D.load_state_dict(state["discriminator"])
            self.g_opt.load_state_dict(state["g_opt"])
            self.d_opt.load_state_dict(state["d_opt"])
            for opt in (self.g_opt, self.d_opt):  # a changed --lr applies from here on
                for group in opt.param_groups:
                    group["lr"], group["betas"] = cfg.lr, tuple(cfg.betas)

        # The packed cache is built by rank 0 alone; the others open it once it exists.
        cache = cfg.cache_dir or None
        if self.main:
            self.ds = FaceDataset(cfg.manifest, "train", cfg.size, cache_dir=cache, progress=self.progress)
        dd.barrier(info)
        if not self.main:
            self.ds = FaceDataset(cfg.manifest, "train", cfg.size, cache_dir=cache, progress=False)
        self.sampler = PairSampler(self.ds, seed=cfg.seed + 1_000_003 * info.rank)
        self.store = ImageStore(self.ds.images, self.device, cfg.data_on_device)
        self.affect_ids = torch.from_numpy(self.ds.affect_ids).to(self.device)

        # Random streams: the global one (latent noise, dropout) and one for augmentation and A_t.
        torch.manual_seed(cfg.seed + 7919 * (info.rank + 1))
        self.aug_gen = torch.Generator(device=self.device)
        self.aug_gen.manual_seed(cfg.seed + 104_729 * (info.rank + 1))
        if state is not None:
            self._restore_rng(state.get("rng") or [])

        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        self.g_run: nn.Module = self.G
        self.pair_run: nn.Module = _RealFake(self.D)
        self.d_run: nn.Module = self.D
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_run = DDP(self.G, device_ids=ids)
            self.pair_run = DDP(self.pair_run, device_ids=ids)
        if cfg.compile:
            self.g_run = torch.compile(self.g_run)
            self.pair_run = torch.compile(self.pair_run)
            self.d_run = torch.compile(self.D)

        idx = grid_sources(self.ds, cfg.num_samples)
        self.grid_images = np.asarray(self.ds.images[idx])
        self.grid_affects = self.ds.affect_ids[idx]

    def _rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "aug": self.aug_gen.get_state(),
            "aug_device": self.device.type,
            "sampler": self.sampler.rng.bit_generator.state,
        }

    def _restore_rng(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.info.world_size:
            self.log(f"note: the checkpoint holds random states for {len(states)} process(es), this run has "
                     f"{self.info.world_size}; random streams restart from the seed")
            return
        mine = states[self.info.rank]
        torch.set_rng_state(mine["torch"])
        self.sampler.rng.bit_generator.state = mine["sampler"]
        if mine.get("aug_device") == self.device.type:
            self.aug_gen.set_state(mine["aug"])
            if self.device.type == "cuda" and mine.get("cuda") is not None:
                torch.cuda.set_rng_state(mine["cuda"], self.device)
        else:
            self.log(f"note: resuming on {self.device.type} a run saved on {mine.get('aug_device')}; "
                     "augmentation random stream restarts")

    # .. one step ..

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """Draw and prepare one batch on the device: (x_src, x_tgt, src_aff, tgt_aff, a_src, a_tgt)."""
        cfg, B, K = self.cfg, self.cfg.batch, self.K
        src, tgt, tgt_aff = self.sampler.sample(B)
        x = to_unit_range(self.store.gather(np.concatenate([src, tgt])))
        if not self.channels_last:
            x = x.contiguous()
        x_src, x_tgt = augment_pairs(x[:B], x[B:], cfg.augment, self.aug_gen)
        labels = torch.from_numpy(np.stack([src, tgt_aff])).to(self.device, non_blocking=True)  # one copy
        src_aff, tgt_aff = self.affect_ids[labels[0]], labels[1]
        a_src = one_hot(src_aff, K)
        a_tgt = sample_target_affects(tgt_aff, K, cfg.target_law, cfg.target_sigma, self.aug_gen)
        return x_src, x_tgt, src_aff, tgt_aff, a_src, a_tgt

    def step(self, step: int) -> tuple[torch.Tensor, float]:
        """One D and one G update; returns the step's scalars (on device, no sync) and host data time."""
        cfg = self.cfg
        t0 = time.perf_counter()
        x_src, x_tgt, src_aff, tgt_aff, a_src, a_tgt = self.next_batch()
        data_time = time.perf_counter() - t0
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()

        # Discriminator: eq. 5 on the source (real, A_s) + eq. 6 on the generated image (fake, A_t).
        with autocast:
            x_gen, mu, logvar = self.g_run(x_src, a_src, a_tgt)
            (real_logit, real_cls), (fake_logit, fake_cls) = self.pair_run(x_src, x_gen.detach())
            d_loss, d_terms = discriminator_loss(real_logit, real_cls, src_aff, fake_logit, fake_cls, tgt_aff)
        acc = discriminator_accuracies(real_logit, real_cls, src_aff, fake_logit, fake_cls, tgt_aff)
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()

        # Generator: eq. 4 against the updated D (D's weights need no gradients here).
        self.D.requires_grad_(False)
        with autocast:
            g_fake_logit, g_fake_cls = self.d_run(x_gen)
            w = binary_weight(step, cfg.loss, cfg.steps)
            g_loss, g_terms = generator_loss(g_fake_logit, g_fake_cls, tgt_aff, mu, logvar, x_gen, x_tgt, cfg.loss, w)
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        self.D.requires_grad_(True)

        terms = {**g_terms, **d_terms, **acc}
        return torch.stack([terms[k].float() for k in METRICS]), data_time

    # .. outputs ..

    def _save(self, step: int) -> None:
        states = dd.gather_objects(self._rng_state(), self.info)
        if not self.main:
            return
        save_checkpoint(self.ckpt_path, {
            "format": FORMAT, "step": step, "config": to_dict(self.cfg),
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(), "rng": states,
        })

    def _samples(self, step: int) -> None:
        if not self.main:
            return
        grid = render_grid(self.G, self.grid_images, self.grid_affects, self.K, self.device, self.amp)
        write_png(self.run_dir / "samples" / f"step_{step:07d}.png", grid)
        self.writer.add_image("samples", grid, step, dataformats="HWC")

    def _open_logs(self) -> None:
        if not self.main:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.start_step + 1 if self.resume else None)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.resume and self.metrics_path.is_file():  # drop lines logged after the checkpoint
            keep = [ln for ln in self.metrics_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= self.start_step]
            self.metrics_path.write_text("".join(ln + "\n" for ln in keep))

    def _write_logs(self, step: int, values: dict[str, float]) -> None:
        if not self.main:
            return
        for key, value in values.items():
            if key != "step":
                self.writer.add_scalar(f"{_tb_group(key)}/{key}", value, step)
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(values) + "\n")

    # .. the loop ..

    def run(self) -> TrainResult:
        self.setup()
        cfg, info = self.cfg, self.info
        start, end = self.start_step, cfg.steps
        if self.resume:
            self.log(f"resuming {self.run_dir} from step {start} (training to step {end})")
        if end <= start:
            self.log(f"{self.run_dir} is already at step {start} (--steps {end}); nothing to train")
            return TrainResult(self.run_dir, start, start, "up-to-date", is_main=self.main)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_json(cfg, self.run_dir / "config.json")
        self._open_logs()
        self.log(f"training {cfg.model} {cfg.size}px on {self.device}"
                 f"{f' x{info.world_size}' if info.enabled else ''} "
                 f"({'bf16' if self.amp else 'fp32'}{', channels_last' if self.channels_last else ''}"
                 f"{', compiled' if cfg.compile else ''}; images on {self.store.where}): "
                 f"{len(self.ds)} train images, {self.K} affects, batch {cfg.batch}, steps {start + 1}..{end}")

        stop = {"requested": False}
        previous = None
        if threading.current_thread() is threading.main_thread():
            def _on_sigint(signum: int, frame: Any) -> None:
                if stop["requested"]:  # a second Ctrl-C stops at once
                    raise KeyboardInterrupt
                stop["requested"] = True
            previous = signal.signal(signal.SIGINT, _on_sigint)

        self.bar = tqdm(total=end, initial=start, unit="step", disable=not self.progress, dynamic_ncols=True)
        self._reset_interval(start + 1)
        self.sums = torch.zeros(len(METRICS), device=self.device)
        self.last: dict[str, float] = {}
        self.saved_at = -1
        status, step = "done", start
        try:
            for step in range(start + 1, end + 1):
                values, dt = self.step(step)
                self.sums += values.detach()
                self.n, self.data_time = self.n + 1, self.data_time + dt
                self.bar.update(1)
                regular = step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or step == end
                logged = self._boundary(step) if regular else None
                if self.on_step is not None:
                    self.on_step(step, logged)
                # Ctrl-C sets a flag; every rank must agree before stopping, so under torchrun the flag
                # is only read at logging steps (one small all-reduce), in one process after every step.
                if (regular or not info.enabled) and dd.any_rank(stop["requested"], info, self.device):
                    if not regular:
                        self._boundary(step)
                    status = "interrupted"
                    self.log(f"stopping at step {step} (interrupted); checkpoint saved, resume with --resume")
                    break
        except BaseException:
            if self.main:
                self.writer.close()
            raise
        finally:
            self.bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        # Only reached without an exception: the state is finite and consistent with `step`.
        if self.saved_at != step:
            self._save(step)
        self._samples(step)
        if self.main:
            export_generator(self.G, self.run_dir, cfg, step)
            self.writer.close()
        dd.barrier(info)
        return TrainResult(self.run_dir, start, step, status, {k: v for k, v in self.last.items() if k != "step"},
                           is_main=self.main)

    def _reset_interval(self, first_step: int) -> None:
        self.n, self.data_time, self.t_interval, self.since = 0, 0.0, time.perf_counter(), first_step

    def _boundary(self, step: int) -> dict[str, float]:
        """End of a logging interval: NaN check, scalars, and the periodic checkpoint and samples.

        The NaN check comes first, so a checkpoint is only ever written from a finite state.
        """
        cfg, info = self.cfg, self.info
        mean = dd.average(self.sums.clone(), info) / self.n
        if not bool(torch.isfinite(mean).all()):
            bad = {k: v for k, v in zip(METRICS, mean.tolist()) if not np.isfinite(v)}
            kept = (f"the last good checkpoint (step {self._ckpt_step()}) is kept in {self.ckpt_path}"
                    if self.ckpt_path.is_file() else "no checkpoint had been written yet")
            raise NonFiniteLoss(
                f"non-finite loss between steps {self.since} and {step} "
                f"({', '.join(f'{k}={v}' for k, v in bad.items())}); training stopped and {kept}; "
                "try a lower --lr or smaller loss weights")
        elapsed = max(time.perf_counter() - self.t_interval, 1e-9)
        self.last = {"step": step, **dict(zip(METRICS, mean.tolist())),
                     "img_per_s": self.n * cfg.batch * info.world_size / elapsed,
                     "data_frac": self.data_time / elapsed,
                     "binary_weight": binary_weight(step, cfg.loss, cfg.steps)}
        self._write_logs(step, self.last)
        self.bar.set_postfix(img_s=f"{self.last['img_per_s']:.0f}", g_l1=f"{self.last['g_l1']:.3f}",
                             d=f"{self.last['d_total']:.2f}", refresh=False)
        if step % cfg.ckpt_every == 0 and step != cfg.steps:
            self._save(step)
            self.saved_at = step
        if cfg.sample_every and step % cfg.sample_every == 0 and step != cfg.steps:
            self._samples(step)
        self.sums.zero_()
        self._reset_interval(step + 1)
        return self.last

    def _ckpt_step(self) -> int:
        try:
            return int(load_checkpoint(self.ckpt_path)["step"])
        except Exception:
            return -1
