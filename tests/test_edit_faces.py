"""`fex edit --faces all` and `--face N|X,Y`: every face, or one chosen face, of photos and videos, with real
dlib, ffmpeg and a real tiny trained run, on sample faces side by side."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from _edit_fixtures import build_run, canvas_photo, fex_edit

from fexdata.errors import EditError
from fexdata.images import read_rgb, write_png
from fexdata.ingest.faces import FaceFinder
from fexdata.ingest.video import iter_frames
from fexdata.sample import sample_face, write_clip
from fextrain.edit.faces import FaceChoice, FaceTracks

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

FACE = 160            # each face's side in the test frames
LEFT_X, RIGHT_X, TOP = 16, 32 + FACE, 16
RIGHT_FACE_POINT = "270,80"   # inside the right face's detector box (about x 237-310, y 45-118)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")


def two_faces(i: int, fps: float = 12.0, left: bool = True) -> np.ndarray:
    """Frame i: two sample characters side by side (the left one only when `left`), heads moving slowly."""
    canvas = np.full((FACE + 2 * TOP, 2 * FACE + 48, 3), 90, np.uint8)
    if left:
        canvas[TOP:TOP + FACE, LEFT_X:LEFT_X + FACE] = sample_face(1, "neutral", FACE, seed=i + 1, time=i / fps)
    canvas[TOP:TOP + FACE, RIGHT_X:RIGHT_X + FACE] = sample_face(2, "neutral", FACE, seed=i + 1, time=i / fps)
    return canvas


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faces") / "pair.mp4"
    return write_clip(path, [two_faces(i) for i in range(6)], 12.0)


def crop_quad(shape: tuple[int, ...], transform, size: int = 64) -> np.ndarray:
    """Frame pixels that map inside the model crop (the only ones an edit of that face may touch)."""
    inv = cv2.invertAffineTransform(np.asarray(transform, np.float64).reshape(2, 3))
    corners = np.array([[-1, -1], [size + 1, -1], [size + 1, size + 1], [-1, size + 1]], np.float64)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(corners @ inv[:, :2].T + inv[:, 2]).astype(np.int32), 1)
    return mask.astype(bool)


def diffs(src: Path, out: Path, edits: pd.DataFrame) -> list[dict[str, float]]:
    """Per frame: mean absolute change of the output inside each face's crop quad (by face number), and
    outside every quad, grown by 16 px (H.264 smears a change over its blocks)."""
    found = []
    for a, b in zip(iter_frames(src), iter_frames(out)):
        delta = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean(2)
        rows = edits[edits["frame"] == a.index]
        quads = {int(r.face): crop_quad(a.image.shape, r.transform) for r in rows.itertuples()}
        near = np.zeros(delta.shape, np.uint8)
        for q in quads.values():
            near |= q.astype(np.uint8)
        far = cv2.dilate(near, np.ones((33, 33), np.uint8)) == 0
        found.append({**{n: float(delta[q].mean()) for n, q in quads.items()}, "far": float(delta[far].mean())})
    return found


def test_faces_all_edits_both_faces_of_a_video(run, clip, tmp_path):
    out = tmp_path / "out"
    result = fex_edit(str(run), str(clip), "--to", "joy", "--from", "neutral", "--faces", "all", "--out", str(out))
    edits = pd.read_parquet(out / "edits.parquet")
    assert sorted(zip(edits["frame"], edits["face"])) == [(f, n) for f in range(6) for n in (0, 1)]
    left, right = (edits[edits["face"] == n] for n in (0, 1))
    assert (np.stack(left["box"])[:, 2] < np.stack(right["box"])[:, 0]).all()   # track 0 is the left face
    for frame in diffs(clip, out / "pair" / "joy.mp4", edits):
        assert frame["far"] < 2.0                                  # away from both faces: re-encoding only
        assert min(frame[0], frame[1]) > 4 * frame["far"]          # both faces edited
    assert "6 with a face edited" in result.output and "2 faces followed" in result.output
    meta = json.loads((out / "edit.json").read_text())
    assert meta["settings"]["faces"] == "all" and meta["summary"]["video_frames"]["tracks"] == 2


def test_face_by_number_or_point_edits_only_that_face(run, clip, tmp_path):
    edits = {}
    for choice in ("0", "1", RIGHT_FACE_POINT):
        out = tmp_path / choice.replace(",", "_")
        fex_edit(str(run), str(clip), "--to", "joy", "--from", "neutral", "--face", choice, "--out", str(out))
        edits[choice] = pd.read_parquet(out / "edits.parquet")
        assert json.loads((out / "edit.json").read_text())["settings"]["faces"] == choice
        assert edits[choice]["frame"].tolist() == list(range(6))
    assert edits["0"]["face"].tolist() == [0] * 6
    assert edits["1"]["face"].tolist() == edits[RIGHT_FACE_POINT]["face"].tolist() == [1] * 6
    both = pd.concat([edits["0"], edits["1"]])
    for choice, edited, kept in (("1", 1, 0), (RIGHT_FACE_POINT, 1, 0), ("0", 0, 1)):
        out = tmp_path / choice.replace(",", "_") / "pair" / "joy.mp4"
        for frame in diffs(clip, out, both):
            assert frame[kept] < 2.5 and frame["far"] < 2.0        # the other face: re-encoding only
            assert frame[edited] > 4 * max(frame[kept], frame["far"])
    # A different choice into the same DIR would mix two choices' outputs: refused.
    result = fex_edit(str(run), str(clip), "--to", "joy", "--from", "neutral", "--face", "0", "--out",
                      str(tmp_path / "1"), code=2)
    assert "made with other settings" in result.output and "hint:" in result.output


@pytest.mark.parametrize("args, says", [
    (("--face", "5,5"), "no face holds that point"),
    (("--face", "left"), "neither a face number nor a point"),
    (("--face", "-1"), "neither a face number nor a point"),
    (("--face", "1", "--faces", "all"), "--faces all every face"),
])
def test_a_bad_face_choice_is_an_error_with_a_hint(run, clip, tmp_path, args, says):
    out = tmp_path / "out"
    result = fex_edit(str(run), str(clip), "--to", "joy", "--from", "neutral", *args, "--out", str(out), code=2)
    assert "error:" in result.output and says in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    assert not (out / "pair" / "joy.mp4").exists()
    # Nothing was written: the corrected command into the same DIR is not refused as "other settings".
    fex_edit(str(run), str(clip), "--to", "joy", "--from", "neutral", "--face", "0", "--out", str(out))


def test_a_photos_face_by_number_and_point(run, tmp_path):
    """A photo's faces are numbered largest first (as --faces all labels them); the other face's pixels stay
    bit for bit."""
    left, right = canvas_photo(1, "joy", border=40, size=256), canvas_photo(2, "anger", border=40, size=224)
    group = np.zeros((left.shape[0], left.shape[1] + right.shape[1], 3), np.uint8)
    group[:, :left.shape[1]] = left
    group[:right.shape[0], left.shape[1]:] = right
    photo = write_png(tmp_path / "group.png", group)
    boxes = [box for box, _ in FaceFinder("hog").detect_all(group, cv2.cvtColor(group, cv2.COLOR_RGB2GRAY))]
    smaller = min(boxes, key=lambda b: b[2] - b[0])
    point = f"{(smaller[0] + smaller[2]) / 2:.0f},{(smaller[1] + smaller[3]) / 2:.0f}"
    for choice, face in (("1", 1), (point, 1), ("0", 0)):
        out = tmp_path / f"out-{choice}"
        fex_edit(str(run), str(photo), "--to", "joy", "--face", choice, "--out", str(out))
        edits = pd.read_parquet(out / "edits.parquet")
        assert edits["face"].tolist() == [face]
        assert (edits.iloc[0]["box"][0] >= left.shape[1]) == (face == 1)    # face 1: the smaller, right one
        got = read_rgb(out / "group" / "joy.png")
        inside = crop_quad(group.shape, edits.iloc[0]["transform"])
        assert np.array_equal(got[~inside], group[~inside]) and (got[inside] != group[inside]).any()
    fex_edit(str(run), str(photo), "--to", "joy", "--face", "5", "--out", str(tmp_path / "five"))
    rejects = pd.read_parquet(tmp_path / "five" / "rejects")
    assert rejects["reason"].tolist() == ["no face 5: the photo shows faces 0 to 1"]
    result = fex_edit(str(run), str(photo), "--to", "joy", "--face", "2,2", "--out", str(tmp_path / "corner"), code=2)
    assert "no face holds that point in the photo" in result.output and "face 1: x" in result.output


def test_tracks_are_numbered_by_first_appearance_then_left_to_right():
    """The right face shows from frame 0, the left one from frame 2 (a full-frame scan for new faces runs
    every `redetect_every` frames): right is 0, left 1; each keeps its number while it is followed, and only
    the frame a track starts in is a cut."""
    tracks = FaceTracks(FaceFinder("hog"), redetect_every=2)
    seen = []
    for i in range(6):
        image = two_faces(i, left=i >= 2)
        faces = tracks.update(image, cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        seen.append({n: (face.box[0] < RIGHT_X, cut) for n, (face, cut) in faces.items()})
    assert seen[:2] == [{0: (False, True)}, {0: (False, False)}]
    assert seen[2] == {0: (False, False), 1: (True, True)}
    assert seen[3:] == [{0: (False, False), 1: (True, False)}] * 3
    # Both appearing in one frame: left to right.
    tracks = FaceTracks(FaceFinder("hog"))
    image = two_faces(0)
    faces = tracks.update(image, cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    assert [faces[n][0].box[0] < RIGHT_X for n in (0, 1)] == [True, False]


def test_face_choice_text():
    assert [str(FaceChoice.parse(t)) for t in ("largest", " ALL ", "3", "120,80", "120.5, 80")] == \
        ["largest", "all", "3", "120,80", "120.5,80"]
    boxes = {0: (0.0, 0.0, 50.0, 50.0), 1: (40.0, 0.0, 100.0, 50.0)}
    assert FaceChoice.parse("49,10").pick(boxes, "x") == 1        # in both boxes: the nearer centre
    assert FaceChoice.parse("10,10").pick(boxes, "x") == 0
    assert FaceChoice.parse("2").pick(boxes, "x") is None
    for bad in ("", "-1", "1.5", "a,b", "1,2,3", "1;2"):
        with pytest.raises(EditError):
            FaceChoice.parse(bad)
    with pytest.raises(EditError, match="no face holds"):
        FaceChoice.parse("200,10").pick(boxes, "x")
