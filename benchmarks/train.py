"""Training throughput: img/s per size, width and precision, the data-wait fraction, and fp32 vs bf16 loss curves.

Runs the real training step (`fextrain.train.setup`: sampling, on-device gather and augmentation,
then the model's `train_step`) on a small synthetic manifest built from the bundled sample faces.

Baselines, all measured in the same run:
* fp32 at the first size with the paper's widths: every other row is printed as a ratio to it;
* the data stage alone (sampling + gather + augmentation), timed with device synchronisation, as a
  fraction of the full step time: the share of each step spent waiting for data;
* with --curves N: the same model trained N steps from the same seed in fp32 and in bf16 autocast,
  losses side by side, so a precision is only used where it does not change what is learnt.
The paper's own figure (100K steps x 32 images in ~2 weeks on a GTX 1070, about 2.6 img/s) is printed
for scale, not measured. Target on one H100: >= 2,700 img/s at 128 (100K steps of batch 32 in 20 min).

    python benchmarks/train.py                       # CUDA: 128 and 256 px; CPU: 64 and 128 px, short
    python benchmarks/train.py --device cpu --curves 300        # + fp32/bf16 loss curves (demo widths, 64 px)
    python benchmarks/train.py --compile             # add torch.compile rows (CUDA)
    python benchmarks/train.py --model stargan --widths paper
    python benchmarks/train.py --model fexgan,fexgan-skip,stargan --sizes 128 --batch 32,64 --widths paper \
        --compile --compile-precisions bf16 --deadline 150 --json bench.json      # benchmarks/gpu_check.sh
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
import torch

from fexdata.affects import AFFECTS
from fexdata.manifest import write_manifest
from fexdata.paths import atomic_write_text
from fexdata.sample import sample_face
from fextrain.config import TrainConfig
from fextrain.models import MODELS
from fextrain.runtime import cpu_native_bf16
from fextrain.train import setup, train

PAPER_IMG_PER_S = 100_000 * 32 / (14 * 24 * 3600)  # ~2.6 img/s on a GTX 1070 (FExGAN-Meta paper)
# "paper": each model's own widths; "demo": the narrow widths `fex demo` trains (StarGAN: half width).
WIDTHS = {
    "paper": {},
    "demo": {"fexgan": {"base_width": 32, "max_width": 128, "bottleneck": 64, "latent_dim": 64,
                        "d_widths": [32, 64, 128]},
             "stargan": {"g_conv_dim": 32, "d_conv_dim": 32}},
    # the tests' tiny widths (tests/_train_fixtures.py): a CPU dry run of the benchmark in seconds
    "tiny": {"fexgan": {"base_width": 16, "max_width": 32, "bottleneck": 16, "latent_dim": 16, "d_widths": [8, 16, 32]},
             "fexgan-skip": {"base_width": 16, "max_width": 32, "bottleneck": 16, "d_widths": [8, 16, 32]},
             "stargan": {"g_conv_dim": 8, "g_repeat": 2, "d_conv_dim": 4}},
}
# Seconds a row is expected to need before anything is measured from this run (a compiled row compiles G and D
# in its warm-up); a row is skipped when less than the longest row of its kind so far is left before --deadline.
ROW_SECONDS = {False: 5.0, True: 60.0}


def write_manifest_at(root: Path, size: int, identities: int = 3, per_cell: int = 4) -> Path:
    """identities x 7 affects x per_cell synthetic faces at `size` px, all in the train split."""
    rows = []
    (root / "crops").mkdir(parents=True, exist_ok=True)
    for ident in range(identities):
        for affect in AFFECTS:
            for k in range(per_cell):
                rel = f"crops/{ident}_{affect}_{k}.png"
                face = sample_face(ident, affect, size=size, intensity=0.5 + 0.5 * k / (per_cell - 1), seed=k)
                cv2.imwrite(str(root / rel), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                rows.append({"image": rel, "identity": f"bench:{ident}", "identity_index": ident, "affect": affect,
                             "affect_index": AFFECTS.index(affect), "split": "train", "weight": 1.0,
                             "source": "bench", "source_path": rel, "item": rel, "ingest": ".", "crop_size": size})
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet", affects=AFFECTS)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _arch(model: str, widths: str) -> dict:
    return dict(WIDTHS[widths].get(model, {})) if widths != "paper" else {}


def measure(manifest: Path, out: Path, model: str, widths: str, size: int, batch: int, amp: str, device: str,
            steps: int, warmup: int, compile_: bool) -> dict[str, Any]:
    cfg = TrainConfig(manifest=str(manifest), out=str(out), model=model, size=size, batch=batch, steps=10**9,
                      device=device, amp=amp, compile=compile_, cache_dir=str(out.parent / "cache"),
                      arch=_arch(model, widths))
    if device != "cpu" and torch.cuda.is_available():  # the previous row's networks, off the peak of this one
        gc.collect()
        torch.cuda.empty_cache()
    run = setup(cfg, log=lambda _m: None)
    dev = run.rt.device

    def step(i: int) -> None:
        run.model.train_step(run.data.next(), run.context(i))

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(warmup):
        step(i + 1)
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i + 1)
    _sync(dev)
    step_s = (time.perf_counter() - t0) / steps
    # The data stage alone, synchronised, over the same number of batches.
    t0 = time.perf_counter()
    for _ in range(steps):
        run.data.next()
    _sync(dev)
    data_s = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"img_per_s": batch / step_s, "step_ms": step_s * 1e3, "data_frac": data_s / step_s, "peak_gib": peak,
            "where": run.data.store.where, "device": str(dev), "amp": "bf16" if run.rt.amp else "fp32"}


def curves(manifest: Path, root: Path, model: str, steps: int, batch: int, device: str) -> None:
    """Train `steps` steps in fp32 and in bf16 from the same seed; print the losses side by side."""
    logs, speed = {}, {}
    every = max(1, steps // 10)
    for amp in ("off", "bf16"):
        out = root / f"curve-{amp}"
        cfg = TrainConfig(manifest=str(manifest), out=str(out), model=model, size=64, batch=batch, steps=steps,
                          device=device, amp=amp, log_every=every, ckpt_every=10**9, sample_every=0,
                          cache_dir=str(root / "cache-64"), arch=_arch(model, "demo"))
        train(cfg, progress=False, log=lambda _m: None)
        logs[amp] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        speed[amp] = sorted(r["img_per_s"] for r in logs[amp][1:])[len(logs[amp][1:]) // 2]
    keys = [MODELS[model].reconstruction, "d_total", "g_total"]
    print(f"\nloss curves, {model} demo widths, 64 px, batch {batch}, {steps} steps, same seed "
          f"(means over {every}-step intervals):")
    print("  step  " + "  ".join(f"{k + ' fp32':>13} {k + ' bf16':>13}" for k in keys))
    for a, b in zip(logs["off"], logs["bf16"]):
        print(f"  {a['step']:>4}  " + "  ".join(f"{a.get(k, float('nan')):13.4f} {b.get(k, float('nan')):13.4f}"
                                              for k in keys))
    print(f"  median img/s: fp32 {speed['off']:.1f}, bf16 {speed['bf16']:.1f} "
          f"(x{speed['bf16'] / speed['off']:.2f})")


def _names(value: str, known: list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise SystemExit(f"--{what}: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(known)}")
    return names


def plan(models: list[str], sizes: list[int], widths: list[str], batches: list[int], precisions: list[str],
         compile_precisions: list[str]) -> list[dict]:
    """The rows in the order they run: every eager row first, then the compiled ones (each compiles for tens of
    seconds), so a deadline keeps the eager fp32-vs-bf16 comparison whole."""
    rows = [{"model": m, "size": s, "widths": w, "batch": b, "precision": p, "compile": c}
            for c in (False, True) for m in models for s in sizes for w in widths for b in batches
            for p in (compile_precisions if c else precisions)]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="fexgan", help="registered model(s), comma-separated")
    ap.add_argument("--sizes", default=None, help="default: 128,256 on CUDA, 64,128 on CPU")
    ap.add_argument("--widths", default="paper,demo", help="paper, demo and/or tiny (comma-separated)")
    ap.add_argument("--batch", default="32", help="images per step; several comma-separated")
    ap.add_argument("--precisions", default=None, help="fp32 and/or bf16 (default: both where bf16 is native, "
                                                       "else fp32)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 on CUDA, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on CUDA, 1 on CPU)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    ap.add_argument("--compile-precisions", default=None, help="precisions of the compiled rows (default: all)")
    ap.add_argument("--deadline", type=float, default=None, metavar="S",
                    help="stop starting rows S seconds after the start; the rows left are listed as skipped")
    ap.add_argument("--json", default=None, metavar="PATH", help="write every row (and the skipped ones) here, "
                                                                 "rewritten after each row")
    ap.add_argument("--curves", type=int, default=0, metavar="N",
                    help="also train N steps in fp32 and in bf16 (demo widths, 64 px, batch 16) and print the losses")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's)")
    args = ap.parse_args()
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = _names(args.model, sorted(MODELS), "model")
    widths = _names(args.widths, sorted(WIDTHS), "widths")
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    steps = args.steps or (50 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    bf16 = torch.cuda.is_bf16_supported() if cuda else cpu_native_bf16()
    precisions = _names(args.precisions or ("fp32,bf16" if bf16 else "fp32"), ["bf16", "fp32"], "precisions")
    compile_precisions = _names(args.compile_precisions, ["bf16", "fp32"], "compile-precisions") \
        if args.compile_precisions else precisions
    sizes = [int(s) for s in (args.sizes or ("128,256" if cuda else "64,128")).split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    device_name = torch.cuda.get_device_name() if cuda else (
        f"CPU, {torch.get_num_threads()} threads, native bf16: {'yes' if bf16 else 'no'}")
    print(f"fex train benchmark, {', '.join(models)}, on {device_name}; torch {torch.__version__}; "
          f"{warmup} warm-up + {steps} timed steps per row", flush=True)

    todo = plan(models, sizes, widths, batches, precisions, compile_precisions if args.compile else [])
    rows: list[dict] = []
    skipped: list[dict] = []
    longest: dict[bool, float] = {}  # the longest row of each kind measured so far

    def save() -> None:
        if args.json:
            atomic_write_text(args.json, json.dumps({
                "device": device_name, "torch": torch.__version__, "warmup": warmup, "steps": steps,
                "rows": rows, "skipped": skipped}, indent=1) + "\n")

    root = Path(tempfile.mkdtemp(prefix="fex-bench-train-"))
    try:
        manifest = write_manifest_at(root / "data", max(sizes + [64]))
        for i, row in enumerate(todo):
            left = None if args.deadline is None else args.deadline - (time.perf_counter() - started)
            need = longest.get(row["compile"], ROW_SECONDS[row["compile"]])
            if left is not None and left < need:
                skipped.append({**row, "reason": f"deadline: {max(left, 0):.0f} s left, a row takes {need:.0f} s"})
                save()
                continue
            t0 = time.perf_counter()
            amp = "bf16" if row["precision"] == "bf16" else "off"
            r = measure(manifest, root / f"run-{i}", row["model"], row["widths"], row["size"], row["batch"], amp,
                        args.device, steps, warmup, row["compile"])
            took = time.perf_counter() - t0
            longest[row["compile"]] = max(longest.get(row["compile"], 0.0), took)
            rows.append({**row, **r, "seconds": took})
            save()
            mem = f", peak {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
            print(f"  {row['model']} {row['size']}px {row['widths']} widths batch {row['batch']} {r['amp']}"
                  f"{' compiled' if row['compile'] else ''}: {r['img_per_s']:.1f} img/s ({r['step_ms']:.1f} ms/step), "
                  f"data wait {100 * r['data_frac']:.1f}% of the step{mem}  [{took:.0f} s]", flush=True)
        for s in skipped:
            print(f"  skipped {s['model']} {s['size']}px batch {s['batch']} {s['precision']}"
                  f"{' compiled' if s['compile'] else ''}: {s['reason']}")
        for model in models:
            mine = [r for r in rows if r["model"] == model]
            if not mine:
                continue
            base = mine[0]
            print(f"\n{model}, baseline: fp32 {base['size']}px {base['widths']} widths batch {base['batch']}, "
                  f"{base['img_per_s']:.1f} img/s ({base['device']}, images on {base['where']})")
            for r in mine:
                mem = f", peak {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
                print(f"  {r['size']:>3}px {r['widths']:>5} b{r['batch']:<3} {r['precision']}"
                      f"{' compiled' if r['compile'] else '         '}  {r['img_per_s']:9.1f} img/s  "
                      f"x{r['img_per_s'] / base['img_per_s']:.2f} vs baseline  "
                      f"x{r['img_per_s'] / PAPER_IMG_PER_S:.3g} vs paper's GTX 1070  data wait "
                      f"{100 * r['data_frac']:.1f}%{mem}")
            best128 = max((r for r in mine if r["size"] == 128 and r["widths"] == "paper"),
                          key=lambda r: r["img_per_s"], default=None)
            if best128:
                hours = 100_000 * best128["batch"] / best128["img_per_s"] / 3600
                print(f"  100K steps at batch {best128['batch']}, 128px, paper widths, fastest setting: {hours:.2f} h "
                      f"(target on one H100: under 0.33 h, >= 2,700 img/s)")
        if args.curves:
            curves(manifest, root, models[0], args.curves, 16, args.device)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
