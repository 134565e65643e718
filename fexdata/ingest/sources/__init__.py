"""Input-layout adapters: one module per layout, a registry, and `--layout auto` detection.

Public API: `LAYOUTS`, `get(name)`, `detect_layout(root)`, `describe_layouts()`, `item_root(src)`, and what
adapters yield, `Item` and `Reject` (`base`). A tree or table no layout can read raises `LayoutError`.

Every adapter module exposes
  NAME: str                       the layout's name on the command line;
  EXPECTS: str                    one line saying what tree it expects (used in error messages);
  detect(root) -> bool            cheap, looks at names only;
  scan(root) -> Iterator[Item | Reject]   deterministic (natural-sorted) order.

Call `scan(src)` with the SRC as the user gave it (for `csv` that may be the CSV file itself, and a
folder may hold several CSVs). Item paths are relative to `item_root(src)`: the SRC folder itself,
or, for a SRC that is a file (the `csv` layout), the folder holding it.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from fexdata.errors import LayoutError
from fexdata.ingest.sources.base import Item, Reject

__all__ = ["LAYOUTS", "Item", "LayoutError", "Reject", "describe_layouts", "detect_layout", "get", "item_root"]

# Detection order matters: strict public-dataset layouts (whose file names are unmistakable) are tried
# first, then the studio layout (videos, takes with sheets, numbered render sequences), then a label
# table (a CSV with path,identity,affect states its labels outright, so it beats folder names), and
# last the generic folder tree, which would otherwise match almost anything.
LAYOUTS: tuple[str, ...] = ("studio", "jaffe", "ckplus", "kdef", "rafd", "oulu", "ferg", "mug", "folder", "csv")
_DETECT_ORDER: tuple[str, ...] = ("jaffe", "ckplus", "kdef", "rafd", "oulu", "ferg", "mug", "studio", "csv", "folder")
_MODULES: dict[str, str] = {name: name for name in LAYOUTS} | {"csv": "table"}


def get(name: str) -> ModuleType:
    """The adapter module for a layout name; LayoutError listing the layouts if there is none."""
    if name not in _MODULES:
        raise LayoutError(f"unknown layout {name!r}", hint=f"choose one of: {', '.join(LAYOUTS)}")
    return importlib.import_module(f"fexdata.ingest.sources.{_MODULES[name]}")


def item_root(src: str | Path) -> Path:
    """The folder that Item.path values are relative to for a given SRC argument."""
    src = Path(src)
    return src.parent if src.is_file() else src


def describe_layouts() -> str:
    """One line per layout: its name and the tree it expects."""
    return "\n".join(f"  {name:7s} {get(name).EXPECTS}" for name in LAYOUTS)


def detect_layout(root: str | Path) -> str:
    """The single best layout for `root`, or LayoutError naming every layout and what it expects."""
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"{root}: no such file or folder", hint="check the path")
    for name in _DETECT_ORDER:
        if get(name).detect(root):
            return name
    raise LayoutError(f"could not recognise the layout of {root}",
                      hint=f"pass --layout with one of these (see docs/layouts.md):\n{describe_layouts()}")
