"""How much face-like structure each `fex ingest --pad` mode invents, and what `--zoom` does to the padding.

Data, all built from `fexdata.sample` (no downloads), aligned with the FFHQ recipe on dlib's landmarks:

    studio    the demo's studio frames: 256x256, characters with their slow head motion, affect ramps
    tight256  a 256x256 face set: the same faces cut tightly (a square 1.6x the dlib box) and resized
    tight48   a CK+48 stand-in: the same cut at 1.2x the box, resized to 48x48

For every set, pad mode and zoom, on 256 px crops:

    padded    the crop's padded share (fexdata.ingest.align.pad_share), median over the set
    ghosts    copies of the face's own eyes in the padded band (`ghost_eyes`): invented face parts; per
              crop, and the share of crops with at least one
    band      mean gradient magnitude (Sobel) of the padded band, at least 2 px out, over that of the
              in-frame part: 1 means the band is as busy as the face image, 0 flat
    seam      the same within 1.5 px of the frame's edge: above 1, padding leaves a visible border
    ms/crop   wall time of `crop` for one 256 px crop (warp + padding), to compare modes within one run

    .venv/bin/python benchmarks/padding.py [--per-set 70] [--figures docs/figures] [--ingest 6]

With --figures it also writes one crop grid per set (reflect vs the default, zoom 1 vs GRID_ZOOM). With
--ingest S it also times `fex ingest` (one worker, 256 px crops) on an S-second 512x512 60 fps studio
clip with reflect and the default padding alternately, twice each, in CPU time per frame (less sensitive
than wall time to other work on the machine).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fexdata.affects import AFFECTS  # noqa: E402
from fexdata.ingest.align import (DEFAULT_PAD, PAD_MODES, crop, ffhq_alignment, outside_distance,  # noqa: E402
                                  pad_share)
from fexdata.ingest import IngestOptions, Source, ingest  # noqa: E402
from fexdata.ingest.faces import FaceFinder  # noqa: E402
from fexdata.sample import CHARACTERS, clip_intensity, sample_face, write_clip  # noqa: E402

CROP = 256
GHOST_MATCH = 0.7   # normalised correlation of a ghost eye with the real one
SETS = {"studio": None, "tight256": (1.6, 256), "tight48": (1.2, 48)}  # (cut / dlib box side, output side)
GRID_ZOOM = {"studio": 1.25, "tight256": 1.25, "tight48": 1.5}            # the tighter column of each figure


def make_set(name: str, n: int, finder: FaceFinder) -> list[np.ndarray]:
    """`n` frames of set `name`: characters x affects x moments of a 1 s studio clip, round robin."""
    out = []
    for k in range(n):
        identity, affect = k % len(CHARACTERS), AFFECTS[(k // len(CHARACTERS)) % len(AFFECTS)]
        t = (k * 0.37) % 1.0
        if SETS[name] is None:
            out.append(sample_face(identity, affect, 256, clip_intensity(t, 1.0), seed=k + 1, time=t))
            continue
        cut, side = SETS[name]
        face = sample_face(identity, affect, 512, clip_intensity(t, 1.0), seed=k + 1, time=t)
        x0, y0, x1, y1 = finder.find(face).box
        half = cut * max(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        m = np.array([[side / (2 * half), 0, side / 2 - cx * side / (2 * half)],
                      [0, side / (2 * half), side / 2 - cy * side / (2 * half)]])
        out.append(cv2.warpAffine(face, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE))
    return out


def ghost_eyes(img: np.ndarray, transform: np.ndarray, landmarks: np.ndarray, dist: np.ndarray | None) -> int:
    """Copies of the face's own eyes in the padded band: places where the crop matches either eye (as it
    is, or mirrored left-right, up-down or both, as reflection copies it) with a normalised correlation
    of at least GHOST_MATCH, their centre in the band more than one patch from the frame, after non-maximum
    suppression. dlib's frontal detector is no judge of this: reflected faces are cut in half or upside
    down and it finds none of them, while a person sees them at once (docs/figures/pad_*.png)."""
    if dist is None:
        return 0
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    pts = landmarks @ transform[:, :2].T + transform[:, 2]
    eyes = [pts[36:42].mean(0), pts[42:48].mean(0)]
    half = max(3, int(0.3 * np.hypot(*(eyes[1] - eyes[0]))))
    best = None
    for ex, ey in eyes:
        x, y = int(round(ex)), int(round(ey))
        patch = gray[y - half:y + half + 1, x - half:x + half + 1]
        if patch.shape != (2 * half + 1, 2 * half + 1):
            continue
        for flip in (patch, patch[:, ::-1], patch[::-1], patch[::-1, ::-1]):
            score = cv2.matchTemplate(gray, np.ascontiguousarray(flip), cv2.TM_CCOEFF_NORMED)
            best = score if best is None else np.maximum(best, score)
    if best is None:
        return 0
    peaks = (best >= GHOST_MATCH) & (best == cv2.dilate(best, np.ones((2 * half + 1,) * 2, np.uint8)))
    ys, xs = np.nonzero(peaks)
    return int((dist[ys + half, xs + half] > 2 * half).sum())


def band_energy(img: np.ndarray, dist: np.ndarray | None) -> tuple[float, float]:
    """(band, seam): mean gradient magnitude at least 2 px out, and within 1.5 px of the frame's edge,
    each over the in-frame mean (NaN where there is too little of either)."""
    if dist is None:
        return float("nan"), float("nan")
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    inside = mag[dist == 0]
    if inside.size < 50:
        return float("nan"), float("nan")
    out = []
    for part in (dist >= 2, (dist > 0) & (dist <= 1.5)):
        out.append(float(mag[part].mean() / inside.mean()) if part.sum() >= 20 else float("nan"))
    return out[0], out[1]


def measure(frames: list[np.ndarray], finder: FaceFinder, zooms: list[float],
            modes: tuple[str, ...]) -> list[dict]:
    faces = [(img, finder.find(img)) for img in frames]
    faces = [(img, f) for img, f in faces if f is not None and f.detector != "frame"]
    rows = []
    for zoom in zooms:
        als = [(img, f, ffhq_alignment(f.landmarks).zoomed(zoom)) for img, f in faces]
        shares = [pad_share(al, img.shape[1], img.shape[0]) for img, _, al in als]
        for mode in modes:
            g, e, seam, seconds = [], [], [], 0.0
            for img, f, al in als:
                started = time.perf_counter()
                c, m = crop(img, al, (CROP,), mode)[CROP]  # type: ignore[arg-type]
                seconds += time.perf_counter() - started
                dist = outside_distance(m, img.shape[1], img.shape[0], CROP)
                g.append(ghost_eyes(c, m, f.landmarks, dist))
                band, edge = band_energy(c, dist)
                e.append(band)
                seam.append(edge)
            rows.append({"zoom": zoom, "mode": mode, "faces": len(als), "padded": float(np.median(shares)),
                         "ghosts": float(np.mean(g)), "with_ghost": float(np.mean(np.array(g) > 0)),
                         "band": _nanmean(e), "seam": _nanmean(seam), "ms": 1000 * seconds / max(1, len(als))})
    return rows


def _nanmean(values: list[float]) -> float:
    v = np.asarray(values, np.float64)
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")


def grid(frames: list[np.ndarray], finder: FaceFinder, zoom: float, tile: int, rows: int) -> np.ndarray:
    """Rows of faces; columns: reflect and the default padding at zoom 1, then both at `zoom`."""
    columns = [("reflect", 1.0), (DEFAULT_PAD, 1.0), ("reflect", zoom), (DEFAULT_PAD, zoom)]
    picked = [f for f in frames if finder.find(f) is not None][:: max(1, len(frames) // rows)][:rows]
    head = np.full((22, tile * len(columns), 3), 255, np.uint8)
    for k, (mode, z) in enumerate(columns):
        cv2.putText(head, f"{mode}, zoom {z:g}", (k * tile + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    lines = [head]
    for img in picked:
        al = ffhq_alignment(finder.find(img).landmarks)
        tiles = [crop(img, al.zoomed(z), (tile,), mode)[tile][0] for mode, z in columns]  # type: ignore[arg-type]
        lines.append(np.hstack(tiles))
    return np.vstack(lines)


def ingest_cost(seconds: float, modes: tuple[str, ...]) -> None:
    """CPU ms per frame of `fex ingest` on one studio clip for each of `modes` in turn, after a first,
    untimed run of modes[0] that warms the caches; ratios are to the first timed run."""
    work = Path(tempfile.mkdtemp(prefix="fex-bench-pad-"))
    try:
        n = int(seconds * 60)
        frames = (sample_face(3, "surprise", 512, clip_intensity(i / 60, seconds), seed=i + 1, time=i / 60)
                  for i in range(n))
        write_clip(work / "studio" / "cleo" / "surprise.mp4", frames, 60)
        base = None
        for k, mode in enumerate((modes[0],) + modes):
            usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            summary = ingest([Source((work / "studio").resolve(), str(work / "studio"), "studio")], work / f"out{k}",
                             IngestOptions(sizes=(256,), pad=mode), workers=1, progress=False, log=lambda _: None)
            after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, usage))
            ms = 1000 * cpu / summary["frames"]
            if k == 0:
                continue
            base = base or ms
            share = summary["padding"].get("studio", {}).get("median", 0.0)
            print(f"ingest --pad {mode:9}: {summary['frames']} frames, median padded share {share:.2f}, "
                  f"{ms:.1f} CPU ms/frame ({ms / base:.2f}x {modes[0]})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-set", type=int, default=70, help="faces per set")
    ap.add_argument("--zooms", default="1,1.25,1.5,2", help="zooms to measure")
    ap.add_argument("--figures", type=Path, default=None, help="write pad_<set>.png crop grids here")
    ap.add_argument("--ingest", type=float, default=0, help="also time fex ingest on a clip this many seconds long")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    finder = FaceFinder()
    zooms = [float(z) for z in args.zooms.split(",")]
    print(f"{'set':9} {'zoom':>5} {'pad':9} {'faces':>5} {'padded':>7} {'ghosts':>7} {'w/ghost':>8} {'band':>6} "
          f"{'seam':>6} {'ms/crop':>8}")
    for name in SETS:
        started = time.perf_counter()
        frames = make_set(name, args.per_set, finder)
        for r in measure(frames, finder, zooms, PAD_MODES):
            print(f"{name:9} {r['zoom']:5.2f} {r['mode']:9} {r['faces']:5d} {r['padded']:7.3f} {r['ghosts']:7.2f} "
                  f"{r['with_ghost']:8.2f} {r['band']:6.2f} {r['seam']:6.2f} {r['ms']:8.2f}")
        print(f"  ({time.perf_counter() - started:.0f} s)")
        if args.figures is not None:
            args.figures.mkdir(parents=True, exist_ok=True)
            figure = cv2.cvtColor(grid(frames, finder, GRID_ZOOM[name], 96, 3), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(args.figures / f"pad_{name}.png"), figure, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if args.ingest:
        ingest_cost(args.ingest, ("reflect", DEFAULT_PAD) * 2)


if __name__ == "__main__":
    main()
