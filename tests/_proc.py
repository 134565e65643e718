"""Child processes in tests never wait forever.

A child that outlives its time is asked for its Python stacks first (faulthandler prints every thread's
stack on SIGABRT, in the child and in each of its workers, since they share its process group), then
killed; the test fails with those stacks, so a hang on a CI machine says where it hung.
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest


def child_env(env: dict | None = None) -> dict:
    return {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}


def start(cmd: list, **kw) -> subprocess.Popen:
    """Popen in a process group of its own, with faulthandler on (see `finish`)."""
    return subprocess.Popen(cmd, env=child_env(kw.pop("env", None)), start_new_session=True, **kw)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """`proc.communicate()`, but a child (or a grandchild holding its pipes) still running after
    `timeout` seconds fails the test with its stacks instead of hanging the suite."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGABRT)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            _, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, proc.args))}\nstill running after {timeout:.0f} s; its stacks:\n"
                    f"{(err or '')[-8000:]}")
    finally:
        _signal_group(proc, signal.SIGKILL)  # nothing of the child's outlives the test


def run(cmd: list, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, **kw)` that cannot hang (see `finish`)."""
    proc = start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    out, err = finish(proc, timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
