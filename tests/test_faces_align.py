import cv2
import numpy as np
import pytest
from skimage import data

from fexdata.ingest.align import (Smoother, bbox_alignment, crop, crop_to_frame, ffhq_alignment, frame_to_crop,
                           sharpness)
from fexdata.ingest.faces import FaceError, FaceFinder, FaceTracker, FanLandmarker
from fexdata.sample import sample_face
from _ingest_fixtures import no_face_image


@pytest.fixture(scope="module")
def finder():
    return FaceFinder()


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


def _eyes(landmarks):
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])


def test_hog_finds_astronaut_with_landmarks(finder, astronaut):
    face = finder.find(astronaut)
    assert face is not None and face.detector == "hog" and face.face_count == 1
    x0, y0, x1, y1 = face.box
    assert abs(x0 - 179) < 10 and abs(y0 - 83) < 10 and 70 < x1 - x0 < 110
    assert face.landmarks.shape == (68, 2)
    eye_l, eye_r = _eyes(face.landmarks)
    assert x0 < eye_l[0] < eye_r[0] < x1 and y0 < eye_l[1] < y1   # the image's left eye first
    assert face.landmarks[57, 1] > eye_l[1] + 20                    # lower lip below the eyes


def test_several_faces_keep_largest_and_count(finder):
    big = sample_face(0, "joy", 320)
    small = sample_face(1, "anger", 200)
    canvas = np.full((360, 600, 3), 90, np.uint8)
    canvas[20:340, 10:330] = big
    canvas[80:280, 380:580] = small
    face = finder.find(canvas)
    assert face.face_count == 2
    assert face.box[2] < 340  # the box is on the big face


def test_small_precropped_faces_still_ingest(finder):
    tiny = cv2.resize(sample_face(1, "joy", 512)[60:460, 60:460], (48, 48), interpolation=cv2.INTER_AREA)
    face = finder.find(tiny)
    assert face is not None and face.detector in ("hog", "frame")
    assert face.landmarks.shape == (68, 2)
    # no face at all: auto falls back to the whole frame only for tiny images
    frame = finder.find(no_face_image(48))
    assert frame.detector == "frame" and frame.box == (0.0, 0.0, 48.0, 48.0) and np.isnan(frame.score)
    assert finder.find(no_face_image(256)) is None
    assert FaceFinder(fallback="reject").find(no_face_image(48)) is None
    assert FaceFinder(fallback="frame").find(no_face_image(256)).detector == "frame"


def test_ffhq_puts_eyes_where_ffhq_does_and_maps_back(finder, astronaut):
    face = finder.find(astronaut)
    out = crop(astronaut, ffhq_alignment(face.landmarks), (256, 512))
    eyes = _eyes(face.landmarks)
    for size, (img, m) in out.items():
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        (lx, ly), (rx, ry) = frame_to_crop(eyes, m) / size
        assert abs(ly - ry) < 0.01                        # eyes level
        assert abs((lx + rx) / 2 - 0.5) < 0.01            # centred
        assert 0.44 < ly < 0.50 and 0.22 < rx - lx < 0.28  # FFHQ: eyes just above the middle, ~1/4 apart
        assert np.allclose(crop_to_frame(frame_to_crop(eyes, m), m), eyes, atol=1e-6)
        # a crop pixel shows the frame pixel its mapped-back coordinate points at
        pts = np.array([[0.3, 0.4], [0.5, 0.6], [0.7, 0.45]]) * size
        back = np.round(crop_to_frame(pts, m)).astype(int)
        diff = np.abs(img[pts[:, 1].astype(int), pts[:, 0].astype(int)].astype(int)
                      - astronaut[back[:, 1], back[:, 0]].astype(int))
        assert diff.mean() < 20
    # the 256 crop is the 512 crop downscaled: one transform, consistent mappings
    e512 = frame_to_crop(eyes, out[512][1])
    e256 = frame_to_crop(eyes, out[256][1])
    assert np.allclose((e512 + 0.5) / 2 - 0.5, e256, atol=1e-6)


def test_bbox_mode_square_around_box(astronaut):
    box = (100.0, 50.0, 200.0, 170.0)
    al = bbox_alignment(box, margin=0.5)
    (img, m), = crop(astronaut, al, (256,)).values()
    centre = frame_to_crop(np.array([[150.0, 110.0]]), m)[0]
    assert np.allclose(centre, [128, 128])
    assert m[0, 0] == pytest.approx(256 / (120 * 1.5)) and m[0, 1] == 0  # no rotation; side = 1.5 x longest
    assert img.shape == (256, 256, 3)


def test_reflect_pad_fills_outside_the_frame(astronaut):
    al = bbox_alignment((0.0, 0.0, 60.0, 60.0), margin=1.0)  # half of the crop lies outside the frame
    (img, _), = crop(astronaut, al, (128,)).values()
    assert img[:20, :20].std() > 0 and (img[:20, :20] != 0).any()  # reflected content, not a black border


def test_sharpness_drops_with_blur(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert sharpness(astronaut) == pytest.approx(float(cv2.Laplacian(gray, cv2.CV_64F).var()), rel=1e-12)
    assert sharpness(cv2.GaussianBlur(astronaut, (9, 9), 3)) < 0.5 * sharpness(astronaut)


def test_tracker_tracks_a_moving_face(finder):
    frames = [sample_face(0, "surprise", 320, intensity=0.5 + 0.5 * i / 29, seed=i + 1, time=i / 30)
              for i in range(30)]
    tracker = FaceTracker(finder, redetect_every=10)
    faces = [tracker.update(f) for f in frames]
    assert all(f is not None for f in faces)
    assert tracker.stats["track"] >= 24 and tracker.stats["detect_full"] == 1
    assert sum(f.detector == "track" for f in faces) == tracker.stats["track"]
    # tracked landmarks agree with detecting the frame from scratch
    errs = [np.abs(finder.find(frames[i]).landmarks - faces[i].landmarks).mean() for i in (5, 17, 28)]
    assert max(errs) < 3.0


def test_tracker_redetects_after_a_cut(finder):
    a = sample_face(0, "joy", 320)
    shifted = np.full_like(a, 80)
    shifted[:, 120:] = cv2.resize(a, (200, 320))  # another face position, squeezed: a cut
    tracker = FaceTracker(finder, redetect_every=50)
    tracker.update(a)
    assert tracker.last_was_cut
    tracker.update(a)
    assert not tracker.last_was_cut
    face = tracker.update(shifted)
    assert face is not None and face.detector == "hog" and tracker.last_was_cut
    assert face.box[0] > 120


def test_smoothing_reduces_jitter_and_respects_cuts(finder):
    # A still head with sensor noise: landmark noise makes the raw alignment jitter.
    frames = [sample_face(2, "neutral", 320, seed=i + 1) for i in range(24)]
    tracker = FaceTracker(finder, redetect_every=5)
    raw = [ffhq_alignment(tracker.update(f).landmarks) for f in frames]
    sm = Smoother(sigma=2.0)
    smoothed = [al for i, a in enumerate(raw) for _, al in sm.push(i, a)] + [al for _, al in sm.flush()]
    assert len(smoothed) == len(raw)

    def jitter(als):
        arr = np.stack([a.as_array() for a in als])
        return np.abs(np.diff(arr, axis=0)).mean()
    assert jitter(raw) > 0
    assert jitter(smoothed) < 0.6 * jitter(raw)

    sm = Smoother(sigma=2.0)
    from fexdata.ingest.align import Alignment
    a, b = Alignment(0, 0, 10, 0), Alignment(100, 0, 10, 0)
    out = []
    for i in range(5):
        out += sm.push(i, a)
    out += sm.push(5, b, cut=True)
    for i in range(6, 10):
        out += sm.push(i, b)
    out += sm.flush()
    assert [p for p, _ in out] == list(range(10))
    assert all(al.cx == pytest.approx(0) for _, al in out[:5])
    assert all(al.cx == pytest.approx(100) for _, al in out[5:])


def test_fan_backend_refuses_without_weights(tmp_path):
    with pytest.raises(FaceError, match="weights not found"):
        FanLandmarker(tmp_path / "2DFAN4-11f355bf06.pth.tar")


def test_shipped_hog_model_is_dlibs_frontal_detector(tmp_path):
    import dlib

    from fexdata.ingest.faces import HOG_MODEL_FILE

    # The file must be exactly what this dlib builds in; regenerate it with
    # dlib.get_frontal_face_detector().save("fexdata/ingest/dlib_frontal_face_detector.svm").
    dlib.get_frontal_face_detector().save(str(tmp_path / "builtin.svm"))
    assert HOG_MODEL_FILE.read_bytes() == (tmp_path / "builtin.svm").read_bytes()


def test_coarse_first_pass_finds_dataset_faces_like_the_full_size_pass(finder):
    for identity, size in ((0, 512), (3, 420), (7, 640)):
        image = sample_face(identity, "surprise", size, seed=identity)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        coarse, full = finder.detect_all(image, gray, coarse_first=True), finder.detect_all(image, gray)
        assert len(coarse) == len(full) == 1
        lm_c, lm_f = (finder.landmarker(image, gray, found[0][0]) for found in (coarse, full))
        iod = np.linalg.norm(np.diff(_eyes(lm_f), axis=0))
        assert np.linalg.norm(lm_c - lm_f, axis=1).mean() < 0.03 * iod   # measured: ~0.6 % on average


def test_tracker_rechecks_a_track_that_drifts_in_scale(finder):
    tracker = FaceTracker(finder)
    face = finder.find(sample_face(0, "joy", 256))
    tracker._learn(face)
    centre = face.landmarks.mean(0)
    step = [centre + (face.landmarks - centre) * 1.08 ** k for k in range(3)]
    assert tracker._plausible(step[0], step[1])          # 8 % wider than the last frame and the detection
    assert not tracker._plausible(step[1], step[2])      # 8 % on the last frame, but 17 % off the detection
    squashed = step[0].copy()
    squashed[:, 1] = centre[1] + (squashed[:, 1] - centre[1]) * 0.8
    assert not tracker._plausible(step[0], squashed)     # flattening is a change of scale too
