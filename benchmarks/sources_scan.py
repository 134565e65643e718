"""Scan speed of the layout adapters on full-size synthetic trees (names only, zero-byte files).

Trees: a CK+ release (593 sequences of 18 frames, 327 with Emotion labels, like the real one) and a
KDEF release (70 session folders x 7 expressions x 5 angles = 4,900 images). The baseline is the
least a scanner can do on the same tree: `os.walk` plus a sort of every folder's names, without
labels, safety checks or rejects. Printed as files/s and as the adapter's speed relative to that
baseline (1.0 = as fast as a bare walk).

    .venv/bin/python benchmarks/sources_scan.py
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from fexdata.ingest import sources

KDEF_CODES = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")


def build_ckplus(root: Path, sequences: int = 593, labelled: int = 327, frames: int = 18) -> int:
    count = 0
    for k in range(sequences):
        subject, seq = f"S{5 + k // 6:03d}", f"{1 + k % 6:03d}"
        folder = root / "cohn-kanade-images" / subject / seq
        folder.mkdir(parents=True)
        for i in range(1, frames + 1):
            (folder / f"{subject}_{seq}_{i:08d}.png").touch()
        count += frames
        if k < labelled:
            label = root / "Emotion" / subject / seq
            label.mkdir(parents=True, exist_ok=True)
            (label / f"{subject}_{seq}_{frames:08d}_emotion.txt").write_text(f"   {1 + k % 7:.7e}\n")
            count += 1
    return count


def build_kdef(root: Path) -> int:
    count = 0
    for session in "AB":
        for gender in "FM":
            for ident in range(1, 36):
                person = f"{session}{gender}{ident:02d}"
                (root / "KDEF" / person).mkdir(parents=True)
                for code in KDEF_CODES:
                    for angle in KDEF_ANGLES:
                        (root / "KDEF" / person / f"{person}{code}{angle}.JPG").touch()
                        count += 1
    return count


def bare_walk(root: Path) -> int:
    n = 0
    for _, dirs, files in os.walk(root):
        dirs.sort()
        n += len(sorted(files))
    return n


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for layout, build in (("ckplus", build_ckplus), ("kdef", build_kdef)):
            root = Path(tmp) / layout
            files = build(root)
            detect_s = best_of(lambda: sources.detect_layout(root))
            results = []
            scan_s = best_of(lambda: results.append(list(sources.get(layout).scan(root))))
            walk_s = best_of(lambda: bare_walk(root))
            items = sum(1 for r in results[-1] if isinstance(r, sources.base.Item))
            print(f"{layout:7s} {files:6d} files -> {items:5d} items | detect {detect_s * 1e3:6.1f} ms | "
                  f"scan {files / scan_s:9,.0f} files/s | baseline os.walk+sort {files / walk_s:9,.0f} files/s | "
                  f"ratio {walk_s / scan_s:.2f}x of baseline")


if __name__ == "__main__":
    main()
