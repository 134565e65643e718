"""How far a warping model moves a face, against how far the person's own face moves (issue 23).

    .venv/bin/python benchmarks/landmark_motion.py RUN [--manifest M] [--pairs 700] [--gain 1]

For pairs of frames of one person with different affects (source frame s, target frame t, from the run's
manifest: its train people and its test people apart), the model edits s toward t's affect. Its backward
flow at t's 68 landmarks says where each comes from in s; the person's own motion is l_s - l_t. Reported:

* **motion made**: sum(flow . (l_s - l_t)) / sum(|l_s - l_t|^2) over every landmark of every pair: 1 when the
  flow makes the whole motion, 0 for no motion (a copy), negative for motion the wrong way;
* the landmark error (64 px pixels) of the flow, and of no flow at all;
* the same share for two predictors that see no image: the **population mean**, the mean motion of every train
  pair with the same source and target affects (what a regression on affects alone converges to), and the
  **person oracle**, the mean of l_s - l_t' over the person's other frames t' with t's affect (t left out).
  A frame's exact expression is not predictable from its affect alone, so nothing reaches 1; the oracle says
  how far a model that knew each person could go.

`--gain G` scales the flow (an edit-time exaggeration, for probes). Nothing here is a judge: landmarks come
from the manifest (dlib at ingest), the same points warp-refine's landmark term trains on, so this measures
how well that term is met on people seen and unseen, not expression quality.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fexdata.dataset import FaceDataset  # noqa: E402
from fextrain.batches import train_landmarks  # noqa: E402
from fextrain.evaluate.context import to_model_input  # noqa: E402
from fextrain.models import one_hot  # noqa: E402
from fextrain.models.editor import load_editor  # noqa: E402
from fextrain.models.warp_refine import flow_at  # noqa: E402


def frame_pairs(ids: np.ndarray, affects: np.ndarray, points: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to n random (source, target) index pairs: one person, different affects, both with landmarks."""
    known = np.isfinite(points).all(axis=(1, 2))
    pairs = [(i, j) for i in np.flatnonzero(known)
             for j in np.flatnonzero(known & (ids == ids[i]) & (affects != affects[i]))]
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    pick = np.random.default_rng(seed).choice(len(pairs), min(n, len(pairs)), replace=False)
    return pairs[np.sort(pick)]


def oracle_motion(pairs: np.ndarray, ids: np.ndarray, affects: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[P, 68, 2] per pair: the mean motion to the person's other frames with the target's affect (NaN if none)."""
    out = np.full((len(pairs), *points.shape[1:]), np.nan, np.float32)
    known = np.isfinite(points).all(axis=(1, 2))
    for k, (s, t) in enumerate(pairs):
        others = np.flatnonzero(known & (ids == ids[t]) & (affects == affects[t]))
        others = others[others != t]
        if len(others):
            out[k] = points[s] - points[others].mean(0)
    return out


def population_motion(ds: FaceDataset, points: np.ndarray, seed: int) -> dict[tuple[int, int], np.ndarray]:
    """(source affect, target affect) -> [68, 2] mean motion over every pair of frames of one person in `ds`."""
    ids, affects = np.asarray(ds.identity_ids), np.asarray(ds.affect_ids)
    sums: dict[tuple[int, int], list] = {}
    for s, t in frame_pairs(ids, affects, points, 10 ** 9, seed):
        sums.setdefault((int(affects[s]), int(affects[t])), []).append(points[s] - points[t])
    return {key: np.mean(v, 0) for key, v in sums.items()}


def share(made: torch.Tensor, wanted: torch.Tensor) -> float:
    return float((made * wanted).sum() / (wanted * wanted).sum())


@torch.inference_mode()
def measure(editor, ds: FaceDataset, pairs: np.ndarray, points: np.ndarray, gain: float,
            population: dict[tuple[int, int], np.ndarray]) -> dict:
    k = len(editor.affects)
    affects = torch.as_tensor(np.asarray(ds.affect_ids), dtype=torch.long)
    flows = []
    for i in range(0, len(pairs), 64):
        s, t = pairs[i:i + 64, 0], pairs[i:i + 64, 1]
        x = to_model_input(ds.images[s], editor.size).to(editor.device)
        _, flow, _ = editor.warp_fields(x, one_hot(affects[s], k), one_hot(affects[t], k))
        flows.append(flow.float().cpu() * gain)
    flow = torch.cat(flows)
    source, target = torch.as_tensor(points[pairs[:, 0]]), torch.as_tensor(points[pairs[:, 1]])
    at = flow_at(flow, target)   # [P, 68, 2]: where the flow says each of t's landmarks comes from
    wanted = source - target
    mean = torch.as_tensor(np.stack([population.get((int(ds.affect_ids[s]), int(ds.affect_ids[t])),
                                                    np.zeros(points.shape[1:], np.float32)) for s, t in pairs]))
    oracle = torch.as_tensor(oracle_motion(pairs, np.asarray(ds.identity_ids), np.asarray(ds.affect_ids), points))
    has = torch.isfinite(oracle).all(2).all(1)
    per_affect = {}
    for a, name in enumerate(editor.affects):
        rows = affects[pairs[:, 1]] == a
        if int(rows.sum()) >= 10:
            per_affect[name] = round(share(at[rows], wanted[rows]), 2)
    return {"pairs": len(pairs), "made": share(at, wanted), "population": share(mean, wanted),
            "oracle": share(oracle[has], wanted[has]), "oracle_pairs": int(has.sum()),
            "error": float(((wanted - at).norm(dim=2) * 32).mean()),
            "no_flow_error": float((wanted.norm(dim=2) * 32).mean()), "per_target": per_affect}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--manifest", type=Path, default=None, help="default: the run's")
    ap.add_argument("--pairs", type=int, default=700, help="frame pairs per split")
    ap.add_argument("--gain", type=float, default=1.0, help="scale the flow by this (a probe)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    editor = load_editor(args.run)
    if not editor.warps:
        sys.exit(f"{args.run}: model {editor.model!r} does not warp; this benchmark reads a warping model's flow")
    manifest = args.manifest or Path(editor.config["manifest"])
    print(f"run {args.run} (step {editor.step}), manifest {manifest}, flow x {args.gain:g}\n")
    print("| split | pairs | motion made | population mean | person oracle | landmark error, px (no flow) "
          "| per target affect |")
    print("|---|---:|---:|---:|---:|---|---|")
    population = None
    for split in ("train", "test"):
        ds = FaceDataset(manifest, split, size=editor.size, progress=False)
        points = train_landmarks(ds)
        population = population or population_motion(ds, points, args.seed)   # from the train people
        pairs = frame_pairs(np.asarray(ds.identity_ids), np.asarray(ds.affect_ids), points, args.pairs, args.seed)
        r = measure(editor, ds, pairs, points, args.gain, population)
        per = ", ".join(f"{a} {v:.2f}" for a, v in r["per_target"].items())
        print(f"| {split} | {r['pairs']} | {r['made']:.2f} | {r['population']:.2f} | {r['oracle']:.2f} "
              f"({r['oracle_pairs']}) | {r['error']:.2f} ({r['no_flow_error']:.2f}) | {per} |")


if __name__ == "__main__":
    main()
