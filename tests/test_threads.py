"""CPU thread counts: from the affinity mask, the processes sharing it and the idle cores; never above the cores."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from cli.main import main as fex
from fexdata.threads import _cpu_times, available_cores, idle_cores, ingest_plan, set_torch_threads, torch_threads


def test_available_cores_follow_the_affinity_mask():
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))
    # A process pinned to one core (taskset -c 0) gets one core and one torch thread, however many the host has.
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from fexdata.threads import available_cores, torch_threads; "
            "print(available_cores(), torch_threads(), torch_threads(8))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__))).stdout.split()
    assert out == ["1", "1", "1"]


def test_torch_threads_share_the_cores():
    assert torch_threads(8, cores=2) == 2                          # an explicit count, clipped to the cores
    assert torch_threads(1, cores=16) == 1
    assert torch_threads(None, processes=1, cores=4, idle=None) == 4
    assert torch_threads(None, processes=2, cores=4, idle=None) == 2  # two ranks on four cores
    assert torch_threads(None, processes=3, cores=2, idle=None) == 1  # never below one
    assert torch_threads(None, processes=1, cores=4, idle=1.4) == 1   # another job keeps ~2.6 cores busy
    assert torch_threads(None, processes=1, cores=4, idle=0.0) == 1
    assert torch_threads(None, processes=1, cores=4, idle=2.6) == 3
    with pytest.raises(ValueError):
        torch_threads(0)


def test_torchrun_local_ranks_divide_the_cores(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert torch_threads(None, cores=8, idle=None) == 4


def test_idle_cores_from_proc_stat():
    # Two cores: cpu0 busy 300 of 400 jiffies, cpu1 busy 100 of 400 (iowait counts as idle).
    stat = ("cpu  400 0 0 400 0 0 0 0 0 0\n"
            "cpu0 200 0 100 100 0 0 0 0 0 0\n"
            "cpu1 50 0 50 250 50 0 0 0 0 0\n"
            "intr 12345 0 0\n")
    mine = os.sched_getaffinity(0)
    busy, idle, n = _cpu_times(stat)
    assert n == len({0, 1} & mine)
    if mine >= {0, 1}:
        assert (busy, idle) == (400, 400)
    measured = idle_cores(0.05)
    assert measured is None or 0.0 <= measured <= available_cores()


def test_ingest_plan_never_exceeds_the_cores():
    assert ingest_plan(None, units=1, cores=2) == ingest_plan(1, units=1, cores=2)
    one = ingest_plan(None, units=1, cores=2)
    assert (one.workers, one.threads_per_worker, one.writer_threads) == (1, 2, 1)
    many = ingest_plan(None, units=40, cores=2)
    assert (many.workers, many.threads_per_worker) == (2, 1)
    assert ingest_plan(8, units=40, cores=2).workers == 2          # more workers than cores: clipped
    big = ingest_plan(None, units=3, cores=16)
    assert (big.workers, big.threads_per_worker, big.writer_threads) == (3, 5, 2)
    assert big.workers * big.threads_per_worker <= 16


def test_cli_threads_option_sets_torch_threads_before_the_library_runs(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = CliRunner().invoke(fex, ["eval", str(tmp_path / "run"), "--manifest", str(tmp_path / "m.parquet"),
                                          "--threads", "1", "--no-progress"])
        assert result.exit_code != 0  # no such run: the library refused it, after the threads were set
        assert torch.get_num_threads() == 1
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
