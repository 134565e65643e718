"""`evaluate_run`: everything `fex eval` computes for one run and one manifest, written to one folder.

    OUT/metrics.json        discriminator, judge, identity, frechet (+ run): every number with its split,
                            its counts and the run's step
    OUT/report.html         the same as tables, with every figure embedded
    OUT/figures/*.png       random samples, identities, mixed expressions, intensity sweep
    OUT/judge/              the cached judge classifier (reused while the manifest's train split is unchanged)

The generated set is every test source image (or a seeded subset of `max_sources`) edited into every
affect; the judge, identity and Fréchet sections all read that same set.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from fexdata.dataset import FaceDataset
from fexdata.manifest import read_manifest
from fexdata.paths import atomic_write_text
from fextrain.checkpoint import CHECKPOINT, GENERATOR
from fextrain.models import load_run
from fextrain.evaluate import discriminator_table, paper_figures
from fextrain.evaluate.figures import as_uint8_images
from fextrain.evaluate.frechet import InceptionFeatures, frechet_entry
from fextrain.evaluate.generate import discriminate, edit, latent_dim, one_hot, to_model_input
from fextrain.evaluate.identity import SAME_PERSON_THRESHOLD, Descriptors, FaceDescriber, identity_report
from fextrain.evaluate.judge import JudgeSettings, effective_epochs, load_or_train_judge
from fextrain.evaluate.report import write_report
from fextrain.evaluate.report_sections import report_sections
from fextrain.evaluate.scores import classification_report


class EvalError(ValueError):
    """A run or manifest that cannot be evaluated; the message says what to do."""


@dataclass
class EvalOptions:
    """Knobs of an evaluation. The defaults suit a real run on CPU; tests and `fex demo` shrink them."""

    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    max_sources: int | None = 100  # test images edited into every affect (None: all of them)
    max_table_images: int | None = 500  # real images per split for the discriminator table
    judge_size: int = 64
    judge_width: int = 32
    judge_epochs: int = 15
    judge_min_steps: int = 300  # at least this many judge updates, however small the train split
    identity: bool = True  # dlib descriptors (about 80 ms per image on one CPU core)
    landmarks: int = 5  # dlib shape predictor: 5 (default, CC0) or 68 (iBUG 300-W, non-commercial)
    detect_size: int = 256  # images are upscaled to this side before HOG face detection
    inception: str | None = None  # local TorchScript Inception file for FID; never downloaded
    figure_identities: int = 6  # rows of the identity, mixed and intensity figures
    random_rows: int = 4  # latents in the random-samples figure
    sweep_affect: str = "joy"
    sweep: tuple[float, ...] = paper_figures.DEFAULT_SWEEP
    cell: int = 96  # pixels per figure cell
    batch_size: int = 64
    cache_dir: str | None = None  # packed-image cache (default: the dataset's own default)
    seed: int = 0
    progress: bool = True

    @classmethod
    def from_kwargs(cls, **opts: Any) -> "EvalOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise TypeError(f"unknown evaluation option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**opts)

    def judge_settings(self) -> JudgeSettings:
        return JudgeSettings(size=self.judge_size, width=self.judge_width, epochs=self.judge_epochs,
                             min_steps=self.judge_min_steps, seed=self.seed)


def _device(spec: str) -> str:
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise EvalError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
    return spec


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted seeded subset of range(n) of at most `limit` indices (all when limit is None)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def check_inputs(run_dir: Path, manifest: Path) -> tuple[dict[str, Any], list[str]]:
    """Fail early and clearly: no checkpoint, no test split. Returns (manifest meta, splits present)."""
    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: no such run directory")
    if not (run_dir / CHECKPOINT).is_file() and not (run_dir / GENERATOR).is_file():
        raise EvalError(
            f"{run_dir}: no checkpoint yet ({CHECKPOINT} or {GENERATOR}); a run writes its first one after "
            "`ckpt_every` steps or when it stops"
        )
    df, meta = read_manifest(manifest, columns=["split"])
    splits = [s for s in ("train", "val", "test") if (df["split"] == s).any()]
    if "test" not in splits:
        raise EvalError(f"{manifest}: no test split (splits here: {', '.join(splits) or 'none'}); "
                        "rebuild it with a test share, e.g. `fex build-manifest ... --test 0.2`")
    if "train" not in splits:
        raise EvalError(f"{manifest}: no train split; the judge classifier is trained on it")
    return meta, splits


def _check_affects(run_affects: list[str], manifest_affects: list[str], manifest: Path) -> None:
    if list(run_affects) != list(manifest_affects):
        raise EvalError(
            f"{manifest}: its affects ({', '.join(manifest_affects)}) differ from the run's "
            f"({', '.join(run_affects)}); evaluate with the manifest the run was trained on"
        )


def _figure_sources(ds: FaceDataset, names: tuple[str, ...], limit: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One source per identity of the split: its first neutral image, else its first image.

    Returns (images, affect ids, row labels); the label names the affect when it is not neutral.
    """
    neutral = ds.affects.index("neutral") if "neutral" in ds.affects else -1
    picks, labels = [], []
    for ident in np.unique(ds.identity_ids)[:limit]:
        rows = np.flatnonzero(ds.identity_ids == ident)
        neutral_rows = rows[ds.affect_ids[rows] == neutral]
        i = int(neutral_rows[0] if len(neutral_rows) else rows[0])
        picks.append(i)
        name = names[ident] if ident < len(names) else str(ident)
        name = name.split(":", 1)[-1]
        labels.append(name if ds.affect_ids[i] == neutral else f"{name} ({ds.affects[ds.affect_ids[i]]})")
    idx = np.asarray(picks, dtype=np.int64)
    return ds.image_array(idx), ds.affect_ids[idx], labels


def evaluate_run(
    run_dir: str | Path,
    manifest: str | Path,
    out_dir: str | Path,
    log: Callable[[str], None] | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """Evaluate the latest checkpoint of `run_dir` on `manifest`; write OUT and return the metrics dict.

    `opts` are EvalOptions fields (e.g. max_sources=20, judge_epochs=3, identity=False).
    """
    o = EvalOptions.from_kwargs(**opts)
    say = log or (lambda msg: None)
    run_dir, manifest, out_dir = Path(run_dir), Path(manifest), Path(out_dir)
    started = time.time()
    meta, splits = check_inputs(run_dir, manifest)
    device = _device(o.device)
    cfg, generator, discriminator, step = load_run(run_dir, device)
    affects = tuple(cfg.affects) if cfg.affects else tuple(meta["affects"])
    _check_affects(list(affects), list(meta["affects"]), manifest)
    if o.sweep_affect not in affects:
        raise EvalError(f"--sweep-affect {o.sweep_affect!r} is not one of the run's affects: {', '.join(affects)}")
    size, k = int(cfg.size), len(affects)
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"run {run_dir} at step {step}; manifest {manifest}; device {device}")

    data = {s: FaceDataset(manifest, s, size=size, cache_dir=o.cache_dir, progress=o.progress) for s in splits}
    test = data["test"]

    # --- judge: trained on the real train split only, scored on the real test split ---------------
    say(f"judge: {'loading or ' if (out_dir / 'judge').exists() else ''}training on {len(data['train'])} train images")
    judge, reused = load_or_train_judge(out_dir / "judge", data["train"].images, data["train"].affect_ids, affects,
                                        o.judge_settings(), o.progress, device)
    real_test_pred = judge.predict(test.images)
    judge_real = {"split": "test", **classification_report(real_test_pred, test.affect_ids, affects)}

    # --- the generated set: test sources x every affect --------------------------------------------
    src_idx = _subset(len(test), o.max_sources, o.seed)
    sources = test.image_array(src_idx)
    src_aff = test.affect_ids[src_idx]
    targets = np.tile(np.arange(k), len(src_idx))
    say(f"generating {len(src_idx)} test sources x {k} affects = {len(targets)} images")
    # Kept as uint8 images, as a user would save them: a quarter of the memory of floats, and every
    # metric below then reads exactly the pixels a viewer of the edits would see.
    generated = np.concatenate([
        as_uint8_images(edit(generator, np.repeat(sources[i : i + o.batch_size], k, axis=0),
                             one_hot(np.repeat(src_aff[i : i + o.batch_size], k), k),
                             one_hot(np.tile(np.arange(k), len(sources[i : i + o.batch_size])), k), size,
                             o.batch_size, device))
        for i in tqdm(range(0, len(sources), o.batch_size), desc="generate", unit="batch", disable=not o.progress,
                      leave=False)
    ])
    gen_pred = judge.predict(generated)
    judge_gen = {"split": "test", "sources": int(len(src_idx)),
                 **classification_report(gen_pred, targets, affects)}
    judge_section = {
        "step": step,
        "model": f"JudgeNet (ResNet, 3 basic-block stages, width {o.judge_width}) at {o.judge_size}x{o.judge_size}",
        "trained_on": {"split": "train", "count": int(len(data["train"])),
                       "epochs": effective_epochs(len(data["train"]), o.judge_settings()),
                       "reused_from_cache": reused},
        "real": judge_real,
        "generated": judge_gen,
    }

    # --- discriminator table (FExGAN Table 1) -------------------------------------------------------
    if discriminator is None:
        disc_section = {"step": step, "available": False,
                        "reason": f"no {CHECKPOINT} in the run (only the exported generator)"}
    else:
        rng = np.random.default_rng(o.seed + 1)
        per_split = {}
        for split in splits:
            ds = data[split]
            idx = _subset(len(ds), o.max_table_images, o.seed)
            imgs, aff = ds.image_array(idx), ds.affect_ids[idx]
            tgt = rng.integers(0, k, size=len(idx))
            fake = edit(generator, imgs, one_hot(aff, k), one_hot(tgt, k), size, o.batch_size, device)
            real_rf, real_aff = discriminate(discriminator, to_model_input(imgs, size), o.batch_size, device)
            fake_rf, fake_aff = discriminate(discriminator, fake, o.batch_size, device)
            per_split[split] = discriminator_table.discriminator_scores(real_rf, real_aff, aff, fake_rf, fake_aff, tgt)
        disc_section = {"step": step, "available": True,
                        "fake": "each real image edited to a uniformly drawn target affect",
                        "splits": per_split}

    # --- identity: dlib descriptors of sources and their edits --------------------------------------
    describer = FaceDescriber(o.landmarks, o.detect_size) if o.identity else None
    src_desc = gen_desc = None
    if describer is not None:
        say(f"identity: dlib descriptors of {len(sources)} sources and {len(generated)} edits")
        src_desc = describer.describe(sources)
        gen_desc = describer.describe(generated, progress=o.progress)
        rep = identity_report(_repeat(src_desc, k), gen_desc, targets, affects, SAME_PERSON_THRESHOLD)
        identity_section = {"step": step, "split": "test", "sources": int(len(src_idx)),
                            "sources_face_not_found": int((~src_desc.found).sum()),
                            "detector": f"dlib HOG on images upscaled to {o.detect_size}px, upsample 0",
                            "landmarks": o.landmarks, **rep}
    else:
        identity_section = {"step": step, "available": False, "reason": "identity metrics switched off"}

    # --- Fréchet distances, each in its own named feature space -------------------------------------
    real_feats = judge.features(test.images)
    frechet_section: dict[str, Any] = {
        "step": step,
        "judge_features": frechet_entry(f"judge pooled features ({judge.net.feature_dim}-D)", real_feats,
                                        judge.features(generated), "test"),
        "note": "not comparable with Inception FID: each value is a distance within its own feature space",
    }
    if src_desc is not None:
        # Real side: the dlib descriptors of the test sources (the same images the edits start from).
        frechet_section["dlib_descriptors"] = frechet_entry(
            "dlib 128-D face descriptors", src_desc.vectors[src_desc.found], gen_desc.vectors[gen_desc.found], "test")
    if o.inception:
        inception = InceptionFeatures(o.inception, device)
        frechet_section["inception"] = frechet_entry(
            f"Inception ({Path(o.inception).name})", inception(to_model_input(test.images, size)),
            inception(to_model_input(generated)), "test")

    # --- figures --------------------------------------------------------------------------------
    say("figures")
    fig_dir = out_dir / "figures"
    fig_src, fig_aff, fig_labels = _figure_sources(test, test.identities, o.figure_identities)
    figs = [
        (paper_figures.random_samples_figure(fig_dir / "random_samples.png", generator, affects,
                                             latent_dim(generator, size, k, device), o.random_rows, o.seed, o.cell,
                                             device),
         "Random samples: the decoder on random latents (rows) with each affect (columns)"),
        (paper_figures.identities_figure(fig_dir / "identities.png", generator, fig_src, fig_aff, fig_labels, affects,
                                         size, o.cell, device),
         "Each test identity's neutral source turned into every affect"),
    ]
    mixed = paper_figures.mixed_figure(fig_dir / "mixed.png", generator, fig_src, fig_aff, fig_labels, affects, size,
                                       o.cell, device)
    if mixed is not None:
        figs.append((mixed, "Mixed expressions: two affects at weight 1 each, next to each alone"))
    figs.append((paper_figures.intensity_figure(fig_dir / "intensity.png", generator, fig_src, fig_aff, fig_labels,
                                                affects, o.sweep_affect, o.sweep, size, o.cell, device),
                 f"Intensity sweep: weight of '{o.sweep_affect}' from {min(o.sweep):g} to {max(o.sweep):g}"))

    metrics = {
        "run": {"run_dir": str(run_dir), "step": step, "manifest": str(manifest), "affects": list(affects),
                "image_size": size, "device": device, "seconds": round(time.time() - started, 1),
                "figures": [str(p.relative_to(out_dir)) for p, _ in figs]},
        "discriminator": disc_section,
        "judge": judge_section,
        "identity": identity_section,
        "frechet": frechet_section,
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_report(out_dir / "report.html", f"fex eval: {run_dir.name} at step {step}", report_sections(metrics),
                 figs, metrics)
    return metrics



def _repeat(desc: Descriptors, k: int) -> Descriptors:
    """Each source descriptor repeated k times, aligned with its k edits."""
    return Descriptors(np.repeat(desc.vectors, k, axis=0), np.repeat(desc.found, k))
