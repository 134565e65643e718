"""Edit targets: `--to` affect specs (`joy`, `0.5*joy`, `anger+sadness`, `all`) times `--intensity` weights,
and, for videos, schedules: a CSV of `affect,start,end[,intensity]` (the studio segment sheet's form) that
changes the expression over time.

What a target may be (docs/edit.md, "Targets"): terms joined by `+`, each `[weight*]affect` with a weight
above 0 and at most MAX_WEIGHT; after --intensity (each from 0 to MAX_WEIGHT) a target's weights add up to
at most MAX_WEIGHT. The models were trained on one affect at weight 1, so a negative weight ("less anger")
means nothing to them, and far beyond 1 they only extrapolate; anything else is refused, never clipped.

A target's `name` is its output's file stem: the canonical spec with `*` written `x` (file-name safe
everywhere), plus `@<intensity>` when an intensity sweep is asked for; a schedule is named
`schedule-<csv stem>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fexdata.affects import affect_spec, format_affect_spec
from fexdata.errors import EditError, FexError
from fexdata.ingest.records import slug

MAX_WEIGHT = 2.0   # twice the strength the models were trained with: an exaggerated expression, no further
GRAMMAR = (f"write terms [weight*]affect joined by '+', e.g. joy, 0.5*joy, 0.6*joy+0.4*surprise: weights above 0, "
           f"adding up to at most {MAX_WEIGHT:g}")


@dataclass(frozen=True)
class Segment:
    start: float    # seconds; the segment holds the frames shown at start <= t < end
    end: float
    vector: tuple[float, ...]


@dataclass(frozen=True)
class Target:
    name: str                                   # output file stem
    spec: str                                   # canonical spec, or the schedule's path
    vector: tuple[float, ...] | None = None     # a constant target
    segments: tuple[Segment, ...] = ()          # a schedule (videos only)

    @property
    def scheduled(self) -> bool:
        return self.vector is None

    def vector_at(self, time: float) -> tuple[float, ...] | None:
        """The target at `time` seconds; None where a schedule leaves the frame as it is."""
        if self.vector is not None:
            return self.vector
        for seg in self.segments:
            if seg.start <= time < seg.end:
                return seg.vector
        return None


def parse_targets(specs: Sequence[str], intensities: Sequence[float], affects: Sequence[str]) -> list[Target]:
    """Targets for the `--to` values in order (duplicates once), each at every intensity."""
    if not specs:
        raise EditError("no target given", hint="say what to edit to: --to joy, --to 0.5*joy, --to all "
                                                "or, for videos, --to schedule.csv")
    for k in intensities:
        if not 0 <= k <= MAX_WEIGHT:  # NaN fails too
            raise EditError(f"--intensity {k:g} is outside 0..{MAX_WEIGHT:g}",
                            hint=f"give strengths from 0 (no expression) to {MAX_WEIGHT:g}, e.g. 0,0.5,1,1.5")
    sweep = len(intensities) > 1 or tuple(intensities) != (1.0,)
    out: dict[str, Target] = {}
    for spec in specs:
        for base in _expand(spec, affects):
            for k in intensities:
                t = _scaled(base, float(k), sweep, affects)
                for vector in [t.vector] if t.vector is not None else [s.vector for s in t.segments]:
                    _check_total(vector, f"--to {spec!r}" + (f" at --intensity {k:g}" if sweep else ""))
                out.setdefault(t.name, t)
    return list(out.values())


def read_spec(spec: str, affects: Sequence[str], option: str = "--to") -> tuple[float, ...]:
    """The weight vector of one affect spec (fexdata.affects' grammar), refusing what a target cannot mean:
    an empty term ('joy+'), a weight at or below 0 or above MAX_WEIGHT, weights adding up to more."""
    terms = [t.strip() for t in str(spec).split("+")]
    if not all(terms):
        raise EditError(f"{option} {spec!r}: a '+' without a term on each side", hint=GRAMMAR)
    total = [0.0] * len(affects)
    for term in terms:
        try:
            vector = affect_spec(term, tuple(affects))
        except FexError as exc:
            raise EditError(f"{option} {spec!r}: {exc}", hint=exc.hint or GRAMMAR) from None
        weight = sum(vector)   # one term: a single non-zero entry
        if not 0 < weight <= MAX_WEIGHT:
            why = "negative and zero weights mean nothing to the models" if weight <= 0 else "too strong"
            raise EditError(f"{option} {spec!r}: weight {weight:g} of {term!r} is outside 0..{MAX_WEIGHT:g} ({why})",
                            hint=GRAMMAR + "; to remove an expression, edit to neutral")
        total = [a + b for a, b in zip(total, vector)]
    _check_total(total, f"{option} {spec!r}")
    return tuple(total)


def _check_total(vector: Sequence[float], what: str) -> None:
    if any(v < 0 for v in vector):
        raise EditError(f"{what}: a negative weight", hint=GRAMMAR)
    if not sum(vector) <= MAX_WEIGHT + 1e-9:   # NaN fails too
        raise EditError(f"{what}: the weights add up to {sum(vector):g}, more than {MAX_WEIGHT:g}", hint=GRAMMAR)


def _expand(spec: str, affects: Sequence[str]) -> list[Target]:
    spec = spec.strip()
    if spec.lower() == "all":
        return [_constant(tuple(float(i == j) for j in range(len(affects))), affects) for i in range(len(affects))]
    if spec.lower().endswith(".csv"):
        return [_schedule(Path(spec), affects)]
    return [_constant(read_spec(spec, affects), affects)]


def _constant(vector: tuple[float, ...], affects: Sequence[str]) -> Target:
    spec = format_affect_spec(vector, tuple(affects))
    return Target(spec.replace("*", "x"), spec, vector)


def _scaled(t: Target, k: float, sweep: bool, affects: Sequence[str]) -> Target:
    suffix = f"@{k:g}" if sweep else ""
    if t.vector is not None:
        vec = tuple(v * k for v in t.vector)
        return Target(t.name + suffix, format_affect_spec(vec, tuple(affects)), vec)
    segs = tuple(Segment(s.start, s.end, tuple(v * k for v in s.vector)) for s in t.segments)
    return Target(t.name + suffix, t.spec + suffix, None, segs)


def _schedule(path: Path, affects: Sequence[str]) -> Target:
    """A schedule from a segment sheet, read by the studio layout's own parser; any bad row is an error."""
    from fexdata.ingest.sources.studio import read_sheet

    if not path.is_file():
        raise EditError(f"schedule {path}: no such file", hint="a schedule is a CSV with a header affect,start,end")
    segments, problems = read_sheet(path, str(path))
    if problems:
        raise EditError(f"schedule {path}: {problems[0].reason}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                        hint="fix the sheet: one row per segment, affect,start,end in seconds, segments not overlapping")
    if not segments:
        raise EditError(f"schedule {path}: no segments", hint="add rows affect,start,end (seconds)")
    segs = []
    for seg in segments:
        weight = 1.0 if seg["intensity"] is None else float(seg["intensity"])
        if not 0 <= weight <= MAX_WEIGHT:
            raise EditError(f"schedule {path}: intensity {weight:g} of the {seg['affect']} segment at "
                            f"{float(seg['start']):g}s is outside 0..{MAX_WEIGHT:g}",
                            hint=f"give each segment an intensity from 0 to {MAX_WEIGHT:g} (1: the full expression)")
        vec = tuple(weight * w for w in read_spec(seg["affect"], affects, f"schedule {path}: affect"))
        segs.append(Segment(float(seg["start"]), float(seg["end"]), vec))
    return Target(f"schedule-{slug(path.stem)}", str(path), None, tuple(segs))
