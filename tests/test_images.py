import numpy as np
import pytest
from PIL import Image

from fexdata.images import ImageError, image_size, read_rgb
from _ingest_fixtures import bomb_png, image_bytes, png_bytes


@pytest.fixture()
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_png_roundtrip_and_header_size(tmp_path, rgb):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(rgb))
    assert image_size(p) == (60, 40)
    out = read_rgb(p)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    assert np.array_equal(out, rgb)


def test_exif_orientation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the camera was turned; show the stored pixels rotated 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "phone.png", exif=exif)
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    assert np.array_equal(read_rgb(tmp_path / "phone.png"), np.rot90(rgb, k=-1))
    assert np.array_equal(read_rgb(tmp_path / "plain.png"), rgb)


def test_gray_alpha_16bit_and_palette_become_rgb8(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.tif")
    assert np.array_equal(read_rgb(tmp_path / "g.tif"), np.repeat(gray[..., None], 3, 2))

    alpha = np.full((40, 60, 1), 255, np.uint8)
    alpha[:, :30] = 0  # left half transparent -> black
    Image.fromarray(np.concatenate([rgb, alpha], 2), "RGBA").save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out.shape == (40, 60, 3)
    assert (out[:, :30] == 0).all() and np.array_equal(out[:, 30:], rgb[:, 30:])

    deep = (gray.astype(np.uint16) * 257)  # 16-bit grayscale: 0..65535
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = read_rgb(tmp_path / "d.png")
    assert out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - gray.astype(int)).max() <= 1

    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    assert read_rgb(tmp_path / "p.gif").shape == (40, 60, 3)

    smooth = np.zeros((40, 60, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 60)[None, :]
    smooth[..., 2] = 128
    Image.fromarray(smooth).save(tmp_path / "c.jpg", quality=95)
    assert np.abs(read_rgb(tmp_path / "c.jpg").astype(int) - smooth.astype(int)).mean() < 3


@pytest.mark.parametrize("name,content,phrase", [
    ("empty.png", b"", "empty"),
    ("text.jpg", b"hello, I am not a picture\n", "not an image"),
])
def test_broken_files_raise_with_reason(tmp_path, name, content, phrase):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ImageError, match=phrase):
        read_rgb(p)


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        read_rgb(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        read_rgb(tmp_path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_raise(tmp_path, rgb, fmt):
    big = np.kron(rgb, np.ones((8, 8, 1), np.uint8))  # large enough that half the file is missing data
    data = image_bytes(Image.fromarray(big), fmt)
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_rgb(p)


def test_decompression_bomb_refused_from_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(100_000, 100_000))
    assert p.stat().st_size < 1000
    assert image_size(p) == (100_000, 100_000)
    with pytest.raises(ImageError, match="decompression bomb"):
        read_rgb(p)
    # the limit is configurable
    small = tmp_path / "s.png"
    small.write_bytes(png_bytes(np.zeros((100, 100, 3), np.uint8)))
    with pytest.raises(ImageError, match="megapixel limit"):
        read_rgb(small, max_pixels=5000)
    assert read_rgb(small, max_pixels=10_000).shape == (100, 100, 3)
