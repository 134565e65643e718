"""Every registered model on the same manifest, for the same number of training images: one row each.

    python benchmarks/models.py                          # demo data, 64 px, 6,400 images per model (~10 min, 2 CPUs)
    python benchmarks/models.py --images 48000 --sources 100   # 3,000 steps of batch 16: edits worth judging
    python benchmarks/models.py --manifest data/manifest.parquet --size 128

Data: the `fex demo` sample characters (6 identities x 7 affects, 2 s clips at 15 fps), ingested and
split exactly as `fex demo` does, into OUT/data (reused on the next run); or --manifest.

Each model trains with its own paper losses, schedule and learning rate, at its cpu-64 preset's narrow widths
and loss settings (BENCH_ARCH, BENCH_LOSS; the paper widths are 4x the compute and more), batch 16, for --images
images: the same
image budget for every model, in bf16 autocast where this CPU has it natively (--amp, as `fex train`).
Then each run goes through `fex eval`'s own code (`fextrain.evaluate.evaluate_run`, sections judge,
sharpness, identity, collapse, frechet) on the manifest's test split, --sources faces edited into
every affect, with the eval defaults (the judge trained with generator degradations, issue 9):

* judge @ target / real: the judge's accuracy on the edits at their target affect, as a ratio to its
  accuracy on the real test faces (the baseline, measured in the same run);
* sharpness: Laplacian variance of the edits over that of the real sources;
* identity < 0.6: share of edits whose dlib face descriptor lies within 0.6 of its source's (among
  edits where both faces are found), and faces found: share of edits where dlib finds a face;
* collapse: how much edits of different sources differ, relative to the sources (flagged under 0.3);
* judge Frechet: Frechet distance between judge features of real test faces and of the edits;
* train img/s (median over logging intervals after the first) and edits/s (eval mode, batch 64).

DE-GAN edits identity, not expression: its edit keeps the source's affect (drawn on the average train
identity here), so its judge @ target sits near 1/7 by design; its own measure is `fex eval --fer-folds`.
The baseline of each ratio is measured in the same run (the judge on real faces).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from fexdata.dataset import FaceDataset
from fextrain.config import TrainConfig, merge
from fextrain.evaluate.run import evaluate_run
from fextrain.models import MODELS, load_editor, one_hot
from fextrain.runtime import amp_dtype
from fextrain.train import train

# Each model's widths and loss settings are its cpu-64 preset's (`presets` in its model file: one home).
BENCH_ARCH = {name: cls.presets["cpu-64"].as_config()["arch"] for name, cls in MODELS.items()}
# On top of the preset: ExprGAN's identity network (its L_id) at a quarter of its default updates.
BENCH_LOSS = {name: merge(cls.presets["cpu-64"].as_config()["loss"],
                          {"exprgan": {"id_net": {"steps": 500}}}.get(name, {})) for name, cls in MODELS.items()}


def demo_manifest(root: Path) -> Path:
    """The `fex demo` data (same characters, clips, ingest and split), built once under root."""
    manifest = root / "manifest.parquet"
    if manifest.is_file():
        return manifest
    from cli.main import main as fex
    from fexdata.sample import write_studio_tree

    captures = root / "captures"
    shutil.rmtree(captures, ignore_errors=True)
    write_studio_tree(captures, identities=6, seconds=2.0, fps=15.0, size=256, layout="clips")
    fex.main(["ingest", str(captures), "--out", str(root / "ingest"), "--size", "128", "--quiet"],
             standalone_mode=False, prog_name="fex")
    fex.main(["build-manifest", str(root / "ingest"), "--out", str(manifest), "--split", "frame", "--blocks", "4",
              "--guard", "0", "--quiet"], standalone_mode=False, prog_name="fex")
    return manifest


def train_model(name: str, manifest: Path, out: Path, size: int, steps: int, batch: int, amp: str) -> float:
    """Train `name` for `steps` iterations; returns the median training img/s (first interval excluded)."""
    shutil.rmtree(out, ignore_errors=True)
    every = max(1, steps // 10)
    cfg = TrainConfig(manifest=str(manifest), out=str(out), model=name, size=size, steps=steps, batch=batch,
                      device="cpu", amp=amp, log_every=every, ckpt_every=10**9, sample_every=0,
                      arch=dict(BENCH_ARCH.get(name, {})), loss=dict(BENCH_LOSS.get(name, {})))
    train(cfg, progress=False, log=lambda msg: print("   ", msg))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["img_per_s"] for r in rows[1:]] or [rows[0]["img_per_s"]]
    return float(np.median(speeds))


def edit_rate(run: Path, sources: np.ndarray, src_aff: np.ndarray, k: int) -> float:
    """Edits per second through `load_editor(run).edit`: every source into every affect, batches of 64."""
    ed = load_editor(run)
    x = torch.from_numpy(np.repeat(sources, k, axis=0)).permute(0, 3, 1, 2).float() / 127.5 - 1
    src = one_hot(torch.from_numpy(np.repeat(src_aff, k)), k)
    tgt = one_hot(torch.arange(k).repeat(len(sources)), k)
    t0 = time.perf_counter()
    with torch.no_grad():
        for a in range(0, len(x), 64):
            ed.edit(x[a:a + 64], src[a:a + 64], tgt[a:a + 64])
    return len(x) / (time.perf_counter() - t0)


def evaluate(run: Path, manifest: Path, out: Path, judge_cache: Path, sources: int) -> dict:
    """The headline numbers of `fex eval` for one run (the judge is trained once and reused)."""
    shutil.rmtree(out, ignore_errors=True)
    if judge_cache.is_dir():
        shutil.copytree(judge_cache, out / "judge")
    ev = evaluate_run(run, manifest, out, sections=["judge", "sharpness", "identity", "collapse", "frechet"],
                      max_sources=sources, device="cpu", progress=False)
    if not judge_cache.is_dir():
        shutil.copytree(out / "judge", judge_cache)
    m = ev.metrics
    ident = m["identity"]
    return {"judge_ratio": m["judge"]["generated_over_real"], "judge_at_target": m["judge"]["generated"]["accuracy"],
            "judge_real": m["judge"]["real"]["accuracy"], "sharpness": m["sharpness"]["ratio"],
            "identity": ident["share_under_threshold"], "identity_n": ident["measured"],
            "faces_found": 1 - ident["generated_face_not_found"] / max(1, ident["pairs"]),
            "collapse": m["collapse"]["ratio"], "frechet": m["frechet"]["judge_features"]["value"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, help="default: the demo data, built under OUT/data")
    ap.add_argument("--out", type=Path, default=Path("out/bench-models"))
    ap.add_argument("--models", default=",".join(sorted(MODELS)))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=6400, help="training images per model (steps = images / batch)")
    ap.add_argument("--sources", type=int, default=30, help="test faces edited into every affect")
    ap.add_argument("--amp", default="auto", choices=["off", "bf16", "auto"], help="as fex train (auto: bf16 where native)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    manifest = args.manifest or demo_manifest(args.out / "data")
    steps = max(1, args.images // args.batch)

    test = FaceDataset(manifest, "test", args.size, progress=False)
    k = len(test.affects)
    pick = np.sort(np.random.default_rng(0).choice(len(test), min(args.sources, len(test)), replace=False))
    print(f"manifest {manifest}: {len(test)} test faces, {k} affects; {steps} steps x batch {args.batch} = "
          f"{steps * args.batch} images per model, {args.size} px, "
          f"{'bf16' if amp_dtype(args.amp, torch.device('cpu')) else 'fp32'}, {args.threads} thread(s)", flush=True)

    rows = []
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        run = args.out / "runs" / name
        img_s = train_model(name, manifest, run, args.size, steps, args.batch, args.amp)
        rate = edit_rate(run, test.image_array(pick), test.affect_ids[pick], k)
        scores = evaluate(run, manifest, args.out / "eval" / name, args.out / "judge", args.sources)
        rows.append({"model": name, **scores, "train_img_s": img_s, "edits_s": rate})
        print(f"   {rows[-1]}", flush=True)

    print(f"\n{len(pick)} test sources x {k} affects = {len(pick) * k} edits per model; "
          f"{steps * args.batch} training images each; total {time.perf_counter() - started:.0f} s\n")
    print("| model | judge @ target / real | sharpness | identity < 0.6 (pairs measured) | faces found | collapse "
          "| judge Fréchet | train img/s | edits/s |")
    print("|---|---|---|---|---|---|---|---|---|")

    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    for r in rows:
        print(f"| {r['model']} | {num(r['judge_ratio'], '.2f')} ({r['judge_at_target']:.3f} / {r['judge_real']:.3f}) "
              f"| {num(r['sharpness'], '.2f')} | {num(r['identity'], '.2f')} ({r['identity_n']}) "
              f"| {r['faces_found']:.2f} "
              f"| {num(r['collapse'], '.2f')} | {num(r['frechet'], '.1f')} | {r['train_img_s']:.1f} "
              f"| {r['edits_s']:.0f} |")

if __name__ == "__main__":
    main()
