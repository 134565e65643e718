"""Tree builders for the layout-adapter tests: tiny placeholder files with exact published names.

Adapters read names only, so a few bytes per file are enough; the tests that also need pixels
(auto-detection on a real tree) write real PNGs from skimage's astronaut photo.
"""
from __future__ import annotations

from pathlib import Path

from fexdata.ingest.sources import Item, Reject


def touch(root: Path, *rels: str, data: bytes = b"\0") -> Path:
    """Create each relative file (and its folders) under root with placeholder bytes."""
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def split(results) -> tuple[list[Item], list[Reject]]:
    """Materialise a scan and separate items from rejects (keeping each list's order)."""
    results = list(results)
    items = [r for r in results if isinstance(r, Item)]
    rejects = [r for r in results if isinstance(r, Reject)]
    assert len(items) + len(rejects) == len(results), "scan yielded something that is neither Item nor Reject"
    return items, rejects


def reasons(rejects: list[Reject]) -> dict[str, str]:
    """source_path -> reason (last one wins), for compact assertions."""
    return {r.source_path: r.reason for r in rejects}


def real_png(path: Path, size: int = 64) -> Path:
    """A small real PNG of the astronaut photo (for trees that must also decode)."""
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path
