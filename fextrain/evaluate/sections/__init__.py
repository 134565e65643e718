"""The `fex eval` sections: each file here registers its Section with `@SECTIONS.register(name)`.

The import below is the report order, and the headline takes its numbers in this order too (expression,
edit strength, sharpness, identity, collapse, colour); tests/test_registries.py pins it. To add a metric,
write a `Section` subclass in a new file here and import it below.
Costly studies are opt-in (`Section.requested`): they run when their option is given or they are named.
"""
from __future__ import annotations

from fextrain.evaluate.section import SECTIONS, Section

# Report order. edit_strength qualifies the other headline items of a near-copy (Section.amend); identity_transfer
# (identity-editing models only) puts its two numbers in place of the judge's expression item;
# outside_judge is a second judge, from outside fex; paired_truth qualifies the expression items of edits that move
# faces away from their person's real face at the target; augment (--augment N[,N...]) and fer_folds (--fer-folds)
# are opt-in.
from fextrain.evaluate.sections import (  # noqa: E402,F401  isort: skip
    judge, edit_strength, sharpness, identity, identity_transfer, collapse, colour, outside_judge, paired_truth,
    frechet, discriminator, figures, intensity, augment, fer_folds,
)

__all__ = ["SECTIONS", "Section"]
