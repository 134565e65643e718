"""Safe still-image reading (any file a dataset may hold becomes an RGB uint8 array or one clear error),
and the one atomic PNG writer for fex's own outputs.

Public datasets arrive as TIFF (JAFFE), PNG (CK+, CK+48), JPEG (KDEF, RaFD, Oulu-CASIA) and render-queue
PNGs with alpha or 16 bits per channel. Whatever goes wrong - the file is missing, empty, cut short, not an
image at all, or a decompression bomb - `read_rgb` raises `ImageError` whose message is a reason a person
understands; the ingest pipeline turns it into one reject row and moves on.

The size check reads only the header, so a 50,000 x 50,000 PNG of a few kilobytes is refused before a
single pixel is decoded.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fexdata.errors import IngestError

# Pillow's own bomb check only warns up to 2x its limit and raises past it; fex applies its own limit
# (configurable per call) from the header, so turn Pillow's off to have one clear rule.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: 10x a 4K frame, far above any face dataset


class ImageError(IngestError):
    """A still that cannot be read; str(error) is the reason shown in the reject row."""


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels. Raises ImageError."""
    with _open(Path(path)) as img:
        return img.size


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a still to an HxWx3 uint8 RGB array.

    Grayscale is replicated to three channels, alpha is composited over black (what a renderer's
    premultiplied output shows), 16-bit and float images are scaled to 8 bits, EXIF orientation is applied.
    """
    path = Path(path)
    with _open(path) as img:
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ImageError(f"image has no pixels ({w}x{h})")
        if max_pixels and w * h > max_pixels:
            raise ImageError(
                f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels, over the {max_pixels / 1e6:g} megapixel limit "
                "(possible decompression bomb)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # not in place, it copies every unrotated image
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"image is truncated or corrupt ({_short(exc)})") from None
        return _to_rgb8(img)


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError("file does not exist")
    if path.is_dir():
        raise ImageError("is a folder, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read file ({_short(exc)})") from None
    if size == 0:
        raise ImageError("file is empty (0 bytes)")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised file format)") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image header is unreadable ({_short(exc)})") from None


def _to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (render queues, depth-like PNGs); "I" is 32-bit int but holds 16-bit data in PNG/TIFF.
        arr = np.asarray(img).astype(np.uint32)
        top = 65535 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        gray = (arr * 255 + top // 2) // top
        return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        hi = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        gray = np.clip(np.nan_to_num(arr) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    if mode == "L":  # gray datasets (JAFFE, CK+): OpenCV replicates the channel ~5x faster than Pillow
        return cv2.cvtColor(np.asarray(img), cv2.COLOR_GRAY2RGB)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, atomically (whole or not at all); returns the path."""
    from fexdata.paths import atomic_write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path} as PNG")
    atomic_write_bytes(path, buf.tobytes())
    return Path(path)
