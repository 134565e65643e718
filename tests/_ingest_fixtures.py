"""Inputs for the ingest tests, built in code from public-domain photos (no downloads).

Faces come from `fexdata.sample` (the astronaut photo, re-styled and warped into characters and affects);
videos are encoded with the real ffmpeg; the bad-input corpus is made of real broken files.
"""
from __future__ import annotations

import io
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fexdata.sample import sample_face, write_clip
from fexdata.ingest.sources import Item
from fexdata.ingest.video import ffmpeg_exe


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def crop_pixels(out: Path) -> dict[str, bytes]:
    """Every crop under OUT/crops by relative path, as its decoded pixels (shape included): runs that
    must agree on crops agree on pixels, since the PNG encoder may write the same pixels as other
    bytes (fexdata.ingest.png)."""
    found = {}
    for p in sorted((out / "crops").rglob("*")):
        if p.is_file():
            image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            found[p.relative_to(out).as_posix()] = b"unreadable" if image is None else \
                repr(image.shape).encode() + image.tobytes()
    return found


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(rgb))
    return path


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few-hundred-byte PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def pattern_clip(path: Path, seconds: float = 2.0, fps: int = 30, size: str = "160x120", extra: tuple = ()) -> Path:
    """ffmpeg's numbered test pattern (each frame differs), for decoder tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}",
                    "-t", str(seconds), "-pix_fmt", "yuv420p", *extra, str(path)], check=True)
    return path


def face_clip(path: Path, identity: int = 0, affect: str = "joy", frames: int = 20, fps: float = 30,
              size: int = 256, still: bool = False) -> Path:
    """A studio-like clip: the character's face moving slowly (or held still with sensor noise)."""
    imgs = [sample_face(identity, affect, size, intensity=0.6 + 0.4 * i / max(frames - 1, 1), seed=i + 1,
                        time=0.0 if still else i / fps) for i in range(frames)]
    return write_clip(path, imgs, fps)


def face_sequence(folder: Path, identity: int = 1, affect: str = "sadness", frames: int = 8, size: int = 256) -> list[str]:
    names = []
    for i in range(frames):
        write_png(folder / f"frame.{i + 1:04d}.png", sample_face(identity, affect, size, seed=i + 1, time=i / 30))
        names.append(f"frame.{i + 1:04d}.png")
    return names


def truncate(src: Path, dest: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def no_face_image(size: int = 256, seed: int = 3) -> np.ndarray:
    """Smooth coloured noise: an image, but no face."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def bad_input_corpus(root: Path) -> tuple[list[Item], dict[str, tuple[str, str]]]:
    """Good and broken inputs under root, as Items; the second value maps each bad path to
    (expected reject category, a phrase its reason must contain)."""
    root.mkdir(parents=True, exist_ok=True)
    face = sample_face(0, "joy", 256)
    write_png(root / "good" / "a.png", face)
    Image.fromarray(sample_face(1, "anger", 256)).save(root / "good" / "b.jpg", quality=92)
    good_png = png_bytes(face)
    (root / "bad").mkdir()
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "bad" / "notes.jpg").write_text("this is not an image\n")
    (root / "bad" / "bomb.png").write_bytes(bomb_png())
    write_png(root / "bad" / "noface.png", no_face_image())
    clip = face_clip(root / "good" / "clip.mkv", frames=24)
    truncate(clip, root / "bad" / "cut.mkv", 0.85)
    (root / "bad" / "empty.mp4").write_bytes(b"")
    (root / "outside.png").write_bytes(good_png)  # reachable only by escaping the dataset root below
    data_root = root  # items are relative to root; "../" escapes it
    expected = {
        "bad/missing.png": ("unreadable image", "does not exist"),
        "bad/empty.png": ("unreadable image", "empty"),
        "bad/truncated.png": ("unreadable image", "truncated"),
        "bad/notes.jpg": ("unreadable image", "not an image"),
        "bad/bomb.png": ("unreadable image", "decompression bomb"),
        "bad/noface.png": ("no face", "no face found"),
        "bad/cut.mkv": ("truncated video", "truncated"),
        "bad/empty.mp4": ("unreadable video", "empty"),
        "../escape/outside.png": ("path outside dataset", "escapes the dataset root"),
    }

    def still(path: str, affect: str = "joy") -> Item:
        return Item("folder", path, "folder:test", affect, affect, kind="image")

    items = [still("good/a.png"), still("good/b.jpg", "anger"),
             Item("folder", "good/clip.mkv", "folder:test", "joy", "joy", kind="video")]
    for path in expected:
        kind = "video" if path.endswith((".mkv", ".mp4")) else "image"
        items.append(Item("folder", path, "folder:test", "joy", "joy", kind=kind))
    (data_root.parent / "escape").mkdir(exist_ok=True)
    (data_root.parent / "escape" / "outside.png").write_bytes(good_png)
    return items, expected


def image_bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
