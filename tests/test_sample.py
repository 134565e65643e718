"""The built-in sample faces must be real, detectable, distinct faces, since tests and the demo rely on them."""
import cv2
import dlib
import numpy as np
import pytest

from fexdata.affects import AFFECTS
from fexdata.sample import CHARACTERS, sample_face, write_clip, write_image_tree, write_studio_tree


@pytest.fixture(scope="module")
def detector():
    return dlib.get_frontal_face_detector()


@pytest.mark.parametrize("identity", [0, 3])
def test_every_affect_is_a_detectable_face(detector, identity):
    for affect in AFFECTS:
        face = sample_face(identity, affect, size=256)
        assert face.shape == (256, 256, 3) and face.dtype == np.uint8
        assert len(detector(face, 0)) == 1, f"no face for identity {identity}, {affect}"


def test_affects_and_identities_differ():
    neutral = sample_face(0, "neutral", 128).astype(float)
    assert np.abs(sample_face(0, "surprise", 128) - neutral).mean() > 3
    assert np.abs(sample_face(1, "neutral", 128) - neutral).mean() > 10
    # Intensity 0 is the neutral face whatever the affect.
    assert np.abs(sample_face(0, "anger", 128, intensity=0.0) - neutral).mean() < 1e-6


def test_clip_round_trips_through_ffmpeg(tmp_path):
    frames = [sample_face(0, "joy", 128, intensity=i / 9, time=i / 30) for i in range(10)]
    path = write_clip(tmp_path / "joy.mp4", frames, fps=30)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10
    assert not list(tmp_path.glob(".*.tmp"))


def test_tree_layouts(tmp_path):
    clips = write_studio_tree(tmp_path / "clips", identities=1, affects=["joy", "anger"], seconds=0.2, fps=10, size=96)
    assert sorted(p.relative_to(clips).as_posix() for p in clips.rglob("*.mp4")) == ["ada/anger.mp4", "ada/joy.mp4"]
    seqs = write_studio_tree(tmp_path / "seq", identities=1, affects=["joy"], seconds=0.2, fps=10, size=96, layout="sequences")
    assert [p.name for p in sorted((seqs / "ada" / "joy").iterdir())] == ["frame.0001.png", "frame.0002.png"]
    takes = write_studio_tree(tmp_path / "takes", identities=1, affects=["joy", "fear"], seconds=0.2, fps=10, size=96, layout="takes")
    assert (takes / "ada.csv").read_text().splitlines() == ["affect,start,end", "joy,0.0,0.2", "fear,0.2,0.4"]
    stills = write_image_tree(tmp_path / "stills", identities=2, affects=["sadness"], per_affect=2, size=96)
    assert len(list(stills.rglob("*.png"))) == 4 and (stills / CHARACTERS[1] / "sadness").is_dir()
