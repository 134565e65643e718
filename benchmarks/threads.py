"""Training steps/s while another CPU job runs, with torch's default thread count and with fex's choice.

Two torch processes that each take torch's default thread count (all cores) on a small machine stall
each other: torch's OpenMP threads wait for one another at the end of every operator, so a descheduled
thread holds up the rest. `fex train`/`fex eval` now pick their threads with `fexdata.threads`
(the process's share of the cores, lowered to those other work leaves idle). Rows, all in one run:

    alone, default      training alone, torch's default threads (every core)
    alone, fex          training alone, threads from fexdata.threads (what `fex train` does)
    busy, default       the same while a competing job runs (another training process with default
                        threads, the case the issue measured), default threads
    busy, fex           the same competitor, threads from fexdata.threads

Each row runs in its own process (thread settings are per process): the real FExGAN step
(`Run.model.train_step`, as benchmarks/train.py times it) at 64 px, batch 16, with `fex demo`'s small
widths. Reported: steps/s of wall time (what contention costs) and CPU seconds per step; the ratio of each
row to "alone, default" is measured in the same run.

    .venv/bin/python benchmarks/threads.py [--steps 10] [--competitor torch|spin]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def child(manifest: str, out: str, threads: str, steps: int, forever: bool) -> None:
    """Train in this process and print {"steps_per_s", "cpu_per_step", "threads"} as JSON."""
    import torch

    from fexdata.threads import set_torch_threads
    from fextrain.config import TrainConfig
    from fextrain.train import setup
    from train import WIDTHS  # benchmarks/train.py: `fex demo`'s small widths

    if threads == "fex":
        set_torch_threads(None)
    elif threads != "default":
        torch.set_num_threads(int(threads))
    cfg = TrainConfig(manifest=manifest, out=out, size=64, batch=16, steps=10**9, device="cpu", amp="off",
                      arch=dict(WIDTHS["demo"]["fexgan"]), cache_dir=str(Path(out).parent / "cache"))
    run = setup(cfg, log=lambda _m: None)

    def train_step(i: int) -> None:  # as benchmarks/train.py times it: data, then the model's D and G updates
        run.model.train_step(run.data.next(), run.context(i))

    train_step(1)
    train_step(2)
    step = 3
    while forever:
        train_step(step)
        step += 1
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(steps):
        train_step(step + i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"steps_per_s": steps / wall, "cpu_per_step": cpu / steps, "threads": torch.get_num_threads()}))


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", *args], cwd=Path(__file__).resolve().parents[1],
                            **kwargs)


def measure(manifest: Path, work: Path, name: str, threads: str, steps: int, competitor: str | None) -> dict:
    other = None
    if competitor == "torch":
        other = spawn([str(manifest), str(work / f"{name}-other"), "default", "0", "--forever"],
                      stdout=subprocess.DEVNULL)
    elif competitor == "spin":
        other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if other is not None:
            time.sleep(4.0)  # the competitor is past its set-up and training when ours starts
        proc = spawn([str(manifest), str(work / name), threads, str(steps)], stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{name}: the training process failed")
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if other is not None:
            other.kill()
            other.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per row")
    ap.add_argument("--competitor", choices=["torch", "spin"], default="torch",
                    help="the other CPU job: a training process with default threads, or one busy Python loop")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--forever", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        manifest, out, threads, steps = args.child
        child(manifest, out, threads, int(steps), args.forever)
        return

    from fexdata.threads import available_cores
    from train import write_manifest_at  # benchmarks/train.py: the same synthetic manifest

    work = Path(tempfile.mkdtemp(prefix="fex-bench-threads-"))
    try:
        manifest = write_manifest_at(work / "data", 64, per_cell=3)
        print(f"{available_cores()} cores available, load average {os.getloadavg()[0]:.1f} before the runs "
              f"(other work on the machine counts as part of 'alone'); {args.steps} timed steps per row, "
              f"64 px, batch 16; competitor: {args.competitor}")
        rows = {}
        for name, threads, competitor in (("alone, default", "default", None), ("alone, fex", "fex", None),
                                          ("busy, default", "default", args.competitor),
                                          ("busy, fex", "fex", args.competitor)):
            rows[name] = r = measure(manifest, work, name.replace(", ", "-"), threads, args.steps, competitor)
            base = rows["alone, default"]
            print(f"  {name:16s} {r['threads']} threads  {r['steps_per_s']:6.2f} steps/s  "
                  f"{r['cpu_per_step']:6.3f} CPU s/step  x{r['steps_per_s'] / base['steps_per_s']:.2f} vs alone, default",
                  flush=True)
        busy_d, busy_f = rows["busy, default"], rows["busy, fex"]
        print(f"with another job running, fex's thread choice trains {busy_f['steps_per_s'] / busy_d['steps_per_s']:.1f}x "
              f"faster than torch's default")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
