"""Evaluation hot spots against named baselines, measured in the same run.

1. Fréchet distance: fex's symmetric eigen-decomposition route against the usual
   `scipy.linalg.sqrtm(S1 @ S2)` route (pytorch-fid's), at 128-D (judge / dlib) and 2048-D (Inception)
   on random feature sets; both values printed so their agreement is visible.
2. dlib identity: faces found and faces per second on 64 and 128 px crops of sample faces.
   Baseline: HOG on the crop as it is with upsample 1 (dlib's usual advice for small faces).
   fex: upscale to 256 px, then HOG with upsample 0.
3. Judge: training images per second and prediction images per second at 64x64 (no baseline: the
   figure sizes the judge's share of an evaluation).

    .venv/bin/python benchmarks/eval.py [--faces 40] [--samples 2000]
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
    settings = JudgeSettings(epochs=2, min_steps=0)
    judge, t_train = _timed(lambda: train_judge(images, labels, AFFECTS, settings, progress=False))
    _, t_pred = _timed(lambda: judge.predict(images))
    print(f"Judge at 64x64, width {settings.width}: training {2 * n / t_train:.0f} images/s, "
          f"prediction {n / t_pred:.0f} images/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=40, help="faces for the dlib benchmark")
    ap.add_argument("--samples", type=int, default=2000, help="feature vectors per set for Fréchet")
    ap.add_argument("--judge-images", type=int, default=2048)
    args = ap.parse_args()
    bench_frechet(args.samples)
    bench_identity(args.faces)
    bench_judge(args.judge_images)


if __name__ == "__main__":
    main()
