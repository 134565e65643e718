"""Plain scores shared by the sections: accuracies, confusion matrices, ratios.

Every score comes back with the count it was computed on, so a number in metrics.json can always be
read as "x of n".
"""
from __future__ import annotations

import numpy as np


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """{'accuracy': share correct (None for no samples), 'correct': k, 'count': n}."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    n = int(len(truth))
    k = int((predicted == truth).sum())
    return {"accuracy": (k / n) if n else None, "correct": k, "count": n}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    return None if numerator is None or not denominator else numerator / denominator


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] (rows sum to each class's sample count)."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(truth, np.int64), np.asarray(predicted, np.int64)), 1)
    return m


def per_class_accuracy(predicted: np.ndarray, truth: np.ndarray, names: tuple[str, ...]) -> dict[str, dict]:
    """accuracy() for each class, keyed by its name (classes with no samples get accuracy None)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    return {name: accuracy(predicted[truth == i], truth[truth == i]) for i, name in enumerate(names)}


def classification_report(predicted: np.ndarray, truth: np.ndarray, names: tuple[str, ...]) -> dict:
    """Overall accuracy, per-class accuracy and the confusion matrix in one JSON-ready dict."""
    return {
        **accuracy(predicted, truth),
        "per_affect": per_class_accuracy(predicted, truth, names),
        "confusion": {
            "rows_true_cols_predicted": list(names),
            "counts": confusion_matrix(predicted, truth, len(names)).tolist(),
        },
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, K] logits (float64)."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def wilson_interval(correct: int, count: int, z: float = 1.96) -> list[float] | None:
    """Wilson score interval [low, high] of a share correct/count (95% for z = 1.96); None for no samples.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n, which small
    held-out sets often give."""
    if count <= 0:
        return None
    p, n = correct / count, count
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict:
    """ECE of the top-class confidence over `bins` equal-width bins: the count-weighted mean |accuracy -
    confidence|. 0 for a judge whose 0.8-confident answers are right 80% of the time; None for no samples."""
    probs, truth = np.asarray(probs, np.float64), np.asarray(truth, np.int64)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == truth
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)  # confidence 1.0 goes to the top bin
    rows, total = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        acc = float(right[inside].mean()) if n else None
        mean_conf = float(conf[inside].mean()) if n else None
        if n:
            total += n * abs(acc - mean_conf)
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": n, "accuracy": acc, "confidence": mean_conf})
    return {"value": total / len(truth) if len(truth) else None, "bins": rows}


def above_real(generated: dict, real: dict, z: float = 2.0, margin: float = 0.05) -> dict | None:
    """Whether the judge reads edits at a target better than real faces of that affect, beyond the noise.

    `generated` and `real` are accuracy() dicts of one affect. The difference of the two shares is taken
    with Agresti and Caffo's adjustment (one success and one failure added to each side), whose standard
    error stays positive at 0/n and n/n; it counts when it exceeds `z` standard errors and the raw
    difference exceeds `margin`. Returns the numbers behind the verdict, or None when a side has no samples.
    """
    kg, ng, kr, nr = generated["correct"], generated["count"], real["correct"], real["count"]
    if not ng or not nr:
        return None
    pg, pr = (kg + 1) / (ng + 2), (kr + 1) / (nr + 2)
    se = float(np.sqrt(pg * (1 - pg) / (ng + 2) + pr * (1 - pr) / (nr + 2)))
    raw = kg / ng - kr / nr
    return {"difference": raw, "standard_error": se, "above": bool(pg - pr > z * se and raw > margin)}
