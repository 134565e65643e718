"""`EvalOptions`: the knobs of one evaluation, shared by every section through the context."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fextrain.evaluate.judge import JudgeSettings

DEFAULT_SWEEP: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass
class EvalOptions:
    """The defaults suit a real run on CPU; tests and `fex demo` shrink them."""

    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    max_sources: int | None = 100  # test images edited into every affect (None: all of them)
    max_table_images: int | None = 500  # real images per split for the discriminator table
    judge_size: int = 64
    judge_width: int = 32
    judge_epochs: int = 15
    judge_min_steps: int = 300  # at least this many judge updates, however small the train split
    judge_degrade: bool = True  # train the judge with generator degradations (False: the version-3 judge)
    judge_holdout: float = 0.2  # share of train identities the judge stops on (0: none, every epoch runs)
    judge_patience: int = 5  # epochs without a better held-out accuracy before the judge stops
    identity: bool = True  # dlib descriptors (about 80 ms per image on one CPU core)
    landmarks: int = 5  # dlib shape predictor: 5 (default, CC0) or 68 (iBUG 300-W, non-commercial)
    detect_size: int = 256  # images are upscaled to this side before HOG face detection
    inception: str | None = None  # local TorchScript Inception file for FID; never downloaded
    figure_identities: int = 6  # rows of the identity, mixed and intensity figures
    sweep_affect: str = "joy"
    sweep: tuple[float, ...] = DEFAULT_SWEEP
    cell: int = 96  # pixels per figure cell
    intensities: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)  # target-vector magnitudes of the intensity check
    intensity_sources: int | None = 20  # test faces edited at every intensity to every other affect
    augment: tuple[int, ...] = ()  # generated images per affect of the augmentation study (ExprGAN Table 1)
    fer_folds: bool = False  # DE-GAN's fold protocol over the manifest's identity-disjoint folds
    fer_steps: int | None = None  # training steps per fold (None: the run's own)
    batch_size: int = 64
    cache_dir: str | None = None  # packed-image cache (default: the dataset's own default)
    seed: int = 0
    progress: bool = True

    @classmethod
    def from_kwargs(cls, **opts: Any) -> "EvalOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(opts) - known)
        if unknown:  # a caller's typo, not a user's input: a bug with a traceback
            raise TypeError(f"unknown evaluation option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**opts)

    def judge_settings(self, held_out: bool = True) -> JudgeSettings:
        """The judge's settings; `held_out=False` trains on every image for every epoch (studies that compare
        judges trained on chosen rows at equal updates: augment, fer_folds)."""
        from fextrain.evaluate.judge import JudgeSettings  # torch: not needed to read the defaults (`fex eval --help`)

        return JudgeSettings(size=self.judge_size, width=self.judge_width, epochs=self.judge_epochs,
                             min_steps=self.judge_min_steps, seed=self.seed, degrade=self.judge_degrade,
                             holdout=self.judge_holdout if held_out else 0.0,
                             patience=self.judge_patience if held_out else 0)
