"""Training throughput of FExGAN-Meta: img/s at 128 and 256, fp32 vs bf16, and the data-wait fraction.

Runs the real training step (`fextrain.train.Session`: pair sampling, on-device gather and
augmentation, then the model's `train_step`: one D and one G update) on a small synthetic manifest built from the bundled sample faces.

Baselines, all measured in the same run:
* fp32 at 128x128 (the paper's configuration) -- every other row is printed as a ratio to it;
* the data stage alone (sampling + gather + augmentation), timed with device synchronisation, as a
  fraction of the full step time: the share of each step spent waiting for data.
The paper's own figure (100K steps x 32 images in ~2 weeks on a GTX 1070, about 2.6 img/s) is printed
for scale, not measured. Target on one H100: >= 2,000 img/s at 128 with data waiting < 5%.

    python benchmarks/train.py                       # CUDA when present, else a short CPU run
    python benchmarks/train.py --device cpu --steps 2 --sizes 128
    python benchmarks/train.py --compile             # add torch.compile rows (CUDA)
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import pandas as pd
import torch

from fexdata.affects import AFFECTS
from fexdata.manifest import write_manifest
from fexdata.sample import sample_face
from fextrain import distributed as dd
from fextrain.config import TrainConfig
from fextrain.train import Session

PAPER_IMG_PER_S = 100_000 * 32 / (14 * 24 * 3600)  # ~2.6 img/s on a GTX 1070 (FExGAN-Meta paper)


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


def measure(manifest: Path, out: Path, size: int, batch: int, amp: str, device: str, steps: int, warmup: int,
            compile_: bool) -> dict[str, float]:
    cfg = TrainConfig(manifest=str(manifest), out=str(out), size=size, batch=batch, steps=10**9, device=device,
                      amp=amp, compile=compile_, cache_dir=str(out.parent / "cache"))
    run = Session(cfg, False, dd.DistInfo(), lambda _m: None)
    run.setup()
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
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    return {"img_per_s": batch / step_s, "step_ms": step_s * 1e3, "data_frac": data_s / step_s, "peak_gib": peak,
            "where": run.data.store.where, "device": str(dev), "amp": "bf16" if run.rt.amp else "fp32"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 on CUDA, 1 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on CUDA, 1 on CPU)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    ap.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on CPU (often slower)")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    steps = args.steps or (50 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    amps = ["off"]
    if (cuda and torch.cuda.is_bf16_supported()) or (not cuda and args.cpu_bf16):
        amps.append("bf16")
    sizes = [int(s) for s in args.sizes.split(",")]
    device_name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"fex train benchmark on {device_name}; torch {torch.__version__}; batch {args.batch}; "
          f"{warmup} warm-up + {steps} timed steps per row")

    root = Path(tempfile.mkdtemp(prefix="fex-bench-train-"))
    try:
        manifest = write_manifest_at(root / "data", max(sizes))
        rows = []
        for size in sizes:
            for amp in amps:
                for comp in ([False, True] if args.compile else [False]):
                    r = measure(manifest, root / f"run-{size}-{amp}-{comp}", size, args.batch, amp, args.device,
                                steps, warmup, comp)
                    rows.append({"size": size, "precision": r["amp"], "compile": comp, **r})
                    print(f"  {size}px {r['amp']}{' compiled' if comp else ''}: {r['img_per_s']:.1f} img/s "
                          f"({r['step_ms']:.1f} ms/step), data wait {100 * r['data_frac']:.1f}% of the step",
                          flush=True)
        base = next((r for r in rows if r["size"] == 128 and r["precision"] == "fp32" and not r["compile"]), rows[0])
        print(f"\nbaseline: fp32 {base['size']}px, {base['img_per_s']:.1f} img/s ({base['device']}, images on "
              f"{base['where']})")
        for r in rows:
            mem = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] == r["peak_gib"] else ""
            print(f"  {r['size']:>3}px {r['precision']}{' compiled' if r['compile'] else '         '}  "
                  f"{r['img_per_s']:9.1f} img/s  x{r['img_per_s'] / base['img_per_s']:.2f} vs baseline  "
                  f"x{r['img_per_s'] / PAPER_IMG_PER_S:.3g} vs paper's GTX 1070  data wait "
                  f"{100 * r['data_frac']:.1f}%{mem}")
        best128 = max((r for r in rows if r["size"] == 128), key=lambda r: r["img_per_s"], default=None)
        if best128:
            hours = 100_000 * args.batch / best128["img_per_s"] / 3600
            print(f"\n100K steps at batch {args.batch}, 128px, fastest setting: {hours:.2f} h "
                  f"(target on one H100: under 0.5 h, >= 2000 img/s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
