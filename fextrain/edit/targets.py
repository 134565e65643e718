"""Edit targets: `--to` affect specs (`joy`, `0.5*joy`, `anger+sadness`, `all`) times `--intensity` weights,
and, for videos, schedules: a CSV of `affect,start,end[,intensity]` (the studio segment sheet's form) that
changes the expression over time.

A target's `name` is its output's file stem: the canonical spec with `*` written `x` (file-name safe
everywhere), plus `@<intensity>` when an intensity sweep is asked for; a schedule is named
`schedule-<csv stem>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fexdata.affects import affect_spec, format_affect_spec
from fexdata.errors import EditError
from fexdata.ingest.records import slug


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
    sweep = len(intensities) > 1 or tuple(intensities) != (1.0,)
    out: dict[str, Target] = {}
    for spec in specs:
        for base in _expand(spec, affects):
            for k in intensities:
                t = _scaled(base, float(k), sweep, affects)
                out.setdefault(t.name, t)
    return list(out.values())


def _expand(spec: str, affects: Sequence[str]) -> list[Target]:
    spec = spec.strip()
    if spec.lower() == "all":
        return [_constant(tuple(float(i == j) for j in range(len(affects))), affects) for i in range(len(affects))]
    if spec.lower().endswith(".csv"):
        return [_schedule(Path(spec), affects)]
    return [_constant(affect_spec(spec, tuple(affects)), affects)]


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
        vec = tuple(weight * w for w in affect_spec(seg["affect"], tuple(affects)))
        segs.append(Segment(float(seg["start"]), float(seg["end"]), vec))
    return Target(f"schedule-{slug(path.stem)}", str(path), None, tuple(segs))
