"""What one section of `fex eval` is: it computes its numbers and renders its own part of the report.

A section is a class with a `name` (its key in metrics.json and in `--sections`) and a `title` (its
heading in report.html). `compute` returns a JSON-ready dict, which is written to metrics.json under
`name`; `html`, `summary` and `headline` read that same dict back, in the same file, so the shape of a
section's numbers is known in one place only. A section that does not apply to a run (a model without
a discriminator, identity switched off) says why in `unavailable`, and metrics.json records the reason;
options it cannot use (an affect the run does not have) raise EvalError in `check`.

A new metric is one new file in `fextrain/evaluate/sections/` holding a Section subclass decorated with
`@SECTIONS.register(name)`, plus its import in `sections/__init__.py` (import order is report order).
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fexdata.errors import EvalError
from fexdata.registry import Registry

if TYPE_CHECKING:
    from fextrain.evaluate.context import EvalContext
    from fextrain.evaluate.options import EvalOptions


@dataclass(frozen=True)
class HeadlineItem:
    """One number of the headline, which is printed first and tops the report.

    No single number of an edit's quality can be gamed alone (a blurred face fools a naive judge, a
    copy keeps identity perfectly), so the headline puts expression, sharpness, identity and collapse
    side by side; each section contributes its own.
    """

    name: str  # key under metrics.json "headline"
    label: str  # what a reader sees, e.g. "expression"
    value: float | None  # the number itself (None when it could not be measured)
    text: str  # the value with what it is made of, e.g. "0.93 (0.84 at target / 0.90 on real faces)"
    flag: str | None = None  # a warning a reader must not miss, e.g. "COLLAPSED"

    @property
    def shown(self) -> str:
        """The text, followed by the flag where the text does not already say it."""
        return self.text if not self.flag or self.flag in self.text else f"{self.text}  [{self.flag}]"

    def qualified(self, remark: str, flag: str) -> HeadlineItem:
        """This item with `remark` appended in brackets and `flag` joined to its own: another section's numbers
        change how it reads."""
        return replace(self, text=f"{self.text} ({remark})", flag=flag if not self.flag else f"{self.flag}; {flag}")

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["name"]
        return d


class Section:
    """Base class of the sections registered in `SECTIONS` (`name` is set by the registration)."""

    name: ClassVar[str]
    title: ClassVar[str]

    @classmethod
    def requested(cls, options: EvalOptions) -> bool:
        """Whether `fex eval` without --sections runs this section. Costly studies (--augment,
        --fer-folds) run only when their option asks for them, or when named in --sections."""
        return True

    def check(self, ctx: EvalContext) -> None:
        """Raise EvalError for options this section cannot use. Called for every selected section before
        any of them computes, so a typo fails at once rather than after the judge has trained."""

    def unavailable(self, ctx: EvalContext) -> str | None:
        """Why this section does not apply to this run, or None when it does."""
        return None

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        raise NotImplementedError

    def html(self, result: dict[str, Any], out_dir: Path) -> str:
        """The section's body in report.html (its heading is `title`)."""
        raise NotImplementedError

    def summary(self, result: dict[str, Any]) -> list[str]:
        """Lines for the terminal summary (none by default)."""
        return []

    def headline(self, result: dict[str, Any]) -> list[HeadlineItem]:
        """This section's numbers in the headline (none by default)."""
        return []

    def amend(self, result: dict[str, Any], items: list[HeadlineItem]) -> list[HeadlineItem]:
        """The whole headline again, with other sections' items qualified where this section's numbers change
        how they read (a near-copy's perfect identity is no success); unchanged by default."""
        return items


SECTIONS: Registry[type[Section]] = Registry(
    "section", EvalError, "choose from: {known} (comma-separated, e.g. --sections judge,identity)", name_attr="name")


def note(text: str) -> str:
    """A grey explanatory paragraph under a table."""
    return f'<p class="note">{html.escape(text)}</p>'
