"""Evaluation hot spots against named baselines, measured in the same run.

1. Fréchet distance: fex's symmetric eigen-decomposition route against the usual
   `scipy.linalg.sqrtm(S1 @ S2)` route (pytorch-fid's), at 128-D (judge / dlib) and 2048-D (Inception)
   on random feature sets; both values printed so their agreement is visible.
2. dlib identity: faces found and faces per second on 64 and 128 px crops of sample faces.
   Baseline: HOG on the crop as it is with upsample 1 (dlib's usual advice for small faces).
   fex: upscale to 256 px, then HOG with upsample 0.
3. Judge: training images per second with generator degradations against the version-3 recipe (flips
   and shifts only) as the baseline, and prediction images per second, at 64x64.
4. With --run RUN --manifest M (e.g. the demo's): the headline set of a trained run, judged by the
   version-3 judge (flips and shifts only) and by the degradation-trained judge, each on real test
   faces clean and blurred by sigma 1 px, and on the edits at their target; then sharpness, identity
   and collapse, which do not depend on the judge.

    .venv/bin/python benchmarks/eval.py [--faces 40] [--samples 2000]
    .venv/bin/python benchmarks/eval.py --run out/demo/run --manifest out/demo/manifest.parquet --only quality
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fexdata.affects import AFFECTS  # noqa: E402
from fexdata.sample import sample_face  # noqa: E402
from fextrain.evaluate.frechet import frechet_distance  # noqa: E402
from fextrain.evaluate.identity import FaceDescriber  # noqa: E402
from fextrain.evaluate.judge import JudgeSettings, train_judge  # noqa: E402
from fextrain.evaluate.run import evaluate_run  # noqa: E402


def _timed(fn, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def frechet_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    """The baseline: sqrtm of the (non-symmetric) product S1 S2, real part, as pytorch-fid does."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def bench_frechet(samples: int) -> None:
    rng = np.random.default_rng(0)
    print("Fréchet distance (baseline: scipy.linalg.sqrtm of S1 S2)")
    for dims in (128, 2048):
        a = rng.normal(size=(samples, dims))
        b = rng.normal(size=(samples, dims)) * 1.1 + 0.05
        ours, t_ours = _timed(lambda: frechet_distance(a, b))
        base, t_base = _timed(lambda: frechet_sqrtm(a, b))
        print(f"  {dims:>5}-D, {samples} vs {samples}: fex {t_ours * 1e3:8.1f} ms  sqrtm {t_base * 1e3:8.1f} ms  "
              f"speed-up x{t_base / t_ours:.1f}   values {ours:.4f} vs {base:.4f}")


def bench_identity(n: int) -> None:
    print("dlib identity descriptors (baseline: HOG with upsample 1 on the crop as it is)")
    faces = [sample_face(i % 6, AFFECTS[i % 7], size=256, intensity=0.8, seed=i + 1) for i in range(n)]
    ours = FaceDescriber(detect_size=256, upsample=0)
    base = FaceDescriber(detect_size=0, upsample=1)
    for size in (64, 128):
        crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in faces])
        d_ours, t_ours = _timed(lambda: ours.describe(crops))
        d_base, t_base = _timed(lambda: base.describe(crops))
        print(f"  {size:>3} px x {n}: fex {n / t_ours:6.1f} faces/s, found {d_ours.found.sum()}/{n}   "
              f"baseline {n / t_base:6.1f} faces/s, found {d_base.found.sum()}/{n}   "
              f"ratio x{t_base / t_ours:.2f}")


def bench_judge(n: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, len(AFFECTS), size=n)
    print("Judge at 64x64 (baseline: the version-3 recipe, flips and shifts only)")
    speeds = {False: 0.0, True: 0.0}
    for degrade in (False, True, False, True):  # alternated, best of two: the machine's load drifts
        settings = JudgeSettings(epochs=2, min_steps=0, degrade=degrade)
        judge, t_train = _timed(lambda: train_judge(images, labels, AFFECTS, settings, progress=False))
        speeds[degrade] = max(speeds[degrade], 2 * n / t_train)
    _, t_pred = _timed(lambda: judge.predict(images))
    print(f"  training: with degradations {speeds[True]:.0f} images/s, baseline {speeds[False]:.0f} images/s, "
          f"ratio x{speeds[True] / speeds[False]:.2f};  prediction {n / t_pred:.0f} images/s")


def bench_quality(run: Path, manifest: Path, out: Path, max_sources: int) -> None:
    """The headline set of one run under both judges: the version-3 judge alone (section `judge`), then a
    whole `fex eval` with today's judge, whose summary is printed (each in its own folder under `out`)."""
    opts = dict(max_sources=max_sources, device="cpu", progress=False)
    print(f"Edit quality of {run} on {manifest} ({max_sources} test sources x every affect)")
    rows, full = [], None
    for degrade, name in ((False, "v3: flips + shifts (baseline)"), (True, "v4: + generator degradations")):
        start = time.perf_counter()
        folder = out / ("judge_v4" if degrade else "judge_v3")
        ev = evaluate_run(run, manifest, folder, sections=None if degrade else ["judge"], judge_degrade=degrade,
                          **opts)
        j, full = ev.metrics["judge"], ev if degrade else full
        rows.append(f"  {name:<32}{j['real']['accuracy']:>10.3f}{j['real_blurred']['accuracy']:>9.3f}"
                    f"{j['generated']['accuracy']:>8.3f}{j['generated_over_real']:>12.3f}"
                    f"   {time.perf_counter() - start:6.0f} s ({folder})")
    print(f"  {'judge':<32}{'real test':>10}{'blurred':>9}{'edits':>8}{'edits/real':>12}   eval time")
    print("\n".join(rows))
    s, c = full.metrics["sharpness"], full.metrics["collapse"]
    print("  sharpness per target: " + ", ".join(f"{a} {v:.2f}" for a, v in s["per_affect"].items()))
    print("  sources blurred by sigma (px at 64): " + ", ".join(f"{k} {v:.3f}" for k, v in s["blur_reference"].items()))
    print("  collapse per target: " + ", ".join(f"{a} {v:.2f}" for a, v in c["per_affect"].items()))
    print("\n" + full.summary)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=40, help="faces for the dlib benchmark")
    ap.add_argument("--samples", type=int, default=2000, help="feature vectors per set for Fréchet")
    ap.add_argument("--judge-images", type=int, default=2048)
    ap.add_argument("--run", type=Path, help="a trained run for the edit-quality part")
    ap.add_argument("--manifest", type=Path, help="the manifest the run was trained on")
    ap.add_argument("--out", type=Path, default=Path("out/bench_eval"), help="folder for the judges and metrics")
    ap.add_argument("--max-sources", type=int, default=100)
    ap.add_argument("--only", choices=["frechet", "identity", "judge", "quality"], action="append")
    args = ap.parse_args()
    parts = args.only or ["frechet", "identity", "judge"] + (["quality"] if args.run else [])
    if "quality" in parts and not (args.run and args.manifest):
        ap.error("the quality part needs --run and --manifest")
    if "frechet" in parts:
        bench_frechet(args.samples)
    if "identity" in parts:
        bench_identity(args.faces)
    if "judge" in parts:
        bench_judge(args.judge_images)
    if "quality" in parts:
        bench_quality(args.run, args.manifest, args.out, args.max_sources)


if __name__ == "__main__":
    main()
