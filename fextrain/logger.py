"""What a run reports: TensorBoard scalars and images, RUN/metrics.jsonl, sample PNGs and the progress bar.

Only rank 0 writes; on other ranks every method is a no-op. On resume, metrics.jsonl lines logged
after the checkpoint's step are dropped and TensorBoard purges them, so both read like one run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fexdata.images import write_png


def tb_group(key: str) -> str:
    """TensorBoard section of a logged scalar: loss/, acc/, perf/ or sched/."""
    if key.startswith("acc_"):
        return "acc"
    if key.startswith(("g_", "d_")):
        return "loss"
    return "perf" if key in ("img_per_s", "data_frac") else "sched"


class RunLogger:
    def __init__(self, run_dir: Path, *, start: int, end: int, resume: bool, main: bool, progress: bool) -> None:
        self.run_dir, self.main = run_dir, main
        self.bar = tqdm(total=end, initial=start, unit="step", disable=not (progress and main), dynamic_ncols=True)
        self.writer = None
        if not main:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if resume else None)
        self.metrics_path = run_dir / "metrics.jsonl"
        if resume and self.metrics_path.is_file():  # drop lines logged after the checkpoint
            keep = [ln for ln in self.metrics_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= start]
            self.metrics_path.write_text("".join(ln + "\n" for ln in keep))

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
        write_png(self.run_dir / "samples" / f"step_{step:07d}.png", grid)
        self.writer.add_image("samples", grid, step, dataformats="HWC")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
