"""The registry of `fex eval` sections: the one place a section is listed.

Order is report order, and the headline takes its numbers in this order too (expression, edit strength,
sharpness, identity, collapse, colour). To add a metric, write a `Section` subclass in a new file here and
add it below.
Costly studies are opt-in (`Section.requested`): they run when their option is given or they are named.
"""
from __future__ import annotations

from fextrain.evaluate.section import Section
from fextrain.evaluate.sections.augment import AugmentSection
from fextrain.evaluate.sections.collapse import CollapseSection
from fextrain.evaluate.sections.colour import ColourSection
from fextrain.evaluate.sections.discriminator import DiscriminatorSection
from fextrain.evaluate.sections.edit_strength import EditStrengthSection
from fextrain.evaluate.sections.fer_folds import FerFoldsSection
from fextrain.evaluate.sections.figures import FiguresSection
from fextrain.evaluate.sections.frechet import FrechetSection
from fextrain.evaluate.sections.identity import IdentitySection
from fextrain.evaluate.sections.intensity import IntensitySection
from fextrain.evaluate.sections.judge import JudgeSection
from fextrain.evaluate.sections.outside_judge import OutsideJudgeSection
from fextrain.evaluate.sections.sharpness import SharpnessSection

SECTIONS: dict[str, type[Section]] = {
    cls.name: cls
    for cls in (
        JudgeSection,
        EditStrengthSection,  # qualifies the other headline items of a near-copy (Section.amend)
        SharpnessSection,
        IdentitySection,
        CollapseSection,
        ColourSection,
        OutsideJudgeSection,  # a second judge, from outside fex
        FrechetSection,
        DiscriminatorSection,
        FiguresSection,
        IntensitySection,
        AugmentSection,  # opt-in: --augment N[,N...]
        FerFoldsSection,  # opt-in: --fer-folds
    )
}

__all__ = ["SECTIONS", "Section"]
