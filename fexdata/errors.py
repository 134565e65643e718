"""The one family of errors a user can fix.

Every error fex raises because of its input (a path, a layout, a label, an option, a run folder) is a
`FexError`: its message says what is wrong and its `hint` what to do about it. `cli.main` catches
`FexError` once, prints `error: <message>` (and `hint: <hint>`) and exits with status 2. Any other
exception is a bug in fex and keeps its traceback.

One subclass per area, so callers can catch one area without swallowing another:

    FexError
    ├── LayoutError     an input tree or table fex cannot read as any layout (`fex ingest`)
    ├── IngestError     an ingest run that cannot start or continue, a bad image or video
    ├── ManifestError   records or a manifest that cannot be built, read or used
    ├── TrainingError   a run that cannot start or continue (options, config, checkpoint, NaN)
    ├── EvalError       a run or manifest `fex eval` cannot evaluate, missing weights files
    └── EditError       inputs or targets `fex edit` cannot use
"""
from __future__ import annotations


class FexError(Exception):
    """An error in the user's input; `hint` (may be empty) says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class LayoutError(FexError):
    """An input tree or table that no layout (or not the named one) can read."""


class IngestError(FexError):
    """An ingest run that cannot start or continue, or one input that cannot be decoded."""


class ManifestError(FexError):
    """Ingest records or a manifest that cannot be built, read or used."""


class TrainingError(FexError):
    """A training run that cannot start or continue."""


class EvalError(FexError):
    """A run, manifest or weights file that `fex eval` cannot use."""


class EditError(FexError):
    """Inputs, targets or a run that `fex edit` cannot use."""
