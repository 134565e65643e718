"""What a run reports: TensorBoard scalars and images, RUN/metrics.jsonl, sample PNGs and the progress bar.

Only rank 0 writes; on other ranks every method is a no-op. At the start, metrics.jsonl lines and
sample grids of steps after the checkpoint's (all of them for a new run) are dropped and TensorBoard
purges them, so a resumed or restarted run reads like one run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from fexdata.errors import TrainingError
from fexdata.images import write_png
from fexdata.paths import atomic_write_text


def tb_group(key: str) -> str:
    """TensorBoard section of a logged scalar: loss/, acc/, perf/ or sched/."""
    if key.startswith("acc_"):
        return "acc"
    if key.startswith(("g_", "d_")):
        return "loss"
    return "perf" if key in ("img_per_s", "data_frac") else "sched"


def grid_path(run_dir: Path, step: int) -> Path:
    return run_dir / "samples" / f"step_{step:07d}.png"


class RunLogger:
    def __init__(self, run_dir: Path, *, start: int, end: int, main: bool, progress: bool,
                 log: Callable[[str], None] = print) -> None:
        """`start`: the checkpoint's step (0 for a new run); what an earlier attempt logged after it goes."""
        self.run_dir, self.main = run_dir, main
        self.metrics_path = run_dir / "metrics.jsonl"
        if main:
            if self.metrics_path.is_file():
                keep_metrics(self.metrics_path, start, log)
            for grid in (run_dir / "samples").glob("step_*.png"):
                if grid.stem[len("step_"):].isdigit() and int(grid.stem[len("step_"):]) > start:
                    grid.unlink()
        self.bar = tqdm(total=end, initial=start, unit="step", disable=not (progress and main), dynamic_ncols=True)
        self.writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1)

    def scalars(self, step: int, values: dict[str, float], shown: tuple[str, ...] = ()) -> None:
        """Log `values` (TensorBoard + one metrics.jsonl line) and show `shown` keys on the bar."""
        self.bar.set_postfix(img_s=f"{values.get('img_per_s', 0):.0f}",
                             **{k: f"{values[k]:.3f}" for k in shown if k in values}, refresh=False)
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{tb_group(key)}/{key}", value, step)
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")

    def samples(self, step: int, grid: np.ndarray) -> None:
        if self.writer is None:
            return
        write_png(grid_path(self.run_dir, step), grid)
        self.writer.add_image("samples", grid, step, dataformats="HWC")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def keep_metrics(path: Path, start: int, log: Callable[[str], None]) -> None:
    """Rewrite metrics.jsonl (atomically) with the lines of steps up to `start` only.

    A run killed while appending leaves a torn last line: it is dropped, and said so. A bad line
    anywhere else is not one fex wrote, so it stops the run rather than being lost silently.
    """
    lines = path.read_text().splitlines()
    keep, dropped = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                log(f"note: dropped a torn last line of {path} (a run stopped while writing it)")
                continue
            raise TrainingError(f"{path}: line {number} is not a metrics record ({line[:60]!r})",
                                hint="remove or fix that line (or move the file away) and start again") from None
        if step <= start:
            keep.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        log(f"note: dropped {dropped} line(s) of {path} logged after step {start} by an earlier attempt")
    atomic_write_text(path, "".join(keep))
