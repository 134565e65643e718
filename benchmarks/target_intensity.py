"""Does FExGAN's target weight mean anything? `loss.target_law` data against scaled (issue 9 §2).

    python benchmarks/target_intensity.py --out out/target-intensity --steps 1500 --seeds 3

Data: the `fex demo` sample characters ingested as `fex demo` does (edit_quality.demo_manifests: 6
identities x 7 affects, 2 s clips at 15 fps; reused from OUT/data), the frame split built with the
demo's `--ramp 0.8` (its clips peak at 40 % of 2 s), so every non-neutral frame has an intensity
min(1, t / 0.8 s). Two FExGAN runs at the benchmark widths with the same seed and image budget:

* data:   A_t = one-hot x the target frame's own intensity (the default);
* scaled: A_t = one-hot x (1 + 0.25 lambda), lambda ~ N(0, 1) independent of the frame (the papers').

On the test split (other frames of the same people), each non-neutral test frame with intensity I is
the target of an edit of a neutral test frame of the same identity (its first one), and we report:

* response: mean absolute pixel change (0-255 scale) between the edits at weight 1 and weight 0.25 of
  the same source and affect: how much the weight changes the face at all;
* L1 (0-255 scale) between the real frame and the edit at weight I, and at weight 1, for weak frames
  (I < 0.5) and strong ones (I >= 0.5). With the tie, drawing a weak frame at its own weight should
  match it better than drawing it at full weight; without the tie the two should hardly differ.

No judge network: these are pixel comparisons with the real frames, so they need nothing trained but
the model. Results: OUT/results.json and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from edit_quality import SPLITS, demo_manifests  # benchmarks/edit_quality.py: the demo data and its splits
from fexdata.dataset import FaceDataset
from fexdata.manifest import read_manifest
from fextrain.config import TrainConfig
from fextrain.evaluate.context import to_model_input
from fextrain.models import load_editor, one_hot
from fextrain.train import train
from models import BENCH_ARCH  # benchmarks/models.py: the same widths as the other benchmarks

LAWS = ("data", "scaled")
WEAK = 0.5


def ramp_manifest(root: Path) -> Path:
    """The demo's frame-split manifest (with its --ramp) over the demo ingest under root/data."""
    return demo_manifests(root / "data")["frame"]


def test_pairs(manifest: Path) -> tuple[FaceDataset, np.ndarray, np.ndarray, np.ndarray]:
    """(test split, target rows, their sources: the identity's first neutral test frame, target intensities)."""
    test = FaceDataset(manifest, "test", 64, progress=False)
    df, _ = read_manifest(manifest, columns=["split", "intensity"])
    intensity = df.loc[df["split"] == "test", "intensity"].to_numpy(np.float64)
    affects = test.frame["affect"].to_numpy()
    neutral = {i: int(np.flatnonzero((test.identity_ids == i) & (affects == "neutral"))[0])
               for i in np.unique(test.identity_ids)}
    rows = np.flatnonzero((affects != "neutral") & np.isfinite(intensity))
    return test, rows, np.array([neutral[i] for i in test.identity_ids[rows]]), intensity[rows]


@torch.no_grad()
def measure(run: Path, manifest: Path, batch: int = 64) -> dict[str, float | int]:
    test, rows, sources, intensity = test_pairs(manifest)
    editor = load_editor(run)
    k = len(editor.affects)

    def edits(weights: np.ndarray) -> torch.Tensor:
        out = []
        for s in range(0, len(rows), batch):
            x = to_model_input(test.image_array(sources[s:s + batch]))
            src = one_hot(torch.from_numpy(test.affect_ids[sources[s:s + batch]]), k)
            tgt = one_hot(torch.from_numpy(test.affect_ids[rows[s:s + batch]]), k)
            out.append(editor.edit(x, src, tgt * torch.from_numpy(weights[s:s + batch]).float()[:, None]).cpu())
        return torch.cat(out)

    real = to_model_input(test.image_array(rows))
    full, faint, own = edits(np.ones(len(rows))), edits(np.full(len(rows), 0.25)), edits(intensity)
    per_image = lambda a, b: (a - b).abs().mean((1, 2, 3)).numpy() * 127.5  # noqa: E731  (0-255 scale)
    weak = intensity < WEAK
    l1_own, l1_full = per_image(own, real), per_image(full, real)
    return {"frames": len(rows), "weak_frames": int(weak.sum()), "response": float(per_image(full, faint).mean()),
            "l1_own_weak": float(l1_own[weak].mean()), "l1_full_weak": float(l1_full[weak].mean()),
            "l1_own_strong": float(l1_own[~weak].mean()), "l1_full_strong": float(l1_full[~weak].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/target-intensity"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = ramp_manifest(args.out)
    results: dict[str, list[dict]] = {law: [] for law in LAWS}
    for seed in range(args.seeds):
        for law in LAWS:
            run = args.out / f"fexgan-{law}-s{seed}"
            if not (run / "done").is_file():  # a finished run is measured again, not retrained
                shutil.rmtree(run, ignore_errors=True)
                cfg = TrainConfig(manifest=str(manifest), out=str(run), model="fexgan", size=64, steps=args.steps,
                                  batch=args.batch, seed=seed, device="cpu", amp="off", ckpt_every=10**9,
                                  log_every=max(1, args.steps // 10), sample_every=0,
                                  arch=dict(BENCH_ARCH["fexgan"]), loss={"target_law": law})
                started = time.perf_counter()
                train(cfg, progress=False, log=lambda msg: None)
                print(f"{law}, seed {seed}: trained {args.steps} steps in {time.perf_counter() - started:.0f} s",
                      flush=True)
                (run / "done").touch()
            results[law].append(measure(run, manifest))
    (args.out / "results.json").write_text(json.dumps({"steps": args.steps, "split": SPLITS["frame"],
                                                       "results": results}, indent=1) + "\n")

    def cell(law: str, key: str) -> str:
        v = np.array([r[key] for r in results[law]])
        return f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"

    first = results[LAWS[0]][0]
    print(f"\nFExGAN, demo data (frame split, --ramp 0.8), {args.steps} steps, mean ± sd over {args.seeds} seeds; "
          f"{first['frames']} test frames ({first['weak_frames']} weak); pixel values 0-255\n")
    print("| target_law | response (w 1 vs 0.25) | L1 weak at own I | L1 weak at 1 | L1 strong at own I | L1 strong at 1 |")
    print("|---|---|---|---|---|---|")
    for law in LAWS:
        print(f"| {law} | " + " | ".join(cell(law, k) for k in ("response", "l1_own_weak", "l1_full_weak",
                                                                 "l1_own_strong", "l1_full_strong")) + " |")


if __name__ == "__main__":
    main()
