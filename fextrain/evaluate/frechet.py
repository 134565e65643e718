"""Fréchet distances between sets of feature vectors: judge features, dlib descriptors, Inception.

The Fréchet distance between Gaussians N(m1, S1) and N(m2, S2) fitted to two feature sets is
    |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
It is only meaningful within one feature space: a "judge Fréchet distance" is not an FID and cannot be
compared with published Inception FIDs, so every value is reported under the name of its space.

Inception FID is computed only from a weights file the user already has (fex never downloads): either
a TorchScript module (e.g. the `inception-2015-12-05.pt` detector used by stylegan2-ada-pytorch, which
takes uint8 NCHW images and accepts `return_features=True`, or any TorchScript module mapping
[N,3,299,299] float images in [-1, 1] to [N, D] features), or an Inception-v3 state dict in the PyTorch
layout (e.g. pytorch-fid's FID weights), loaded into `inception.FIDInceptionV3`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fexdata.errors import EvalError
from fextrain.evaluate.inception import load_state_dict_model


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped to 0)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples; one sample gives a zero covariance)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"need a non-empty [N, D] feature array, got shape {f.shape}")
    cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros((f.shape[1], f.shape[1]))
    return f.mean(axis=0), np.atleast_2d(cov)


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians.

    tr((S1 S2)^(1/2)) is computed as tr((A S2 A)^(1/2)) with A = S1^(1/2): that matrix is symmetric
    PSD, so an eigen-decomposition is exact and stable even when the covariances are singular (fewer
    samples than dimensions, which is normal for small evaluation sets).
    """
    a = _sqrt_psd(s1)
    cross = np.linalg.eigvalsh((a @ s2 @ a + (a @ s2 @ a).T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(cross, 0, None)).sum())
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    return max(value, 0.0)  # tiny negative values are round-off of an exact 0


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two [N, D] feature sets."""
    if np.asarray(a).shape[1:] != np.asarray(b).shape[1:]:
        raise ValueError(f"feature sets differ in width: {np.shape(a)} vs {np.shape(b)}")
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def frechet_entry(space: str, real: np.ndarray, generated: np.ndarray, real_split: str) -> dict:
    """A metrics.json entry: the value with its feature space and the counts behind it.

    Needs at least two vectors on each side; otherwise the value is None and `reason` says why.
    """
    entry = {
        "space": space,
        "real_split": real_split,
        "real_count": int(len(real)),
        "generated_count": int(len(generated)),
        "dims": int(np.shape(real)[1]) if np.ndim(real) == 2 else None,
        "value": None,
    }
    if len(real) < 2 or len(generated) < 2:
        entry["reason"] = "fewer than two feature vectors on one side"
    else:
        entry["value"] = frechet_distance(real, generated)
    return entry


_WHICH = ("pass a TorchScript Inception (e.g. stylegan2-ada-pytorch's inception-2015-12-05.pt) or an "
          "Inception-v3 state dict (e.g. pytorch-fid's pt_inception-2015-12-05-6726825d.pth)")


class InceptionWeightsError(EvalError):
    """The given Inception weights file cannot be used for FID."""


class InceptionFeatures:
    """Inception pool features from a user-given local file; never downloads anything.

    The file is either a TorchScript module or a state dict of Inception-v3 in the PyTorch layout
    (loaded into `fextrain.evaluate.inception.FIDInceptionV3`, read with weights_only=True).
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise InceptionWeightsError(f"Inception weights file not found: {path}", hint=_WHICH)
        self.device = device
        self.nvidia_style = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still works
                self.model = torch.jit.load(str(path), map_location=device).eval()
            # The NVIDIA detector takes uint8-range images of any size and a return_features flag.
            self.nvidia_style = "return_features" in str(getattr(self.model.forward, "schema", ""))
            return
        except Exception:
            pass
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InceptionWeightsError(f"{path}: neither a TorchScript module nor a state dict "
                                        f"({type(exc).__name__})", hint=_WHICH) from None
        if not isinstance(state, dict):
            raise InceptionWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict or TorchScript",
                                        hint=_WHICH)
        try:
            self.model = load_state_dict_model(state, str(path)).to(device)
        except ValueError as exc:
            raise InceptionWeightsError(str(exc), hint=_WHICH) from None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Features [N, D] for float NCHW images in [-1, 1]."""
        outs = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].float().to(self.device)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            if self.nvidia_style:
                feats = self.model((x + 1) * 127.5, return_features=True)
            else:
                feats = self.model(x)
            if isinstance(feats, (tuple, list)):
                feats = feats[0]
            outs.append(feats.reshape(len(x), -1).double().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 0))
