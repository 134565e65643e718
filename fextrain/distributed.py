"""Multi-process training under `torchrun`: the same `fex train` command, one process per GPU, on one
node or many (`torchrun --nnodes N --nproc_per_node G ...`, docs/scale.md).

torchrun sets RANK (global), WORLD_SIZE, LOCAL_RANK (within the node) and LOCAL_WORLD_SIZE; without
them (or with WORLD_SIZE=1) everything here is a no-op and training runs in one process. A process
trains on its node's GPU number LOCAL_RANK. Each rank draws its own pairs (a pair sampler seeded per
rank) and trains on its own batch; gradients are averaged by DistributedDataParallel; only global rank
0 writes the run directory, which must therefore be on storage every node can read when resuming.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fexdata.errors import TrainingError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL for CUDA, Gloo for CPU); DistInfo() alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_spec != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(cuda_device_index(local, torch.cuda.device_count()))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local)


def cuda_device_index(local_rank: int, devices: int) -> int:
    """The GPU of a node's `local_rank`-th process: its own, one per process (NCCL refuses two ranks
    on one GPU), so a node may run at most as many processes as it shows GPUs."""
    if local_rank >= devices:
        raise TrainingError(f"local rank {local_rank} has no GPU: this node shows {devices} CUDA device(s)",
                            hint=f"start one process per GPU: torchrun --nproc_per_node {devices} "
                                 "(and check CUDA_VISIBLE_DEVICES)")
    return local_rank


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def average(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of `tensor` over ranks (in place); identity in one process."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= info.world_size
    return tensor


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when `flag` is true on any rank, so every rank takes the same decision (stop, NaN)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (each rank gets the list)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
