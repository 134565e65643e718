"""Known answers of the optical-flow warping error (fextrain/evaluate/temporal.py), on real OpenCV flow."""
import cv2
import numpy as np
import pytest

from fextrain.evaluate.temporal import warping_error

H, W, FRAMES = 96, 128, 6
STEP = (3, 2)  # the pattern moves 3 px right and 2 px down per frame


def texture(seed: int = 0, size: int = 256) -> np.ndarray:
    """Smooth colour texture in 40..215 (no clipping under small offsets), which Farneback tracks well."""
    noise = np.random.default_rng(seed).normal(0, 1, (size, size, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (40 + 175 * smooth).astype(np.uint8)


def moving(step=STEP, start=(40, 40), frames=FRAMES, seed=0) -> list[np.ndarray]:
    """Windows of a large texture sliding by `step` pixels per frame: content moves by exactly +step."""
    big = texture(seed)
    out = []
    for t in range(frames):
        x, y = start[0] - step[0] * t, start[1] - step[1] * t  # window moves left/up, so content moves right/down
        out.append(np.ascontiguousarray(big[y:y + H, x:x + W]))
    return out


@pytest.fixture(scope="module")
def clip():
    return moving()


def test_static_clip_has_no_error():
    frame = texture()[:H, :W]
    r = warping_error([frame] * 4, [frame] * 4)
    assert r["pairs"] == 3 and r["coverage"] > 0.99
    assert r["input"] < 0.05 and r["output"] < 0.05


def test_output_equal_to_input_is_exactly_one(clip):
    r = warping_error(clip, [f.copy() for f in clip])
    assert r["input"] > 0 and r["ratio"] == 1.0 and r["pairs"] == FRAMES - 1


def test_warp_direction_on_a_moving_pattern(clip):
    # The warp must carry frame t forward along the motion: then a pure translation is predicted almost
    # exactly. Sampling the wrong way (p - flow) would compare points 2 x 3.6 px apart on this texture.
    r = warping_error(clip, clip)
    assert r["input"] < 1.0
    wrong = np.abs(np.roll(clip[1], (2 * STEP[1], 2 * STEP[0]), (0, 1)).astype(int) - clip[1].astype(int))
    assert wrong[10:-10, 10:-10].mean() > 8 * r["input"]
    # Pixels that enter at the left and top edges have no source in frame t and are left out.
    assert 0.85 < r["coverage"] < 0.99


def test_output_that_moves_with_the_input_stays_near_one(clip):
    offset = [np.clip(f.astype(int) + (12, -8, 5), 0, 255).astype(np.uint8) for f in clip]
    assert warping_error(clip, offset)["ratio"] == pytest.approx(1.0, abs=0.05)


def test_output_moving_against_the_input_is_unstable(clip):
    backwards = moving(step=(-STEP[0], -STEP[1]), start=(60, 60))
    assert warping_error(clip, backwards)["ratio"] > 3


def test_per_frame_noise_and_flicker_raise_the_ratio(clip):
    rng = np.random.default_rng(1)
    noisy = [np.clip(f + rng.normal(0, 4, f.shape), 0, 255).astype(np.uint8) for f in clip]
    flicker = [np.clip(f.astype(int) + (6 if t % 2 else -6), 0, 255).astype(np.uint8) for t, f in enumerate(clip)]
    assert warping_error(clip, noisy)["ratio"] > 1.2
    assert warping_error(clip, flicker)["ratio"] > 1.2


def test_region_counts_only_its_pixels(clip):
    # Noise only far outside the box: the box sees an exact copy, the whole frame does not.
    box = (40, 30, 90, 70)
    rng = np.random.default_rng(2)
    out = []
    for f in clip:
        g = f.copy()
        g[:, :20] = rng.integers(0, 256, g[:, :20].shape)
        out.append(g)
    assert warping_error(clip, out)["ratio"] > 1.2
    inside = warping_error(clip, out, region=box)
    assert inside["ratio"] == 1.0 and inside["pixels"] <= 50 * 40 * (FRAMES - 1)
    # One box per frame; a frame without one (None) drops its pair.
    per_frame = [box, None, box, box, None, box]
    r = warping_error(clip, out, region=per_frame)
    assert r["pairs"] == 3 and r["ratio"] == 1.0
    assert [t for t, _, _ in r["per_pair"]] == [2, 3, 5]  # each pair named by its later frame


def test_frames_of_different_sizes_are_refused(clip):
    with pytest.raises(ValueError, match="differ in size"):
        warping_error(clip, [f[:-1] for f in clip])
