"""fextrain.edit.report: the edit section opens an eval report, with each input beside each output at full
resolution (a video's frame decoded from the video by ffmpeg), and the grids below."""
import base64
import json
from html.parser import HTMLParser
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from fexdata.images import write_png
from fexdata.ingest.video import VideoWriter
from fextrain.edit.report import MAX_SIDE, add_to_report
from fextrain.edit.table import PARTS_DIR, edit_row, gather, write_part
from fextrain.evaluate.report import write_report

FRAMES, FPS = 8, 10


class _Report(HTMLParser):
    """The page's headings (h1, h2) in order, and each embedded image with its caption."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.figures: list[tuple[str, np.ndarray]] = []  # (caption, RGB image)
        self._tag, self._image = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        src = dict(attrs).get("src", "")
        if tag == "img" and src.startswith("data:image/png;base64,"):
            data = np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8)
            self._image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        self._tag = tag

    def handle_data(self, data):
        if self._tag in ("h1", "h2"):
            self.headings.append(data)
        elif self._tag == "figcaption" and self._image is not None:
            self.figures.append((data, self._image))
            self._image = None
        self._tag = None


def report_figures(text: str) -> _Report:
    return _Report(text)


def _level(i: int) -> int:
    """Frame i of the test clip is one flat gray level, so a decoded frame tells its index."""
    return 30 + 25 * i


def _video(path, width, height, level):
    with VideoWriter(path, width, height, FPS) as writer:
        for i in range(FRAMES):
            writer.write(np.full((height, width, 3), level(i), np.uint8))


def _rows(input_, kind, frames, targets, key, ext):
    face = SimpleNamespace(index=0, box=(1.0, 1.0, 9.0, 9.0), transform=np.eye(2, 3), detector="hog")
    return {t: [edit_row(input_, kind, f, np.nan if f is None else f / FPS, face, "neutral", 0.9, "judge", t,
                         [0.0] * 7, f"{key}/{t}.{ext}", 1.0) for f in frames] for t in targets}


@pytest.fixture
def edited(tmp_path):
    """What `fex eval` and `fex edit` leave: report.html, and DIR with a small photo, a wide photo (over
    MAX_SIDE) and a clip, each edited to joy and surprise."""
    write_report(tmp_path / "report.html", "fex eval: run (warp-refine) at step 4",
                 [("Headline", "<p>numbers</p>"), ("Run", "<p>the run</p>")], {"headline": {}})
    edit, inputs = tmp_path / "edit", tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    owners, parts = {}, []
    for key, (h, w) in {"small": (30, 40), "wide": (80, MAX_SIDE * 5 // 4)}.items():
        write_png(inputs / f"{key}.png", rng.integers(0, 256, (h, w, 3), np.uint8))
        for target, rows in _rows(f"inputs/{key}.png", "image", [None], ["joy", "surprise"], key, "png").items():
            write_png(edit / key / f"{target}.png", rng.integers(0, 256, (h, w, 3), np.uint8))
            parts.append(rows)
        owners[key] = str(inputs / f"{key}.png")
    _video(inputs / "clip.mp4", 64, 48, _level)
    (edit / "clip").mkdir(parents=True)
    for target, rows in _rows("inputs/clip.mp4", "video", range(2, 7), ["joy", "surprise"], "clip", "mp4").items():
        _video(edit / "clip" / f"{target}.mp4", 64, 48, lambda i: 255 - _level(i))
        parts.append(rows)
    owners["clip"] = str(inputs / "clip.mp4")
    for n, rows in enumerate(parts):
        write_part(edit / PARTS_DIR / f"{n}.parquet", rows)
    gather(edit)
    (edit / "edit.json").write_text(json.dumps({"inputs": owners}))  # as `fex edit` records its inputs
    write_png(edit / "small" / "grid.png", np.zeros((20, 60, 3), np.uint8))
    return tmp_path / "report.html", edit


def test_edit_section_comes_first_with_each_input_beside_its_outputs_at_full_resolution(edited):
    report, edit = edited
    add_to_report(report, edit)
    page = report_figures(report.read_text())
    assert page.headings[:4] == ["fex eval: run (warp-refine) at step 4", "Edits of a photo and a clip (fex edit)",
                                 "Headline", "Run"]
    shapes = {caption: image.shape for caption, image in page.figures}
    assert shapes["before (small.png, 40x30 px)"] == (30, 40, 3)
    assert shapes["after: joy (joy.png, 40x30 px)"] == shapes["after: surprise (surprise.png, 40x30 px)"] == (30, 40, 3)
    # Over MAX_SIDE: downscaled to it, and the caption says so.
    wide = f"{MAX_SIDE * 5 // 4}x80 px, shown downscaled to {MAX_SIDE}x64"
    assert shapes[f"before (wide.png, {wide})"] == shapes[f"after: joy (joy.png, {wide})"] == (64, MAX_SIDE, 3)
    # The grid stays, below the before/after row, as detail.
    captions = [c for c, _ in page.figures]
    assert captions.index("inputs/small.png: around the faces, the source, then each target") > captions.index(
        "after: surprise (surprise.png, 40x30 px)")
    text = report.read_text()
    assert 'href="edit/clip/joy.mp4"' in text and 'href="inputs/clip.mp4"' in text


def test_the_clips_frame_is_decoded_from_the_input_and_each_output_video(edited):
    report, edit = edited
    add_to_report(report, edit)
    figures = dict(report_figures(report.read_text()).figures)
    # Edited frames 2..6: the middle one, 4, of the input and of each output, at the clip's 64x48.
    before = figures["before (clip.mp4, frame 4, 64x48 px)"]
    joy = figures["after: joy (joy.mp4, frame 4, 64x48 px)"]
    assert before.shape == joy.shape == (48, 64, 3)
    assert abs(before.mean() - _level(4)) < 3 and abs(joy.mean() - (255 - _level(4))) < 3


def test_adding_again_replaces_the_section_and_a_missing_input_is_said(edited):
    report, edit = edited
    (edit.parent / "inputs" / "small.png").unlink()
    add_to_report(report, edit)
    add_to_report(report, edit)
    text = report.read_text()
    assert text.count("<!-- fex edit -->") == 1
    assert f"before: {edit.parent / 'inputs' / 'small.png'} could not be read" in text
