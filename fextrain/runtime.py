"""Where and how training runs: device, bf16 autocast, channels_last, DDP and torch.compile, the image store.

Every model trains through the same `Runtime`: the loop places its networks (`place`), wraps them
(`wrap`: DDP under torchrun, then torch.compile when asked) and runs forwards under `autocast()`.
"""
from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fexdata.errors import TrainingError
from fextrain import distributed as dd
from fextrain.device import resolve_device as device_name


def resolve_device(spec: str, info: dd.DistInfo) -> torch.device:
    """The training device; under torchrun each process takes the GPU of its local rank."""
    name = device_name(spec, TrainingError)
    if name.startswith("cuda") and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def cpu_native_bf16() -> bool:
    """True on CPUs with bf16 arithmetic in hardware (AVX512-BF16 or AMX), where oneDNN runs bf16
    convolutions and matmuls natively; elsewhere bf16 autocast emulates them and is slower than fp32."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # torch's own CPU queries
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where it is native - CUDA GPUs that support it, CPUs with AVX512-BF16/AMX - (auto),
    forced (bf16) or never (off). On such CPUs bf16 trained 2-3x faster with the same loss curves
    (benchmarks/train.py --curves, docs/train.md)."""
    if mode == "off":
        return None
    if mode == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingError("--amp bf16: this GPU has no bf16 support; use --amp off")
        return torch.bfloat16
    if mode == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_native_bf16()
        return torch.bfloat16 if native else None
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


class Runtime:
    """Device, precision, memory layout and wrapping of one training process."""

    def __init__(self, device: str, amp: str, channels_last: Any, compile_: bool, info: dd.DistInfo) -> None:
        self.info = info
        self.device = resolve_device(device, info)
        self.amp = amp_dtype(amp, self.device)
        self.channels_last = use_channels_last(channels_last, self.device)
        self.compile = compile_
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()

    def place(self, net: nn.Module) -> nn.Module:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return net.to(self.device, memory_format=fmt)

    def wrap(self, net: nn.Module, find_unused: bool = False) -> tuple[nn.Module, nn.Module, nn.Module]:
        """Three views of `net`: (trained, plain, eager). Models never pick one: the StepContext's verbs do
        (`train` -> trained, `frozen`/`no_grad` -> plain, `gradient_penalty` -> eager).

        trained: DDP under torchrun, then compiled when asked - every forward whose output is
        back-propagated into the network's parameters. plain: compiled, not DDP - forwards that only
        pass gradients through a frozen network (a DDP forward whose parameters get no gradient would
        leave its gradient reduction waiting). eager: DDP, not compiled - forwards differentiated
        twice (gradient penalties), which compiled graphs do not support. `find_unused`: some steps
        leave part of `net` without gradient (GANModel.sometimes_unused), which DDP must then look for.
        """
        ddp: nn.Module = net
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # Buffers fitted before training and the same on every rank (warp-refine's expression prior, megabytes)
            # are not re-broadcast from rank 0 at every forward, as DDP does with buffers by default.
            DDP._set_params_and_buffers_to_ignore_for_model(net, list(getattr(net, "fixed_buffers", ())))
            ddp = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                      find_unused_parameters=find_unused)
        if self.compile:
            return torch.compile(ddp), torch.compile(net), ddp
        return ddp, net, ddp

    def describe(self) -> str:
        parts = ["bf16" if self.amp else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compiled")
        return ", ".join(parts)


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
