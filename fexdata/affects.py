"""The canonical affects and every dataset's spelling of them.

The order of AFFECTS is a contract: it is the index of every affect vector in fex.
`contempt` (CK+, RaFD) is recognised and kept in ingest records, but manifests leave it
out unless asked for, so it is not part of the default seven.
"""
from __future__ import annotations

import re

from fexdata.errors import FexError

AFFECTS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
EXTRA_AFFECTS: tuple[str, ...] = ("contempt",)
KNOWN_AFFECTS: tuple[str, ...] = AFFECTS + EXTRA_AFFECTS

# Every spelling seen in the supported datasets (JAFFE AN/DI/FE/HA/NE/SA/SU, KDEF AF/AN/DI/HA/NE/SA/SU,
# RaFD angry/contemptuous/..., Oulu-CASIA Anger/Happiness/..., CK+48 folder names, FERG, MUG) and
# the common English forms. Keys are compared after lower-casing and stripping separators.
_ALIASES: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "angry", "an", "ang", "mad", "rage"),
    "disgust": ("disgust", "disgusted", "disgusting", "di", "dis", "disg"),
    "fear": ("fear", "fearful", "afraid", "scared", "af", "fe", "fea"),
    "joy": ("joy", "happy", "happiness", "ha", "hap", "smile", "smiling", "joyful"),
    "neutral": ("neutral", "ne", "neu", "calm"),
    "sadness": ("sadness", "sad", "sa", "unhappy"),
    "surprise": ("surprise", "surprised", "su", "sur", "surp"),
    "contempt": ("contempt", "contemptuous", "co", "con"),
}
ALIASES: dict[str, str] = {alias: name for name, spellings in _ALIASES.items() for alias in spellings}


class UnknownAffect(FexError):
    """A label that maps to no canonical affect. Never guessed: the item is rejected."""


def _key(label: str) -> str:
    return "".join(ch for ch in str(label).strip().lower() if ch.isalnum())


def canonical_affect(label: str) -> str:
    """Map a dataset's own spelling to the canonical affect name, or raise UnknownAffect."""
    key = _key(label)
    if key in ALIASES:
        return ALIASES[key]
    raise UnknownAffect(f"unknown affect label {label!r}; known: {', '.join(KNOWN_AFFECTS)} "
                        f"(and aliases such as AN, happy, surprised)",
                        hint="use a canonical name or a spelling fexdata.affects knows (docs/layouts.md)")


def affect_index(name: str, affects: tuple[str, ...] | list[str] = AFFECTS) -> int:
    """Position of a canonical affect in an affect list (the default seven unless given)."""
    return list(affects).index(canonical_affect(name))


def parse_affects(spec: str | None) -> tuple[str, ...]:
    """Parse a user's comma-separated affect list ('anger,joy' or 'all'), keeping canonical order."""
    if not spec:
        return AFFECTS
    if spec.strip().lower() == "all":
        return KNOWN_AFFECTS
    chosen = {canonical_affect(part) for part in spec.split(",") if part.strip()}
    return tuple(a for a in KNOWN_AFFECTS if a in chosen)


class AffectSpecError(FexError):
    """An affect specification ('joy', '0.5*joy', 'anger+sadness') that cannot be read."""


_TERM = re.compile(r"(?:([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*\*\s*)?([A-Za-z][A-Za-z _-]*)")


def affect_spec(spec: str, affects: tuple[str, ...] | list[str] = AFFECTS) -> tuple[float, ...]:
    """Parse an affect specification into a weight per affect, in the order of `affects`.

    Grammar: terms joined by '+', each `[weight*]affect` (weight 1 when omitted), e.g. `joy`, `0.5*joy`,
    `anger+sadness`, `0.6*joy + 0.3*surprise`. Names accept every alias (`happy`, `AN`); an affect named
    twice adds up. The result may be mixed or scaled: models take such vectors as they are.
    """
    terms = [t.strip() for t in str(spec).split("+")]
    if not any(terms):
        raise AffectSpecError(f"empty affect specification {spec!r}",
                              hint="write e.g. 'joy', '0.5*joy' or 'anger+sadness'")
    if not all(terms):  # 'joy+' is a term the user meant to write and did not
        raise AffectSpecError(f"affect specification {spec!r} has an empty term",
                              hint="join whole terms with '+', e.g. 'anger+sadness'")
    weights = [0.0] * len(affects)
    for term in terms:
        m = _TERM.fullmatch(term)
        if not m:
            raise AffectSpecError(f"cannot read affect term {term!r} of {spec!r}",
                                  hint="write e.g. 'joy', '0.5*joy' or 'anger+sadness'")
        name = canonical_affect(m.group(2))
        if name not in affects:
            raise AffectSpecError(f"affect {name!r} in {spec!r} is not one of {', '.join(affects)}",
                                  hint="use the affects the model was trained with")
        weights[list(affects).index(name)] += float(m.group(1)) if m.group(1) else 1.0
    return tuple(weights)


def format_affect_spec(weights: tuple[float, ...] | list[float], affects: tuple[str, ...] | list[str] = AFFECTS) -> str:
    """The canonical spelling of a weight vector: `joy`, `0.5*joy`, `anger+sadness` (zero terms left out)."""
    terms = [name if w == 1 else f"{w:g}*{name}" for name, w in zip(affects, weights) if w != 0]
    return "+".join(terms) or "0"
