"""What an ingest run will do: its options, and the units of work with stable ids (the basis of resume).

A unit is one video, one segment of a long take, one image sequence, or a chunk of up to `still_chunk`
stills from one top-level folder (10k-image datasets must not become 10k Parquet files). Its id hashes everything
that decides its output: the options that change crops or records, the items (paths, labels, segment
bounds) and each input file's size and modification time. A finished unit leaves
`records/part-<id>.parquet`; a rerun skips units whose part exists, so killed runs resume, and a changed
input or option gives a new id, so stale output is never mistaken for current.

A `Shard` (`fex ingest --shard I/N`) is the share of the units one of N independent processes runs. Every
process makes the same plan and keeps the units whose key (layout and item keys: no options, file times or
absolute paths, so every host agrees) hashes to I modulo N.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from fexdata.errors import IngestError
from fexdata.ingest.align import DEFAULT_PAD, PAD_MODES
from fexdata.ingest.records import stable_hash
from fexdata.ingest.sources.base import Item, Reject

DEFAULT_STILL_CHUNK = 256


@dataclass(frozen=True)
class IngestOptions:
    sizes: tuple[int, ...] = (256,)
    align: str = "ffhq"              # ffhq | bbox
    zoom: float = 1.0                # crop scale: 1 = the alignment's framing, > 1 = tighter around the face
    pad: str = DEFAULT_PAD           # where the crop leaves the frame: blur | reflect | edge | constant
    detector: str = "hog"            # hog | cnn
    landmarks: str = "dlib"          # dlib | fan (face-alignment, weights already on disk)
    fan_weights: str | None = None
    fps: float | None = None         # video/sequence subsampling: at most this many frames per second
    every: int = 1                   # ... and/or every Nth frame
    redetect_every: int = 10         # tracking: confirm the face by detection at least this often (frames)
    smooth: float = 2.0              # temporal smoothing sigma, in processed frames (0 = off)
    fallback: str = "auto"           # no face found: auto (whole frame for <=128 px images) | frame | reject
    max_pixels: int = 100_000_000    # larger stills are refused before decoding (decompression bombs)
    sequence_fps: float = 30.0       # playback rate of image sequences whose layout states none
    still_chunk: int = DEFAULT_STILL_CHUNK
    png_compression: int | None = None  # None: fex's encoder (fexdata.ingest.png, ~0.5 ms per 256 px crop);
                                        # 0-9: OpenCV's writer at that zlib level (~1.6 ms at its default)

    def __post_init__(self) -> None:
        if self.pad not in PAD_MODES:
            raise IngestError(f"unknown padding {self.pad!r}", hint=f"use one of {', '.join(PAD_MODES)}")
        if not self.zoom > 0:
            raise IngestError(f"zoom {self.zoom} is not positive", hint="1 is FFHQ framing, above 1 tighter")

    def fingerprint(self) -> dict:
        """The options that change outputs (everything; workers/strict are not options of this class)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Source:
    """One SRC argument: the folder item paths are relative to, and its layout."""
    root: Path          # absolute
    given: str          # as typed on the command line (recorded in source_root)
    layout: str


@dataclass(frozen=True)
class Unit:
    id: str
    source: Source
    items: tuple[Item, ...]

    @property
    def kind(self) -> str:
        return self.items[0].kind


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count); Shard() is the whole plan."""
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` as typed after --shard; IngestError with the valid forms otherwise."""
        try:
            index, count = (int(v) for v in str(text).split("/"))
        except ValueError:
            raise IngestError(f"--shard {text}: expected I/N with whole numbers, e.g. --shard 0/4",
                              hint="shard I of N runs the units whose key hashes to I modulo N") from None
        if count < 1:
            raise IngestError(f"--shard {text}: the number of shards must be at least 1",
                              hint="--shard I/N runs shard I of N; N=1 is the whole ingest")
        if not 0 <= index < count:
            raise IngestError(f"--shard {text}: shard {index} does not exist, shards of {count} are 0 to {count - 1}",
                              hint=f"run --shard 0/{count} ... --shard {count - 1}/{count} (a SLURM array: "
                                   f"--array=0-{count - 1} and --shard $SLURM_ARRAY_TASK_ID/{count})")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def owns(self, unit: Unit) -> bool:
        return self.whole or int(stable_hash(unit_key(unit)), 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def unit_key(unit: Unit) -> str:
    """What a unit is, independent of where and when: its layout and the keys of its items."""
    return "\n".join([unit.source.layout, *(f"{item.source}:{item.key}" for item in unit.items)])


@dataclass
class Plan:
    units: list[Unit] = field(default_factory=list)
    scan_rejects: list[tuple[Source, Reject]] = field(default_factory=list)
    duplicates: list[tuple[Source, Item]] = field(default_factory=list)


def make_plan(scanned: Iterable[tuple[Source, Iterable[Item | Reject]]], options: IngestOptions) -> Plan:
    """Group scanned items into units with stable ids; the same inputs and options give the same plan."""
    plan = Plan()
    seen: set[tuple[str, str]] = set()
    opts_key = json.dumps(options.fingerprint(), sort_keys=True)
    for source, entries in scanned:
        stills: dict[str, list[Item]] = {}
        for entry in entries:
            if isinstance(entry, Reject):
                plan.scan_rejects.append((source, entry))
                continue
            if (entry.source, entry.key) in seen:
                # Two SRC folders with the same layout and the same relative names would write the same crops.
                plan.duplicates.append((source, entry))
                continue
            seen.add((entry.source, entry.key))
            if entry.kind == "image":
                # Chunks never span top-level folders (an identity, a session), so a new identity added
                # to a dataset leaves the other chunks, and their finished parts, as they were.
                parts = PurePosixPath(entry.path).parts
                stills.setdefault(parts[0] if len(parts) > 1 else "", []).append(entry)
            else:
                plan.units.append(_unit(source, (entry,), opts_key))
        for folder in sorted(stills):  # stills of one folder, in scan order, in fixed-size chunks
            group = stills[folder]
            for i in range(0, len(group), options.still_chunk):
                plan.units.append(_unit(source, tuple(group[i:i + options.still_chunk]), opts_key))
    return plan


def _unit(source: Source, items: tuple[Item, ...], opts_key: str) -> Unit:
    parts = [opts_key, source.layout]
    for item in items:
        parts.append(json.dumps(dataclasses.asdict(item), sort_keys=True, default=str))
        for rel in (item.frames or (item.path,)):
            parts.append(_file_state(source.root, rel))
    return Unit(stable_hash(*parts), source, items)


def _file_state(root: Path, rel: str) -> str:
    """Size and mtime of an input, so a replaced file is processed again (cheap: one stat)."""
    try:
        st = os.stat(root / rel)
        return f"{rel}:{st.st_size}:{st.st_mtime_ns}"
    except (OSError, ValueError):
        return f"{rel}:missing"
