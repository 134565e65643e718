"""The canonical affects and every dataset's spelling of them.

The order of AFFECTS is a contract: it is the index of every affect vector in fex.
`contempt` (CK+, RaFD) is recognised and kept in ingest records, but manifests leave it
out unless asked for, so it is not part of the default seven.
"""
from __future__ import annotations

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
