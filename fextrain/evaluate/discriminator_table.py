"""FExGAN's Table 1 for a run: the discriminator's accuracy on real and on generated images.

For each split: *binary* is the share of real images called real (sigmoid(logit) > 0.5) or of generated
images called fake; *multi* is the share whose affect head's argmax is the image's affect (the labelled
affect for real images, the requested target affect for generated ones).
"""
from __future__ import annotations

import numpy as np

from fextrain.evaluate.scores import accuracy


def discriminator_scores(
    real_logits: np.ndarray,
    real_affect_logits: np.ndarray,
    real_affects: np.ndarray,
    fake_logits: np.ndarray,
    fake_affect_logits: np.ndarray,
    fake_targets: np.ndarray,
) -> dict:
    """{'real': {'binary', 'multi'}, 'fake': {'binary', 'multi'}}, each an accuracy() dict."""
    return {
        "real": {
            "binary": accuracy(np.asarray(real_logits) > 0, np.ones(len(real_logits), bool)),
            "multi": accuracy(np.asarray(real_affect_logits).argmax(1), real_affects),
        },
        "fake": {
            "binary": accuracy(np.asarray(fake_logits) > 0, np.zeros(len(fake_logits), bool)),
            "multi": accuracy(np.asarray(fake_affect_logits).argmax(1), fake_targets),
        },
    }


def table_rows(splits: dict[str, dict]) -> list[list]:
    """Rows split | real binary | real multi | fake binary | fake multi | real n | fake n (as in Table 1)."""
    return [
        [
            split,
            s["real"]["binary"]["accuracy"],
            s["real"]["multi"]["accuracy"],
            s["fake"]["binary"]["accuracy"],
            s["fake"]["multi"]["accuracy"],
            s["real"]["binary"]["count"],
            s["fake"]["binary"]["count"],
        ]
        for split, s in splits.items()
    ]


TABLE_HEADER = ["split", "real binary", "real multi", "fake binary", "fake multi", "real n", "fake n"]
