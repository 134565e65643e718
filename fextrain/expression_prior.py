"""The train people's mean expression change per affect pair, measured from their paired frames without learning.

For every train person and every pair of their affects (a -> t), dense optical flow (OpenCV's DIS) says where
each pixel of the person's frame at t comes from in their frame at a, and the log ratio of the two frames'
luminance once aligned by that flow says how the skin's shading changes (a smile's folds, the open mouth's
dark interior, a frown's furrows: an expression-ratio image). Averaged over people in the aligned crop's
coordinates, both fields are an identity-agnostic description of how a face changes from a to t, and carry
over to people never seen (benchmarks/REAL_FACES.md: on the real-face benchmark's unseen people the mean fields
alone came nearer those people's own frames at the target than any learnt generator).

`warp-refine --set arch.prior=true` starts from these fields (`fextrain.models.warp_refine`); they are fitted
once per train split and size and cached like the helper networks (`fextrain.cached_net`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from fextrain.cached_net import CachedNet, fingerprint, load_or_train
from fextrain.pixels import grey_levels

PRIOR_VERSION = 2  # bumped whenever the fitted values change (2: unrounded grey levels)
FRAMES = 4  # frames read per (person, affect): seeded, so a video's thousands of frames cost no more than a photo set
FLOW_SIDE = 256  # DIS finds the motion of a 64 px crop badly; it runs on the crops upsampled to this side
RATIO_EPS = 0.05  # luminance floor (of 1) in the log ratio: dark pixels (the mouth's interior) stay finite


@dataclass(frozen=True)
class PriorCost:
    people: int  # train people with frames at two or more affects
    pairs: int  # frame pairs measured
    cells: int  # affect pairs (a != t) with at least one person's measurement
    seconds: float
    cached: bool
    file: str
    retrained: str | None  # why the cache could not serve it (None when it did)

    def summary(self) -> str:
        how = "cached" if self.cached else f"fitted in {self.seconds:.0f} s ({self.retrained})"
        return (f"expression prior: mean flow and ratio image of {self.people} train people, {self.pairs} frame "
                f"pairs, {self.cells} affect pairs; {how}: {self.file}")


class _PairFields:
    """Flow (pixels of the crop, backward: the target frame's pixel p is at p + flow(p) in the source frame)
    and log luminance ratio between two frames of one person."""

    def __init__(self, side: int) -> None:
        self.side, self.up = side, max(FLOW_SIDE, side)
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.yy, self.xx = np.mgrid[0:side, 0:side].astype(np.float32)  # the identity grid, once for every pair

    def __call__(self, grey_src: np.ndarray, grey_tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        big = [cv2.resize(g, (self.up, self.up), interpolation=cv2.INTER_CUBIC) for g in (grey_tgt, grey_src)]
        flow = self.dis.calc(*(np.clip(np.rint(b * 255), 0, 255).astype(np.uint8) for b in big), None)
        flow = cv2.resize(flow, (self.side, self.side), interpolation=cv2.INTER_AREA) * (self.side / self.up)
        aligned = cv2.remap(grey_src, self.xx + flow[..., 0], self.yy + flow[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        ratio = np.log(grey_tgt + RATIO_EPS) - np.log(aligned + RATIO_EPS)
        return flow, ratio


def fit_expression_prior(images: np.ndarray, identity_ids: np.ndarray, affect_ids: np.ndarray, num_affects: int,
                         progress: bool = False, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """({"flow": [K, K, 2, S, S] normalised backward offsets, "log_ratio": [K, K, 1, S, S], "people": [K, K]},
    counts) from the train split's frames: for each person, the mean over their frame pairs of each affect pair;
    then the mean over people (every person weighs the same, however many frames they have). A pair no person
    shows stays the identity (zero flow, zero ratio)."""
    side, k = images.shape[1], num_affects
    flow_sum = np.zeros((k, k, side, side, 2), np.float64)
    ratio_sum = np.zeros((k, k, side, side), np.float64)
    people = np.zeros((k, k), np.int64)
    rng, fields, pairs, measured_people = np.random.default_rng(seed), _PairFields(side), 0, 0
    identity_ids, affect_ids = np.asarray(identity_ids), np.asarray(affect_ids)
    persons = np.unique(identity_ids)
    for person in tqdm(persons, desc="expression prior", unit="person", disable=not progress, leave=False):
        rows = {a: np.flatnonzero((identity_ids == person) & (affect_ids == a)) for a in range(k)}
        rows = {a: np.sort(rng.choice(r, min(FRAMES, len(r)), replace=False)) for a, r in rows.items() if len(r)}
        if len(rows) < 2:
            continue
        measured_people += 1
        grey = {a: (grey_levels(images[r]) / 255.0).astype(np.float32) for a, r in rows.items()}
        for a in rows:
            for t in rows:
                if a == t:
                    continue
                measured = [fields(s, g) for s in grey[a] for g in grey[t]]
                flow_sum[a, t] += np.mean([f for f, _ in measured], 0)
                ratio_sum[a, t] += np.mean([r for _, r in measured], 0)
                people[a, t] += 1
                pairs += len(measured)
    seen = np.maximum(people, 1)[:, :, None, None]
    flow = (flow_sum / seen[..., None]).transpose(0, 1, 4, 2, 3) * (2.0 / side)  # pixels -> [-1, 1] units
    ratio = (ratio_sum / seen)[:, :, None]
    out = {"flow": torch.from_numpy(np.ascontiguousarray(flow, np.float32)),
           "log_ratio": torch.from_numpy(np.ascontiguousarray(ratio, np.float32)),
           "people": torch.from_numpy(people)}
    counts = {"people": measured_people, "pairs": pairs, "cells": int((people > 0).sum())}
    return out, counts


def load_or_fit_expression_prior(folder: Path, images: np.ndarray, identity_ids: np.ndarray, affect_ids: np.ndarray,
                                 num_affects: int, progress: bool = False) -> tuple[dict[str, torch.Tensor], PriorCost]:
    """(fields as `fit_expression_prior` gives them, what they cost): the cached ones for this data, else fitted
    and cached."""
    header = {"version": PRIOR_VERSION, "frames": FRAMES, "flow_side": FLOW_SIDE, "eps": RATIO_EPS,
              "affects": num_affects, "shape": list(images.shape)}
    key = fingerprint(header, images, np.asarray(identity_ids, np.int64), np.asarray(affect_ids, np.int64))
    entry = CachedNet.named(Path(folder), f"expression-prior-{key[:16]}")

    def restore(weights: dict[str, torch.Tensor], meta: dict) -> tuple[dict[str, torch.Tensor], dict]:
        if set(weights) != {"flow", "log_ratio", "people"}:
            raise KeyError("flow, log_ratio and people")
        return weights, meta

    def fit() -> tuple[tuple[dict[str, torch.Tensor], dict], dict[str, torch.Tensor], dict]:
        t0 = time.perf_counter()
        fields, counts = fit_expression_prior(images, identity_ids, affect_ids, num_affects, progress)
        meta = {"version": PRIOR_VERSION, **counts, "seconds": round(time.perf_counter() - t0, 1)}
        return (fields, meta), fields, meta

    (fields, meta), retrained = load_or_train(entry, key, restore, fit)
    cost = PriorCost(people=int(meta["people"]), pairs=int(meta["pairs"]), cells=int(meta["cells"]),
                     seconds=float(meta["seconds"]), cached=retrained is None, file=str(entry.weights),
                     retrained=retrained)
    return fields, cost


__all__ = ["PriorCost", "fit_expression_prior", "load_or_fit_expression_prior"]
