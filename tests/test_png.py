"""The crop PNG encoder: any reader gets back exactly the pixels written."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from fexdata.ingest.png import encode_png
from fexdata.sample import sample_face


@pytest.mark.parametrize("shape", [(256, 256, 3), (1, 1, 3), (7, 3, 3), (33, 65), (1, 9)])
def test_png_round_trips_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(image)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded if image.ndim == 2 else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), image)


def test_png_of_a_face_crop_is_compressed_like_opencvs():
    face = np.ascontiguousarray(sample_face(2, "joy", 256)[:, ::-1])  # a non-contiguous view, made contiguous
    data = encode_png(face[:, ::-1])                                  # and a strided one as given
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), face[:, ::-1])
    reference = len(cv2.imencode(".png", face)[1])
    assert len(data) < 1.15 * reference < 0.8 * face.nbytes  # about OpenCV's size, far below raw


def test_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 4), np.uint8))
