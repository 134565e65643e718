"""The source affect a model's encoder needs: given (`--from joy`, a CSV column) or estimated (`--from auto`).

`auto` asks the model's own affect head (its discriminator's) where it has one; otherwise, or with
`--estimator judge`, the independent judge of `fex eval` (fextrain.evaluate.judge): trained on the run's
manifest's train split and cached, fingerprinted, in RUN/eval/judge, the folder `fex eval` uses by default,
so either command reuses the other's judge. The estimate's affect is used as a one-hot source vector, the
form the encoders were trained with; its probability is recorded as the confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fexdata.affects import affect_spec, format_affect_spec
from fexdata.errors import EditError
from fextrain.edit.model import BatchModel
from fextrain.edit.recipe import run_manifest
from fextrain.edit.targets import read_spec

ESTIMATORS = ("auto", "discriminator", "judge")


@dataclass
class Sources:
    vectors: np.ndarray     # N x K float32, the encoder's source condition
    names: list[str]        # the affect spec of each
    confidence: np.ndarray  # N float64: probability of the estimate; NaN when given
    by: str                 # given | csv | discriminator | judge


@dataclass(frozen=True)
class JudgeOptions:
    """`fex eval`'s judge options (EvalOptions' defaults), so that both commands fingerprint, and so share,
    the same judge in RUN/eval/judge."""
    epochs: int = 15
    min_steps: int = 300
    holdout: float = 0.2
    patience: int = 5

    def settings(self) -> Any:
        from fextrain.evaluate.options import EvalOptions

        return EvalOptions(judge_epochs=self.epochs, judge_min_steps=self.min_steps, judge_holdout=self.holdout,
                           judge_patience=self.patience).judge_settings()


class SourceAffects:
    """Decides each face's source vector for `--from SPEC|auto`."""

    def __init__(self, spec: str, affects: tuple[str, ...], model: BatchModel, estimator: str = "auto",
                 judge: Callable[[], Any] | None = None) -> None:
        if estimator not in ESTIMATORS:
            raise EditError(f"--estimator {estimator!r}", hint=f"use one of {', '.join(ESTIMATORS)}")
        self.affects = affects
        self.auto = spec.strip().lower() == "auto"
        self.fixed = None if self.auto else np.asarray(read_spec(spec, affects, "--from"), np.float32)
        self.model, self.estimator, self._judge_factory = model, estimator, judge
        self._judge: Any = None

    @property
    def estimating(self) -> bool:
        return self.auto

    def probs(self, crops: np.ndarray) -> tuple[np.ndarray, str]:
        """(N x K affect probabilities in the run's order, the estimator that gave them)."""
        if self.estimator in ("auto", "discriminator"):
            p = self.model.affect_probs(crops)
            if p is not None:
                return p, "discriminator"
            if self.estimator == "discriminator":
                raise EditError("--estimator discriminator: this model has no affect head (or only its exported "
                                "generator was given)", hint="use --estimator judge, or --from AFFECT")
        return self._judge_probs(crops), "judge"

    def decide(self, crops: np.ndarray, given: str | None = None, probs: np.ndarray | None = None,
               by: str = "") -> Sources:
        """Source vectors for `crops`: a CSV row's affect, else --from, else the estimate (`probs` when the
        caller smoothed them over frames, otherwise estimated here)."""
        n, k = len(crops), len(self.affects)
        if given is not None or self.fixed is not None:
            vec = np.asarray(affect_spec(given, self.affects), np.float32) if given is not None else self.fixed
            name = format_affect_spec(tuple(float(v) for v in vec), self.affects)
            return Sources(np.repeat(vec[None], n, 0), [name] * n, np.full(n, np.nan), "csv" if given else "given")
        if probs is None:
            probs, by = self.probs(crops)
        best = probs.argmax(1)
        vectors = np.zeros((n, k), np.float32)
        vectors[np.arange(n), best] = 1.0
        return Sources(vectors, [self.affects[i] for i in best], probs[np.arange(n), best].astype(np.float64), by)

    def _judge_probs(self, crops: np.ndarray) -> np.ndarray:
        if self._judge is None:
            if self._judge_factory is None:
                raise EditError("--from auto: no affect estimator available", hint="use --from AFFECT")
            self._judge = self._judge_factory()
        logits = self._judge.logits(crops)
        e = np.exp(logits - logits.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        order = [list(self._judge.affects).index(a) for a in self.affects]
        return p[:, order]


def run_judge(config: dict[str, Any], run_path: Path, size: int, options: JudgeOptions, device: str,
              progress: bool, say: Callable[[str], None]) -> Any:
    """The fingerprinted judge of the run's manifest (trained once, then loaded from RUN/eval/judge)."""
    from fexdata.dataset import FaceDataset
    from fextrain.evaluate.judge import load_or_train_judge

    manifest = run_manifest(config, run_path)
    if manifest is None:
        raise EditError(f"--from auto needs the run's manifest to train its judge, and {config.get('manifest')!r} "
                        "cannot be found", hint="pass --from AFFECT, or run from where the manifest path is valid")
    settings = options.settings()
    train = FaceDataset(manifest, "train", size=size, cache_dir=config.get("cache_dir") or None, progress=progress)
    run_dir = run_path if run_path.is_dir() else run_path.parent
    folder = run_dir / "eval" / "judge"
    say(f"source affects: judge from {folder} (trained on {len(train)} faces of {manifest} if not cached)")
    judge, _ = load_or_train_judge(folder, train.images, train.affect_ids, train.affects, settings, progress,
                                   device, train.identity_ids)
    return judge
