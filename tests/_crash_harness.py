"""Kill a `fex` command at a chosen moment of its work, finish it, and say how the result differs from an
uninterrupted run's (tests/test_crash_anywhere.py).

A kill moment is measured in progress, not in wall time, so kills land inside the work rather than in
Python's start-up: `progress(folder)` counts the output files (or logged steps) the command has made so
far; the child is SIGKILLed, with its whole process group (ffmpeg, ingest workers, the fork server), once
that count reaches a target and a further random delay has passed.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from _proc import _signal_group, start

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.004
# One thread per child: several fex processes on 2 shared cores must not oversubscribe them.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def fex(*args) -> list[str]:
    return [sys.executable, "-m", "cli.main", *map(str, args)]


def is_temp(name: str) -> bool:
    """fex's temp-file names (fexdata.paths.atomic_path, the ingest crop writer, the edit video encoder)."""
    return name.startswith(".") and name.endswith(".tmp")


def files(folder: Path) -> list[str]:
    """Every file under folder, relative, sorted (temp files included)."""
    found = []
    for dirpath, _, names in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        found += [name if rel == "." else f"{rel}/{name}" for name in names]
    return sorted(found)


def leftovers(*folders: Path) -> list[str]:
    return [f"{folder.name}/{f}" for folder in folders if folder.exists() for f in files(folder)
            if is_temp(f.rsplit("/", 1)[-1])]


def count_outputs(folder: Path) -> int:
    """Progress of a command that writes files: the finished (non-temp) files under folder."""
    if not folder.exists():
        return 0
    return sum(not is_temp(name) for _, _, names in os.walk(folder) for name in names)


@dataclass
class Watched:
    rc: int | None            # exit status; None when it was killed
    seconds: float            # from start to exit or kill
    progress: int             # progress when it ended
    trace: list[tuple[float, int]] = field(default_factory=list)  # (seconds, progress) at each change
    stderr: str = ""


def run_watched(cmd: list[str], progress: Callable[[], int], target: int | None = None, delay: float = 0.0,
                timeout: float = 300) -> Watched:
    """Run cmd, polling progress(); with `target`, SIGKILL its process group `delay` s after progress first
    reaches target (never, if it exits first)."""
    err = tempfile.TemporaryFile("w+")  # not a pipe: a chatty child must never block on a full one
    proc = start(cmd, cwd=REPO, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=err)
    t0 = time.perf_counter()
    trace: list[tuple[float, int]] = []
    reached = None
    last = -1
    try:
        while proc.poll() is None:
            now = time.perf_counter() - t0
            if now > timeout:
                _signal_group(proc, signal.SIGABRT)  # faulthandler prints its stacks
                time.sleep(5)
                pytest.fail(f"{' '.join(cmd)}\nstill running after {timeout:.0f} s; its stacks:\n{_read(err)[-8000:]}")
            p = progress()
            if p != last:
                trace.append((round(now, 4), p))
                last = p
            if target is not None and reached is None and p >= target:
                reached = now
            if reached is not None and now >= reached + delay:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
                _wait_group_gone(proc.pid)
                return Watched(None, now, progress(), trace, _read(err))
            time.sleep(POLL_S)
        return Watched(proc.returncode, time.perf_counter() - t0, progress(), trace, _read(err))
    finally:
        _signal_group(proc, signal.SIGKILL)  # nothing of the child's outlives the case
        proc.wait()
        err.close()


def _read(fh) -> str:
    fh.flush()
    fh.seek(0)
    return fh.read()


def _wait_group_gone(pgid: int, timeout: float = 20.0) -> None:
    """Until no live process of the killed group is left (a worker must not write beside the rerun); zombies
    waiting for a reaper write nothing, so they do not count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Outcome:
    command: str
    case: int
    seed: int
    target: int            # progress the kill waited for (files made, or steps logged)
    delay_s: float         # then this much longer
    killed_at_s: float     # seconds from its start to the kill (or to its exit, when it finished first)
    progress_at_kill: int
    finished_first: bool   # the command exited before the kill moment came
    rerun: str             # how it was finished: "rerun", "--resume", "--resume refused; rerun"
    equal: bool
    differences: list[str]
    leftovers: list[str]
    seconds: float         # the case's wall time
    cpu_s: float = 0.0     # CPU time of the children it waited for (ingest workers and ffmpeg not all counted)

    @property
    def passed(self) -> bool:
        return self.equal and not self.leftovers


def table(outcomes: list[Outcome]) -> str:
    head = f"{'command':<7} {'case':>4} {'seed':>10} {'target':>6} {'delay':>6} {'kill@s':>7} {'at':>4} " \
           f"{'finish':<24} {'equal':<5} {'temp':>4}  differences"
    lines = [head]
    for o in outcomes:
        kill = "exit" if o.finished_first else f"{o.killed_at_s:7.2f}"
        lines.append(f"{o.command:<7} {o.case:>4} {o.seed:>10} {o.target:>6} {o.delay_s:6.3f} {kill:>7} "
                     f"{o.progress_at_kill:>4} {o.rerun:<24} {str(o.equal):<5} {len(o.leftovers):>4}  "
                     f"{'; '.join(o.differences + o.leftovers)[:300]}")
    for command in dict.fromkeys(o.command for o in outcomes):
        mine = [o for o in outcomes if o.command == command]
        lines.append(f"{command}: {sum(o.seconds for o in mine):.0f} s wall, {sum(o.cpu_s for o in mine):.0f} s "
                     f"CPU of its children over {len(mine)} cases")
    passed = sum(o.passed for o in outcomes)
    lines.append(f"{passed}/{len(outcomes)} equal to the uninterrupted run with no temp files left")
    return "\n".join(lines)


def save(outcomes: list[Outcome], references: dict[str, Watched], path: Path) -> None:
    """The outcomes, and each reference run's duration and output trace (where the kill moments came from)."""
    path.write_text(json.dumps({
        "outcomes": [{**asdict(o), "passed": o.passed} for o in outcomes],
        "references": {name: {"seconds": round(w.seconds, 3), "trace": w.trace} for name, w in references.items()},
    }, indent=1))
