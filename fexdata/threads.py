"""How many CPU threads fex runs: never more runnable threads than the cores this process may use.

Two torch processes that each take torch's default thread count on 2 shared cores ran a training step
8.5x slower than one thread did (2.18 s against 0.26 s): torch's OpenMP threads wait for each other at
the end of every operator, so one descheduled thread stalls the others. Counts are therefore derived
from what the process may really use:

* `available_cores()`: the CPU affinity mask (`taskset`, container cpusets), capped by a cgroup CPU
  quota (`docker --cpus`), not `os.cpu_count()`, which counts the whole host;
* `idle_cores()`: how many of them were idle over a short sample of /proc/stat, i.e. what other jobs
  leave free right now;
* the number of processes of the same job that share them (ingest workers, torchrun's local ranks).

`torch_threads` / `set_torch_threads` are what `fex train`, `fex eval` (and `fex edit`) call with their
`--threads` option before any torch work: an explicit N is honoured up to the cores; `None` (auto) is
the process's share of the cores, lowered to the cores other work leaves idle. `ingest_plan` sizes the
ingest pool: workers x threads per worker within the cores.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def idle_cores(sample_s: float = 0.2) -> float | None:
    """How many of this process's cores all running work left idle over `sample_s` seconds
    (None where /proc/stat is missing)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(sample_s)
    second = _cpu_times()
    if second is None:
        return None
    busy, idle = second[0] - first[0], second[1] - first[1]
    if busy + idle <= 0:
        return float(available_cores())
    return min(float(available_cores()), second[2] * idle / (busy + idle))


def torch_threads(requested: int | None = None, processes: int | None = None, *,
                  cores: int | None = None, idle: float | None = -1.0) -> int:
    """Intra-op threads for one torch process.

    `requested`: an explicit count (clipped to the cores). Otherwise the process's share of the cores,
    `cores // processes` (processes default to torchrun's LOCAL_WORLD_SIZE, else 1), lowered to the
    cores that are idle now (`idle`: measured when left at -1; None skips the measurement).
    """
    cores = cores or available_cores()
    if requested is not None:
        if requested < 1:
            raise ValueError("threads must be >= 1")
        return min(requested, cores)
    processes = processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    share = max(1, cores // max(1, processes))
    if idle is not None and idle < 0:
        idle = idle_cores()
    if idle is None:
        return share
    # Our own process is not running yet, so every core others leave idle is one we can fill;
    # round half up (1.6 idle cores out of 2: the remainder is other work's fair share).
    return max(1, min(share, math.floor(idle + 0.5)))


def set_torch_threads(requested: int | None = None, processes: int | None = None) -> int:
    """Set torch's intra-op threads per `torch_threads` and return the count (call before torch work)."""
    import torch

    n = torch_threads(requested, processes)
    torch.set_num_threads(n)
    return n


@dataclass(frozen=True)
class IngestPlan:
    cores: int
    workers: int             # worker processes (one unit of work runs on one worker)
    threads_per_worker: int  # the share of each; OpenCV + PNG writers + ffmpeg decode within it

    @property
    def writer_threads(self) -> int:
        """Crop encoders beside a worker's main thread: one, or two when a worker has 3+ cores."""
        return max(1, min(2, self.threads_per_worker - 1))


def ingest_plan(requested_workers: int | None, units: int, cores: int | None = None) -> IngestPlan:
    """Workers for an ingest of `units` units: the request (default: all cores), never more than the
    cores or the units; each worker's threads are its share of the cores."""
    cores = cores or available_cores()
    workers = max(1, min(requested_workers or cores, cores, max(1, units)))
    return IngestPlan(cores, workers, max(1, cores // workers))


def _cpu_times(stat: str | None = None) -> tuple[int, int, int] | None:
    """(busy, idle) jiffies summed over the cores of this process's affinity mask, and their count,
    from /proc/stat (or the `stat` text given)."""
    try:
        stat = Path("/proc/stat").read_text() if stat is None else stat
    except OSError:
        return None
    try:
        mine = os.sched_getaffinity(0)
    except AttributeError:
        mine = None
    busy = idle = n = 0
    for line in stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or (mine is not None and int(name[3:]) not in mine):
            continue
        values = [int(v) for v in fields[:8]]
        idle += values[3] + values[4]   # idle + iowait
        busy += sum(values) - values[3] - values[4]
        n += 1
    return (busy, idle, n) if n else None


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota/period) limit, None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
