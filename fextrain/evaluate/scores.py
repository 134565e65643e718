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
