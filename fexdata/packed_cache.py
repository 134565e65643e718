"""Packed cache: a split's crops decoded once, at the training size, into one memory-mapped uint8 array.

Decoding a 128x128 PNG costs far more than copying its 48 KiB out of page cache, so training reads
`<name>.npy` (N x size x size x 3, RGB) through `np.load(mmap_mode="r")` instead. A JSON sidecar
records what the array was built from; the key is a hash of the manifest file's bytes, the split and
the size, so any change to the manifest rebuilds the cache on next use and an unchanged one is reused.

Layout (default folder `<manifest>.cache/` beside the manifest, overridable):
    <manifest stem>-<split>-<size>.npy    the pixels, row i = i-th row of the split in manifest order
    <manifest stem>-<split>-<size>.json   {"key", "manifest_sha256", "split", "size", "count", "version"}
The manifest's stem in the names lets several manifests share one cache folder without evicting
each other; a changed manifest replaces its own files instead of piling up new ones.
Both are written atomically and the sidecar last, so a crash mid-build leaves no cache that looks valid.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from fexdata.errors import ManifestError
from fexdata.paths import atomic_path, atomic_write_text
from fexdata.threads import available_cores

CACHE_VERSION = 1  # bump when the decoding/resizing below changes, so old caches are rebuilt


class CacheError(ManifestError):
    """A crop that cannot be decoded while building the cache."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(manifest_sha256: str, split: str, size: int) -> str:
    return hashlib.sha256(f"v{CACHE_VERSION}|{manifest_sha256}|{split}|{size}".encode()).hexdigest()


def default_cache_dir(manifest_path: str | os.PathLike) -> Path:
    p = Path(manifest_path)
    return p.with_name(p.name + ".cache")


def decode_crop(path: str | os.PathLike, size: int) -> np.ndarray:
    """One crop as size x size x 3 uint8 RGB (area-averaged when shrinking, cubic when enlarging)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CacheError(f"cannot decode crop {path}: missing or not an image",
                         hint="run `fex manifest-info` on the manifest to list missing files")
    return cv2.cvtColor(resize_crop(bgr, size), cv2.COLOR_BGR2RGB)


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """A square crop at `size`: area-averaged when shrinking, cubic when enlarging. The rule that makes
    training images from manifest crops; `fex edit` applies it to the faces it feeds a model."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def _build(paths: Sequence[Path], size: int, dest: Path, workers: int, progress: bool, desc: str) -> None:
    with atomic_path(dest) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))

        def fill(i: int) -> None:  # cv2 releases the GIL while decoding, so threads scale
            arr[i] = decode_crop(paths[i], size)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for _ in tqdm(pool.map(fill, range(len(paths)), chunksize=64), total=len(paths),
                          desc=desc, unit="img", disable=not progress, leave=False):
                pass
        arr.flush()
        del arr


def load_or_build(manifest_path: str | os.PathLike, split: str, size: int, image_paths: Sequence[Path],
                  cache_dir: str | os.PathLike | None = None, *, rebuild: bool = False,
                  workers: int | None = None, progress: bool = True) -> np.ndarray:
    """Memory-mapped (N, size, size, 3) uint8 array of `image_paths`, from cache or built now.

    `image_paths` must be the split's crops in manifest order (absolute or cwd-relative paths).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(manifest_path)
    manifest_sha = file_sha256(manifest_path)
    key = cache_key(manifest_sha, split, size)
    stem = f"{Path(manifest_path).stem}-{split}-{size}"
    npy, sidecar = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    if not rebuild and npy.is_file() and sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("key") == key and info.get("count") == len(image_paths):
            arr = np.load(npy, mmap_mode="r")
            if arr.shape == (len(image_paths), size, size, 3):
                return arr
    cache_dir.mkdir(parents=True, exist_ok=True)
    if sidecar.exists():
        sidecar.unlink()  # the old pixels are about to be replaced: never pair them with a valid sidecar
    _build(list(image_paths), size, npy, workers or available_cores(), progress,
           desc=f"packing {split} crops at {size}px")
    info = {"key": key, "manifest_sha256": manifest_sha, "split": split, "size": size,
            "count": len(image_paths), "version": CACHE_VERSION}
    atomic_write_text(sidecar, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return np.load(npy, mmap_mode="r")
