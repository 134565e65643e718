"""Video probing, streaming frame decoding and encoding with ffmpeg (the static binary from imageio-ffmpeg).

No ffprobe ships with imageio-ffmpeg, so `probe` parses the stream summary that `ffmpeg -i` prints.
`iter_frames` streams RGB uint8 frames from an ffmpeg pipe one at a time (a clip is never held in memory)
and labels each with its frame index in the whole file and its timestamp in seconds (index / fps: studio
renders and dataset clips are constant frame rate; a variable-rate file is read at its average rate).

Subsampling (`every`, `fps`) and segments (`start`, `end`) are decided by exact integer arithmetic on the
frame index, and the same rule runs inside ffmpeg as a `select` filter, so dropped frames are never
converted to RGB or sent through the pipe, yet the indices Python reports are exactly the frames decoded.

`VideoWriter` is the other direction: RGB frames piped into an encoder at an exact frame rate (H.264 by
default), and `mux_audio` copies a source's audio stream beside an encoded picture stream.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from fexdata.errors import IngestError


class VideoError(IngestError):
    """A video that cannot be probed or decoded; str(error) is the reason shown in the reject row."""


@dataclass(frozen=True)
class VideoInfo:
    width: int          # as decoded (after ffmpeg's automatic rotation)
    height: int
    fps: float
    duration: float     # seconds, NaN when the container does not say
    codec: str
    rate: Fraction      # exact frame rate used for index <-> time
    audio: str = ""     # codec of the first audio stream; empty when there is none

    @property
    def frame_count(self) -> int | None:
        """Expected number of frames from duration x fps (containers rarely store an exact count)."""
        if math.isnan(self.duration):
            return None
        return int(round(self.duration * self.fps))


@dataclass
class Frame:
    index: int          # position in the whole file, 0-based
    time: float         # seconds from the start of the file
    image: np.ndarray   # HxWx3 uint8 RGB


@dataclass
class DecodeReport:
    """Filled while iterating: how the decode ended, so callers can flag truncated files."""
    frames: int = 0
    expected: int | None = None
    error: str = ""     # ffmpeg's first error line, when it printed one

    @property
    def truncated(self) -> bool:
        """Fewer frames came out than the container promised (ffmpeg does not always complain)."""
        if self.expected is None:
            return bool(self.error)
        slack = 0 if self.error else max(2, int(0.02 * self.expected))  # durations are rounded
        return self.frames < self.expected - slack

    def describe(self) -> str:
        why = f": {self.error}" if self.error else ""
        return f"video is truncated or corrupt: decoded {self.frames} of {self.expected} frames{why}"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?(\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?)(k?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?)(k?) tbr")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, duration and codec of the first video stream. Raises VideoError."""
    path = Path(path)
    _check_file(path)
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    text = proc.stderr.decode("utf-8", errors="replace")
    stream = next((line for line in text.splitlines() if _VIDEO.search(line)), None)
    if stream is None:
        raise VideoError(_explain(text, default="no video stream found"))
    codec, w, h = _VIDEO.search(stream).groups()
    rate = _rate(stream)
    if rate is None:
        raise VideoError("video stream states no frame rate")
    width, height = int(w), int(h)
    rot = _ROTATION.search(text)
    if rot and round(abs(float(rot.group(1)))) % 180 == 90:
        width, height = height, width  # ffmpeg auto-rotates phone footage while decoding
    m = _DURATION.search(text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else float("nan")
    audio = next((m.group(1) for m in map(_AUDIO.search, text.splitlines()) if m), "")
    return VideoInfo(width, height, float(rate), duration, codec, rate, audio)


def frame_range(info: VideoInfo, start: float | None, end: float | None) -> tuple[int, int | None]:
    """[first, stop) frame indices of the segment [start, end) seconds; stop None means to the end.

    Frame i shows at time i/fps, so it belongs to the segment when start <= i/fps < end.
    """
    rate = info.rate
    first = 0 if not start else max(0, math.ceil(Fraction(start).limit_denominator(10**6) * rate - Fraction(1, 10**6)))
    stop = None if end is None else max(first, math.ceil(Fraction(end).limit_denominator(10**6) * rate - Fraction(1, 10**6)))
    return first, stop


def keep_frame(index: int, rate: Fraction, every: int = 1, fps: float | None = None) -> bool:
    """Whether subsampling keeps frame `index` (the Python twin of the ffmpeg `select` expression).

    `every` keeps frames whose index is a multiple of N; `fps` keeps the first frame of each 1/fps slot,
    i.e. frame i when floor(i * fps / rate) steps up. Both are pure integer arithmetic.
    """
    if every > 1 and index % every:
        return False
    if fps:
        num, den = _fps_ratio(fps, rate)
        if index > 0 and (index * num) // den == ((index - 1) * num) // den:
            return False
    return True


def iter_frames(path: str | os.PathLike, *, start: float | None = None, end: float | None = None,
                every: int = 1, fps: float | None = None, info: VideoInfo | None = None,
                report: DecodeReport | None = None) -> Iterator[Frame]:
    """Stream the frames of [start, end) (seconds), subsampled by `every` and/or `fps`.

    Raises VideoError when nothing could be decoded. A file that breaks off part-way yields the frames
    before the break and sets `report.truncated`, so the caller keeps the good frames and flags the file.
    """
    import ffmpeg  # ffmpeg-python: builds the command line

    path = Path(path)
    info = info or probe(path)
    if every < 1:
        raise ValueError("every must be >= 1")
    if fps is not None and fps <= 0:
        raise ValueError("fps must be > 0")
    first, stop = frame_range(info, start, end)
    report = report if report is not None else DecodeReport()
    total = info.frame_count
    last = min(x for x in (stop, total) if x is not None) if (stop, total) != (None, None) else None
    report.expected = None if last is None else sum(
        1 for i in range(first, last) if keep_frame(i, info.rate, every, fps))
    if stop is not None and stop <= first:
        return

    # One decoder thread: a worker's frames take longer to track than to decode, and ffmpeg's frame
    # threads (one per core by default) cost ~10 % more CPU and would contend with the other workers.
    # Decoding is bit-exact whatever the thread count.
    input_args = {"nostdin": None, "threads": 1}
    if first > 0:
        # Input seeking is fast (jumps to a keyframe) and accurate (ffmpeg drops decoded frames before the
        # target). Aim half a frame early so rounding of container timestamps cannot skip frame `first`.
        input_args["ss"] = f"{float((first - Fraction(1, 2)) / info.rate):.6f}"
    stream = ffmpeg.input(str(path), **input_args)
    expr = _select_expr(first, info.rate, every, fps)
    if expr:
        stream = stream.filter("select", expr)
    out_args = {"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough", "an": None, "sn": None}
    if stop is not None:
        out_args["frames:v"] = sum(1 for i in range(first, stop) if keep_frame(i, info.rate, every, fps))
        if out_args["frames:v"] == 0:
            return
    cmd = stream.output("pipe:", **out_args).global_args("-hide_banner", "-loglevel", "error").compile(cmd=ffmpeg_exe())

    frame_bytes = info.width * info.height * 3
    indices = _kept_indices(first, stop, info.rate, every, fps)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                bufsize=0)
        assert proc.stdout is not None
        _widen_pipe(proc.stdout.fileno(), frame_bytes)
        try:
            for index in indices:
                buf = np.empty(frame_bytes, dtype=np.uint8)
                if not _read_exact(proc.stdout, memoryview(buf)):
                    break
                report.frames += 1
                yield Frame(index, float(index / info.rate), buf.reshape(info.height, info.width, 3))
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()  # the caller stopped early (segment end, error): no need to decode the rest
            code = proc.wait()
            err.seek(0)
            text = err.read().decode("utf-8", errors="replace")
        if code not in (0, -9) and not report.error:
            report.error = _explain(text, default=f"ffmpeg exited with code {code}")
        elif text.strip() and not report.error:
            report.error = _explain(text, default="")
    if report.frames == 0:
        if report.error:
            raise VideoError(f"video is truncated or corrupt: no frame could be decoded ({report.error})")
        raise VideoError("video contains no frames")


def _widen_pipe(fd: int, frame_bytes: int) -> None:
    """Let the pipe hold a whole frame (Linux: 64 KB by default, up to 1 MB unprivileged): a 512x512 RGB
    frame then crosses in ~2 reads instead of ~15, and ffmpeg blocks less (~10 % less decode CPU)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), min(frame_bytes, 1 << 20))
    except (ImportError, OSError):
        pass  # not Linux, or a lower limit: the default pipe works, a little slower


H264 = ("-c:v", "libx264", "-crf", "18", "-preset", "veryfast")


class VideoWriter:
    """Encode RGB uint8 frames, streamed one by one, at exactly `rate` frames per second.

    Every frame written is one frame of the file (constant frame rate, no drops or duplicates), so a clip
    written back at its source's rate has the source's frame count and duration. `codec` holds ffmpeg's
    encoder arguments (H.264 at CRF 18 by default); H.264 gets yuv420p, the pixel format every player reads,
    or yuv444p when a side is odd (4:2:0 needs even sides). `close()` raises VideoError if ffmpeg failed.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, rate: Fraction | float,
                 codec: tuple[str, ...] = H264, container: str = "mp4") -> None:
        rate = Fraction(rate).limit_denominator(1001 * 1000)
        pix = []
        if "libx264" in codec:
            pix = ["-pix_fmt", "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"]
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-",
               *codec, *pix, "-f", container, str(path)]
        self.path, self.shape, self.frames = Path(path), (height, width, 3), 0
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape:
            raise ValueError(f"frame of shape {frame.shape} written to a {self.shape} video")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).data)
        except BrokenPipeError:
            self.close()  # raises with ffmpeg's reason
            raise
        self.frames += 1

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        code = self._proc.wait()
        self._err.seek(0)
        text = self._err.read().decode("utf-8", errors="replace")
        self._err.close()
        if code != 0:
            raise VideoError(f"ffmpeg could not encode {self.path.name}: {text.strip()[-300:] or f'exit code {code}'}")

    def abort(self) -> None:
        """Stop the encoder without finishing the file (the caller deletes it)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._err.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def mux_audio(video: str | os.PathLike, source: str | os.PathLike, dest: str | os.PathLike,
              container: str = "mp4") -> None:
    """Write `dest`: the picture stream of `video` and the audio streams of `source` (if any), both copied.

    An audio codec the container cannot hold as it is (PCM in MP4) is re-encoded to AAC instead.
    """
    base = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-i", str(source),
            "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy"]
    for audio in (["-c:a", "copy"], ["-c:a", "aac", "-b:a", "192k"]):
        proc = subprocess.run([*base, *audio, "-f", container, str(dest)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=3600)
        if proc.returncode == 0:
            return
    raise VideoError(f"ffmpeg could not add the audio of {Path(source).name}: "
                     f"{proc.stderr.decode('utf-8', errors='replace').strip()[-300:]}")


def _read_exact(stream, view: memoryview) -> bool:
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return False  # EOF: a partial frame at the end of a broken file is dropped
        got += n
    return True


def _kept_indices(first: int, stop: int | None, rate: Fraction, every: int, fps: float | None) -> Iterator[int]:
    i = first
    while stop is None or i < stop:
        if keep_frame(i, rate, every, fps):
            yield i
        i += 1


def _fps_ratio(fps: float, rate: Fraction) -> tuple[int, int]:
    ratio = Fraction(fps).limit_denominator(1001 * 1000) / rate
    return ratio.numerator, ratio.denominator


def _select_expr(first: int, rate: Fraction, every: int, fps: float | None) -> str:
    """ffmpeg `select` expression equal to keep_frame(first + n); n counts frames after the seek."""
    terms = []
    if every > 1:
        terms.append(f"not(mod(n+{first},{every}))")
    if fps:
        num, den = _fps_ratio(fps, rate)
        # Doubles hold these integer products exactly (< 2^53), so floor() agrees with Python's //.
        terms.append(f"(eq(n+{first},0)+gt(floor((n+{first})*{num}/{den}),floor((n+{first}-1)*{num}/{den})))")
    return "*".join(terms)


def _rate(stream_line: str) -> Fraction | None:
    for pattern in (_FPS, _TBR):
        m = pattern.search(stream_line)
        if m:
            value = float(m.group(1)) * (1000 if m.group(2) else 1)
            if value > 0:
                # 29.97 -> 30000/1001, 59.94 -> 60000/1001: the NTSC rates ffmpeg abbreviates.
                for base in (24, 30, 60, 120):
                    if abs(value - base * 1000 / 1001) < 0.006:
                        return Fraction(base * 1000, 1001)
                return Fraction(m.group(1)).limit_denominator(1000) * (1000 if m.group(2) else 1)
    return None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError("file does not exist")
    if path.is_dir():
        raise VideoError("is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError("file is empty (0 bytes)")


def _explain(ffmpeg_text: str, default: str) -> str:
    """ffmpeg's most telling error line, rephrased where a person would not know what it means."""
    lines = [re.sub(r"^\[[^\]]+\]\s*", "", ln).strip() for ln in ffmpeg_text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Input #", "Metadata", "Duration", "Stream #"))]
    for ln in lines:
        if "moov atom not found" in ln:
            return "not a complete video file (moov atom not found: truncated, still being written, or not an MP4)"
        if "prematurely" in ln or "end of file" in ln.lower():
            return "file ended prematurely"
        if "Invalid data found" in ln:
            return "not a readable video (invalid data)"
    for ln in lines:
        if any(word in ln.lower() for word in ("error", "invalid", "corrupt", "truncat", "missing", "not found")):
            return f"video is corrupt: {ln[:200]}"
    return (lines[0][:200] if lines and not default else default)
