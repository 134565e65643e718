"""Fabricated `fex ingest` output folders for manifest and dataset tests (no dlib, no video: fast).

`write_ingest` writes OUT/crops/<size>/<source>/<identity>/...png (tiny PNGs via cv2), OUT/records/
part-0000.parquet and OUT/rejects/. The records are written by pandas, not `fexdata.ingest.records`, as
records made some other way would be: pandas types (float64 landmarks, int64 sizes) and no
`source_root` or `extra`, so the tests also cover the reader's casts.
Each crop's pixels encode its row (identity, affect, frame), so tests can check which image a cache
row or a pair holds: `pixel_code(img)` reads the code back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from fexdata.affects import AFFECTS


def template_landmarks(x0: float, y0: float, w: float, h: float) -> np.ndarray:
    """A plausible frontal 68-point layout inside the box (x0, y0, w, h): (68, 2) frame pixels."""
    pts = np.zeros((68, 2))
    t = np.linspace(0, np.pi, 17)
    pts[0:17] = np.c_[0.5 - 0.45 * np.cos(t), 0.35 + 0.6 * np.sin(t)]          # jaw
    pts[17:27] = np.c_[np.r_[np.linspace(0.15, 0.42, 5), np.linspace(0.58, 0.85, 5)], np.full(10, 0.3)]
    pts[27:36] = np.c_[np.r_[np.full(4, 0.5), np.linspace(0.4, 0.6, 5)],
                       np.r_[np.linspace(0.38, 0.58, 4), np.full(5, 0.62)]]      # nose
    a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    pts[36:42] = np.c_[0.32 + 0.07 * np.cos(a), 0.42 + 0.03 * np.sin(a)]          # eyes
    pts[42:48] = np.c_[0.68 + 0.07 * np.cos(a), 0.42 + 0.03 * np.sin(a)]
    b = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    pts[48:60] = np.c_[0.5 - 0.16 * np.cos(b), 0.78 + 0.06 * np.sin(b)]           # mouth
    c = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pts[60:68] = np.c_[0.5 - 0.1 * np.cos(c), 0.78 + 0.03 * np.sin(c)]
    return pts * [w, h] + [x0, y0]


def crop_pixels(identity: int, affect: int, frame: int, size: int) -> np.ndarray:
    """RGB crop whose colour encodes its row; a gradient keeps it non-constant (non-zero sharpness)."""
    img = np.empty((size, size, 3), np.uint8)
    img[..., 0] = identity * 16 + 8
    img[..., 1] = affect * 32 + 8
    img[..., 2] = frame % 256
    img[: size // 4, : size // 4, 0] = 255  # a corner block so resizing keeps a structure
    return img


def pixel_code(img_hwc: np.ndarray) -> tuple[int, int, int]:
    """(identity, affect, frame % 256) read back from a crop made by crop_pixels (any size)."""
    h, w = img_hwc.shape[:2]
    r, g, b = (int(v) for v in img_hwc[h * 3 // 4, w * 3 // 4])
    return round((r - 8) / 16), round((g - 8) / 32), b


def write_ingest(root: Path, *, identities: int = 3, affects: tuple[str, ...] = AFFECTS, kind: str = "video",
                 frames: int = 12, fps: float = 30.0, items_per_cell: int = 1, stills: int = 2,
                 crop_size: int = 32, source: str = "studio", frame_size: int = 256,
                 mutate: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                 write_crops: bool = True) -> Path:
    """Write a fake ingest output folder at `root` and return it.

    kind="video": `items_per_cell` clips of `frames` frames per identity x affect;
    kind="still": `stills` images per identity x affect. `mutate` edits the records before writing.
    """
    root = Path(root)
    rows = []
    for i in range(identities):
        ident = f"{source}:p{i:02d}"
        for a, affect in enumerate(affects):
            a_code = AFFECTS.index(affect) if affect in AFFECTS else 7
            for clip in range(items_per_cell if kind == "video" else stills):
                n = frames if kind == "video" else 1
                src_path = (f"p{i:02d}/{affect}_{clip}.mp4" if kind == "video"
                            else f"p{i:02d}/{affect}_{clip}.png")
                for f in range(n):
                    frame = f if kind == "video" else None
                    name = (f"{affect}_{clip}_f{f:06d}.png" if kind == "video" else f"{affect}_{clip}.png")
                    rel = f"crops/{crop_size}/{source}/p{i:02d}/{name}"
                    x0, y0, w = 60.0 + f % 3, 50.0, 130.0
                    lm = template_landmarks(x0, y0, w, w)
                    s = crop_size / w
                    rows.append({
                        "image": rel, "crop_size": crop_size, "source": source, "source_path": src_path,
                        "item": src_path, "frame": frame, "time": (f / fps) if kind == "video" else np.nan,
                        "identity": ident, "affect": affect, "affect_raw": affect.upper()[:2],
                        "intensity": np.nan, "bbox": [x0, y0, x0 + w, y0 + w], "det_score": 1.5,
                        "face_count": 1, "landmarks": lm.ravel().tolist(),
                        "transform": [s, 0.0, -x0 * s, 0.0, s, -y0 * s], "sharpness": 150.0, "pad_share": 0.0,
                        "align": "ffhq", "detector": "hog", "frame_width": frame_size, "frame_height": frame_size,
                        "_pix": (i, a_code, f if kind == "video" else clip),
                    })
    df = pd.DataFrame(rows)
    df["frame"] = df["frame"].astype("Int64")
    if mutate is not None:
        df = mutate(df)
    if write_crops:
        for rel, size, pix in zip(df["image"], df["crop_size"], df["_pix"]):
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), cv2.cvtColor(crop_pixels(*pix, int(size)), cv2.COLOR_RGB2BGR))
    (root / "records").mkdir(parents=True, exist_ok=True)
    df.drop(columns=["_pix"]).to_parquet(root / "records" / "part-0000.parquet", index=False)
    (root / "rejects").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"source": [source], "source_path": ["bad/clip.mp4"], "reason": ["unreadable video"]}).to_parquet(
        root / "rejects" / "part-0000.parquet", index=False)
    return root
