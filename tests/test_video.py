import numpy as np
import pytest

from fexdata.ingest.video import DecodeReport, VideoError, frame_range, iter_frames, keep_frame, probe
from _ingest_fixtures import pattern_clip, truncate


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return pattern_clip(tmp_path_factory.mktemp("video") / "t.mp4", seconds=2.0, fps=30)


@pytest.fixture(scope="module")
def full(clip):
    return list(iter_frames(clip))


def test_probe(clip):
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.codec) == (160, 120, 30.0, "h264")
    assert info.frame_count == 60 and abs(info.duration - 2.0) < 1e-6


def test_full_decode_indices_times(full):
    assert [f.index for f in full] == list(range(60))
    assert full[45].time == pytest.approx(1.5)
    assert full[0].image.shape == (120, 160, 3) and full[0].image.dtype == np.uint8
    assert not np.array_equal(full[0].image, full[1].image)  # testsrc changes every frame


@pytest.mark.parametrize("kw", [
    dict(start=0.5, end=1.0),
    dict(every=4),
    dict(fps=7),
    dict(start=0.7, end=1.9, every=3),
    dict(start=1.1, fps=12.5),
])
def test_segments_and_subsampling_are_exact(clip, full, kw):
    info = probe(clip)
    report = DecodeReport()
    got = list(iter_frames(clip, info=info, report=report, **kw))
    first, stop = frame_range(info, kw.get("start"), kw.get("end"))
    want = [i for i in range(first, stop or 60) if keep_frame(i, info.rate, kw.get("every", 1), kw.get("fps"))]
    assert [f.index for f in got] == want
    for f in got:  # the pixels are the frame the index says, not a neighbour
        assert np.array_equal(f.image, full[f.index].image)
    assert report.frames == len(want) and not report.truncated


def test_segment_is_half_open_and_fps_rule():
    from fractions import Fraction

    class Info:
        rate = Fraction(30)
    assert frame_range(Info, 0.5, 1.0) == (15, 30)       # frame 30 (t=1.0) belongs to the next segment
    assert frame_range(Info, None, None) == (0, None)
    kept = [i for i in range(60) if keep_frame(i, Fraction(30), fps=10)]
    assert kept == list(range(0, 60, 3))


def test_stopping_early_does_not_decode_everything(clip):
    frames = iter_frames(clip)
    first = next(frames)
    frames.close()  # kills ffmpeg; no error, no hang
    assert first.index == 0


def test_truncated_video_keeps_good_frames(tmp_path):
    src = pattern_clip(tmp_path / "t.mkv", seconds=2.0, fps=30)
    cut = truncate(src, tmp_path / "cut.mkv", 0.5)
    report = DecodeReport()
    frames = list(iter_frames(cut, report=report))
    assert 0 < len(frames) < 60
    assert report.truncated and "truncated" in report.describe()


@pytest.mark.parametrize("maker,phrase", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("not a video at all\n" * 50), "not a complete video|not a readable video|no video stream"),
])
def test_broken_videos_raise(tmp_path, maker, phrase):
    p = tmp_path / "bad.mp4"
    maker(p)
    with pytest.raises(VideoError, match=phrase):
        list(iter_frames(p))


def test_moov_missing_and_missing_file(tmp_path, clip):
    cut = truncate(clip, tmp_path / "cut.mp4", 0.6)  # mp4 with its index (moov) at the end, cut off
    with pytest.raises(VideoError, match="truncated"):
        probe(cut)
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
