"""One conversion between uint8 pixels and [-1, 1] (fextrain/pixels.py): torch and numpy give the same bytes,
and the same bytes as the formulas each call site wrote before it moved here."""
from __future__ import annotations

import numpy as np
import torch

from fextrain.evaluate.degrade import _jpeg
from fextrain.pixels import from_unit_range, to_uint8, to_unit_range, unit_range


def _floats() -> np.ndarray:
    """Outputs a generator can give: beyond the range, and every rounding tie (k + 0.5) / 127.5 - 1 exactly."""
    ties = ((np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(127.5) - np.float32(1))
    grid = np.linspace(-1.25, 1.25, 100_001, dtype=np.float32)
    return np.concatenate([grid, ties, np.nextafter(ties, 2), np.nextafter(ties, -2)]).astype(np.float32)


def test_every_uint8_value_round_trips_and_both_backends_agree():
    u = np.arange(256, dtype=np.uint8).reshape(1, 4, 64, 1).repeat(3, axis=3)  # NHWC
    x_np, x_t = to_unit_range(u), to_unit_range(torch.from_numpy(u))
    assert x_np.dtype == np.float32 and x_np.shape == (1, 3, 4, 64)
    assert np.array_equal(x_np, x_t.numpy())
    # the formulas of the training loader and of the onnxruntime path before they moved here
    assert np.array_equal(x_t.numpy(), torch.from_numpy(u).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).numpy())
    assert np.array_equal(x_np, np.ascontiguousarray(u.transpose(0, 3, 1, 2), np.float32) / np.float32(127.5) - 1)
    assert np.array_equal(to_uint8(x_np), u) and np.array_equal(to_uint8(x_t), u)


def test_float_to_uint8_is_the_same_on_both_backends_and_as_before():
    y = _floats()
    t = torch.from_numpy(y)
    new_t, new_np = from_unit_range(t).numpy(), from_unit_range(y)
    old_t = ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    old_np = np.round((np.clip(y, -1, 1) + 1) * np.float32(127.5)).astype(np.uint8)
    assert np.array_equal(new_t, old_t) and np.array_equal(new_np, old_np) and np.array_equal(new_t, new_np)
    img = torch.from_numpy(y[: 3 * 2 * 50].reshape(1, 3, 2, 50))
    assert np.array_equal(to_uint8(img), to_uint8(img.numpy()))
    assert np.array_equal(unit_range(new_np), unit_range(torch.from_numpy(new_np)).numpy())


def test_jpeg_degradation_gives_the_same_bytes_as_before():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 32, 32, generator=gen) * 2.2 - 1.1
    import cv2

    rgb = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    _, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 40])
    back = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    old = torch.from_numpy(np.ascontiguousarray(back)).permute(2, 0, 1).to(x).div(127.5).sub(1.0)
    assert torch.equal(_jpeg(x, 40), old)
