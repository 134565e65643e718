"""Input-layout adapters: one module per layout, a registry, and `--layout auto` detection.

Public API: `LAYOUTS`, `get(name)`, `detect_layout(root)`, `describe_layouts()`, `item_root(src)`, and what
adapters yield, `Item` and `Reject` (`base`). A tree or table no layout can read raises `LayoutError`.

Every adapter module exposes
  NAME: str                       the layout's name on the command line;
  EXPECTS: str                    one line saying what tree it expects (used in error messages);
  detect(root) -> bool            cheap, looks at names only;
  scan(root) -> Iterator[Item | Reject]   deterministic (natural-sorted) order;
and registers itself in `LAYOUTS` by decorating detect with `@layout(NAME, rank)` (sources/base.py).

Call `scan(src)` with the SRC as the user gave it (for `csv` that may be the CSV file itself, and a
folder may hold several CSVs). Item paths are relative to `item_root(src)`: the SRC folder itself,
or, for a SRC that is a file (the `csv` layout), the folder holding it.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from fexdata.errors import LayoutError
from fexdata.ingest.sources.base import LAYOUTS, Item, Reject

# Each module registers itself (`@layout(NAME, rank)` on its detect); this import order is the order
# --layout and error hints list the layouts in. Detection order is by rank (sources/base.py).
from fexdata.ingest.sources import (  # noqa: E402,F401  isort: skip
    studio, jaffe, ckplus, kdef, rafd, oulu, ferg, mug, folder, table,
)

__all__ = ["LAYOUTS", "Item", "LayoutError", "Reject", "describe_layouts", "detect_layout", "get", "item_root"]


def get(name: str) -> ModuleType:
    """The adapter module for a layout name; LayoutError listing the layouts if there is none."""
    return LAYOUTS.lookup(name)


def item_root(src: str | Path) -> Path:
    """The folder that Item.path values are relative to for a given SRC argument."""
    src = Path(src)
    return src.parent if src.is_file() else src


def describe_layouts() -> str:
    """One line per layout: its name and the tree it expects."""
    return "\n".join(f"  {name:7s} {module.EXPECTS}" for name, module in LAYOUTS.items())


def detect_layout(root: str | Path) -> str:
    """The single best layout for `root`, or LayoutError naming every layout and what it expects."""
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"{root}: no such file or folder", hint="check the path")
    for name in LAYOUTS.ranked():
        if LAYOUTS[name].detect(root):
            return name
    raise LayoutError(f"could not recognise the layout of {root}",
                      hint=f"pass --layout with one of these (see docs/layouts.md):\n{describe_layouts()}")
