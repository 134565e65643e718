"""What every input-layout adapter yields: work items and rejects.

An adapter scans a dataset root and yields, in a deterministic (sorted) order:
  * `Item`   - one unit of ingest work (a still image, a video or a segment of one, or an
               image sequence), already labelled with a canonical affect and a namespaced identity;
  * `Reject` - an input it could not turn into an item (unknown label, path outside the root,
               unreadable folder, ...), with a reason a person understands.
Adapters only look at names and small label files; decoding pixels is the ingest pipeline's job.

Each adapter module registers itself in `LAYOUTS` by decorating its `detect` with `@layout(NAME, rank)`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Literal

from fexdata.errors import LayoutError
from fexdata.registry import Registry

# The adapter modules by layout name, in the order --layout and error hints list them (the import order
# in sources/__init__.py).
LAYOUTS: Registry[ModuleType] = Registry("layout", LayoutError)

# `--layout auto` tries the layouts rank by rank, in registration order within a rank: strict public-dataset
# layouts (whose file names are unmistakable) first, then the studio layout (videos, takes with sheets,
# numbered render sequences), then a label table (a CSV with path,identity,affect states its labels
# outright, so it beats folder names), and last the generic folder tree, which would otherwise match
# almost anything.
DATASET, STUDIO, TABLE, FOLDER = range(4)


def layout(name: str, rank: int) -> Callable[[Callable], Callable]:
    """Decorator on an adapter module's `detect`: registers the module as layout `name`, detected at `rank`."""
    def add(detect: Callable) -> Callable:
        LAYOUTS.register(name, rank=rank)(sys.modules[detect.__module__])
        return detect
    return add

ItemKind = Literal["image", "video", "sequence"]


@dataclass(frozen=True)
class Item:
    source: str                 # adapter name: "studio", "jaffe", "ckplus", ...
    path: str                   # POSIX path relative to the dataset root (the video, image or sequence folder)
    identity: str               # namespaced by source: "jaffe:KA", "studio:ada"
    affect: str                 # canonical affect (fexdata.affects.KNOWN_AFFECTS)
    affect_raw: str             # the label exactly as the dataset spells it
    kind: ItemKind = "image"
    start: float | None = None  # segment start/end in seconds (long takes with a segment sheet)
    end: float | None = None
    frames: tuple[str, ...] = ()  # sequence members, relative to the root, in playback order
    fps: float | None = None    # playback rate of a sequence, when the layout states one
    intensity: float | None = None
    precropped: bool = False    # the still is already a face crop (FERG, CK+48): with --fallback auto the
                                # whole image is taken as the face when the detector finds none
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # layout-specific facts (pose, session, ...)

    @property
    def key(self) -> str:
        """Stable unique name of this unit of work within its root (used for resume and crop names)."""
        if self.start is not None or self.end is not None:
            return f"{self.path}@{self.start:g}-{self.end:g}"
        return self.path


@dataclass(frozen=True)
class Reject:
    source_path: str            # relative to the root where possible, else as given
    reason: str                 # one sentence a person understands
    source: str = ""
