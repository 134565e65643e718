"""One unit of ingest work: decode, find or track the face, align, write crops, then the unit's parts.

A worker process builds one `UnitProcessor` (dlib models load once) and runs units through it. Within a
unit, every input that fails becomes a reject row and the rest go on. Crops are encoded
(`fexdata.ingest.png`, ~3x cheaper than OpenCV's writer) and written by a small thread pool while the
next frames are tracked. Order of writes: crops, then the rejects part, then the records part, each
atomically; the records part is the unit's "done" marker, so a unit killed half-way is simply redone
(same names, same bytes) on the next run.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import cv2
import numpy as np

from fexdata.ingest import records as R
from fexdata.ingest.align import Alignment, Smoother, alignment_for, bbox_alignment, crop, pad_share, sharpness
from fexdata.ingest.faces import Face, FaceFinder, FaceTracker
from fexdata.images import ImageError, read_rgb
from fexdata.ingest.plan import IngestOptions, Unit
from fexdata.ingest.png import encode_png
from fexdata.paths import UnsafePath, resolve_inside
from fexdata.ingest.sources.base import Item
from fexdata.ingest.video import DecodeReport, VideoError, iter_frames, keep_frame, probe


@dataclass
class UnitResult:
    unit_id: str
    items: int
    records: int = 0
    frames: int = 0                  # frames/stills that produced crops
    no_face_frames: int = 0          # video/sequence frames without a face (not rejects)
    rejects: dict[str, int] = field(default_factory=dict)   # category -> count
    tracker: dict[str, int] = field(default_factory=dict)   # detect_full / detect_region / track / lost


@dataclass
class _Ctx:
    """What every record of one item shares."""
    unit: Unit
    item: Item
    root: Path

    @functools.cached_property
    def base(self) -> dict[str, Any]:
        it = self.item
        return {"source": it.source, "source_root": self.unit.source.given, "item": it.key,
                "identity": it.identity, "affect": it.affect, "affect_raw": it.affect_raw,
                "intensity": float("nan") if it.intensity is None else float(it.intensity),
                "extra": json.dumps(dict(it.extra), sort_keys=True) if it.extra else "{}"}


class UnitProcessor:
    """Runs units; `io_threads` crop writers beside the calling thread (see fexdata.threads.ingest_plan).

    OpenCV runs single-threaded while a processor is open: its calls here take 0.1-0.5 ms, where its
    thread pool only adds hand-offs, and the worker's share of the cores goes to the crop writers and
    the ffmpeg decoder instead. `close` restores the caller's setting.
    """

    def __init__(self, out: Path, options: IngestOptions, io_threads: int = 1, finder: FaceFinder | None = None) -> None:
        self.out = Path(out)
        self.options = options
        self.finder = finder or make_finder(options)
        self._cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="fex-crop-writer")
        self._png = None if options.png_compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(options.png_compression)]
        self._dirs: set[Path] = set()   # crop folders known to exist (one mkdir each, not one per crop)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        cv2.setNumThreads(self._cv2_threads)

    # -- one unit -------------------------------------------------------------------------------------

    def run(self, unit: Unit) -> UnitResult:
        w = _UnitWriter(self, unit)
        for item in unit.items:
            ctx = _Ctx(unit, item, unit.source.root)
            try:
                if item.kind == "image":
                    self._still(ctx, w)
                elif item.kind == "video":
                    self._track(ctx, w, self._video_frames(ctx, w))
                elif item.kind == "sequence":
                    if not item.frames:
                        w.reject(ctx, item.path, R.BAD_IMAGE, "image sequence has no frames")
                    else:
                        self._track(ctx, w, self._sequence_frames(ctx, w))
                else:
                    w.reject(ctx, item.path, R.ERROR, f"unknown item kind {item.kind!r}")
            except UnsafePath:
                w.reject(ctx, item.path, R.UNSAFE_PATH, "path escapes the dataset root")
            except ImageError as exc:
                w.reject(ctx, item.path, R.BAD_IMAGE, str(exc))
            except VideoError as exc:
                w.reject(ctx, item.path, R.BAD_VIDEO, str(exc))
            except Exception as exc:  # never let one input stop the run; say what happened
                w.reject(ctx, item.path, R.ERROR, f"{type(exc).__name__}: {exc}")
        return w.finish()

    # -- input kinds ----------------------------------------------------------------------------------

    def _still(self, ctx: _Ctx, w: _UnitWriter) -> None:
        path = resolve_inside(ctx.item.path, ctx.root)
        image = read_rgb(path, max_pixels=self.options.max_pixels)
        face = self.finder.find(image, precropped=ctx.item.precropped)
        if face is None:
            hint = "; if the images are face crops already, use --fallback frame" \
                if self.options.fallback != "frame" else ""
            w.reject(ctx, ctx.item.path, R.NO_FACE, f"no face found ({self.options.detector} detector){hint}")
            return
        face, al = still_alignment(face, self.options.align, self.options.zoom)
        w.emit(ctx, _Frame(ctx.item.path, None, float("nan"), image), face, al)
        w.result.frames += 1

    def _video_frames(self, ctx: _Ctx, w: _UnitWriter) -> Iterator[_Frame]:
        """The video's decoded frames; one that breaks off part-way keeps the frames before the break and
        is flagged with a reject row once they are read."""
        path = resolve_inside(ctx.item.path, ctx.root)
        info = probe(path)
        report = DecodeReport()
        try:
            for f in iter_frames(path, start=ctx.item.start, end=ctx.item.end, every=self.options.every,
                                 fps=self.options.fps, info=info, report=report):
                yield _Frame(ctx.item.path, f.index, f.time, f.image)
        except VideoError:
            if report.frames == 0:
                raise
        if report.truncated:
            w.reject(ctx, ctx.item.path, R.TRUNCATED_VIDEO,
                     report.describe() + "; the frames before the break were kept")

    def _sequence_frames(self, ctx: _Ctx, w: _UnitWriter) -> Iterator[_Frame | None]:
        """The sequence's kept frames, read; an unreadable one becomes a reject row and a None (a hole)."""
        rate = Fraction(ctx.item.fps or self.options.sequence_fps).limit_denominator(1001 * 1000)
        for index, rel in enumerate(ctx.item.frames):
            if not keep_frame(index, rate, self.options.every, self.options.fps):
                continue
            try:
                image = read_rgb(resolve_inside(rel, ctx.root), max_pixels=self.options.max_pixels)
            except (ImageError, UnsafePath) as exc:
                reason = "path escapes the dataset root" if isinstance(exc, UnsafePath) else str(exc)
                w.reject(ctx, rel, R.UNSAFE_PATH if isinstance(exc, UnsafePath) else R.BAD_IMAGE, reason)
                yield None
                continue
            yield _Frame(rel, index, float(index / rate), image)

    # -- shared steps ---------------------------------------------------------------------------------

    def _track(self, ctx: _Ctx, w: _UnitWriter, frames: Iterable[_Frame | None]) -> None:
        """Track the face through a video's or sequence's frames and crop them in runs (see emit_batch); a None
        frame is a hole, not tracked or smoothed across. An item whose frames show no face is rejected."""
        tracker = FaceTracker(self.finder, self.options.redetect_every)
        smoother: Smoother = Smoother(self.options.smooth)
        ready: list = []
        seen, before = 0, len(w.rows)

        def emit_ready() -> None:
            for (frame, face), al in ready:
                w.emit(ctx, frame, face, al)
            ready.clear()

        for frame in frames:
            if frame is None:
                tracker.reset()
                ready.extend(smoother.flush())
                continue
            seen += 1
            ready.extend(self._track_one(frame, tracker, smoother, w.result))
            if len(ready) >= emit_batch(frame.image):
                emit_ready()
        ready.extend(smoother.flush())
        emit_ready()
        _merge(w.result.tracker, tracker.stats)
        if seen and len(w.rows) == before:
            w.reject(ctx, ctx.item.path, R.NO_FACE,
                     f"no face found in any of {seen} frames ({self.options.detector} detector)")

    def _track_one(self, frame: _Frame, tracker: FaceTracker, smoother: Smoother, result: UnitResult) -> list:
        """Track the face into this frame -> the frames whose smoothed alignment is now final."""
        gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        face = tracker.update(frame.image, gray)
        if face is None:
            result.no_face_frames += 1
            return smoother.flush()
        result.frames += 1
        al = alignment_for(self.options.align, face.landmarks, face.box, self.options.zoom)  # type: ignore[arg-type]
        return smoother.push((frame, face), al, cut=tracker.last_was_cut)

    def submit_png(self, dest: Path, rgb: np.ndarray) -> Future:
        return self._pool.submit(self._write_png, dest, rgb)

    def _write_png(self, dest: Path, rgb: np.ndarray) -> None:
        """Encode and write one crop: a temp name in the same folder, then an atomic rename.

        A process killed at any moment leaves either the whole crop or only a temp file, which the next
        run sweeps. `_UnitWriter.finish` flushes the unit's crops and their folders at once before writing the part
        that lists them (an fsync here, crop by crop, waited on the disk for each: docs/ingest.md).
        """
        if self._png is None:
            data = encode_png(rgb)
        else:  # an explicit zlib level: OpenCV's writer, which tries every row filter
            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self._png)
            if not ok:
                raise RuntimeError(f"could not encode {dest}")
            data = buf.tobytes()
        if dest.parent not in self._dirs:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(dest.parent)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()


class _Frame(NamedTuple):
    """One frame to crop: its source file, index (None for a still), time in seconds and pixels."""
    src: str
    index: int | None
    time: float
    image: np.ndarray


class _UnitWriter:
    """One unit's output while it runs: its record and reject rows, the crop writes in flight and its counts.

    The input kinds add to it; `finish` writes the unit's parts in the order the module docstring gives.
    """

    def __init__(self, processor: UnitProcessor, unit: Unit) -> None:
        self._proc = processor
        self.result = UnitResult(unit.id, len(unit.items))
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self._pending: list[Future] = []

    def reject(self, ctx: _Ctx, src: str, category: str, reason: str) -> None:
        self.rejects.append(R.reject_row(ctx.item.source, ctx.unit.source.given, src, ctx.item.key, category, reason))

    def emit(self, ctx: _Ctx, frame: _Frame, face: Face, al: Alignment) -> None:
        """Crop the face at every size, queue the crops' writes and add their record rows."""
        opts = self._proc.options
        h, w = frame.image.shape[:2]
        base = ctx.base
        landmarks = face.landmarks.reshape(-1).astype(np.float32).tolist()
        padded = pad_share(al, w, h)
        crops = crop(frame.image, al, opts.sizes, opts.pad)  # type: ignore[arg-type]
        for size, (img, m) in sorted(crops.items()):
            rel = R.crop_relpath(size, ctx.item.source, ctx.item.identity, ctx.item.key, frame.index)
            self._pending.append(self._proc.submit_png(self._proc.out / rel, img))
            self.rows.append({**base, "image": rel, "crop_size": size, "source_path": frame.src,
                              "frame": frame.index, "time": frame.time, "bbox": [float(v) for v in face.box],
                              "det_score": face.score, "face_count": face.face_count, "landmarks": landmarks,
                              "transform": m.reshape(-1).tolist(), "sharpness": sharpness(img), "pad_share": padded,
                              "align": "frame" if face.detector == "frame" else opts.align,
                              "detector": face.detector,
                              "frame_width": w, "frame_height": h})
        if len(self._pending) > 64:  # bound the crops waiting in memory
            for fut in self._pending[:32]:
                fut.result()
            del self._pending[:32]

    def finish(self) -> UnitResult:
        out = self._proc.out
        for fut in self._pending:
            fut.result()  # every crop is written before the part that lists it ...
        self._pending.clear()
        _fsync([out / r["image"] for r in self.rows])  # ... and flushed, with their folders
        if self.rejects:
            R.write_part(out / R.REJECTS_DIR / R.part_name(self.result.unit_id), self.rejects, R.REJECTS)
        R.write_part(out / R.RECORDS_DIR / R.part_name(self.result.unit_id), self.rows, R.RECORDS)
        self.result.records = len(self.rows)
        for rj in self.rejects:
            self.result.rejects[rj["category"]] = self.result.rejects.get(rj["category"], 0) + 1
        return self.result


FSYNC_THREADS = 16  # fsyncs in flight at once: each mostly waits on the disk, so together they overlap


def _fsync(files: list[Path]) -> None:
    """Flush these files, then their folders (the renames): only what fex wrote, where os.sync flushed every
    write on the machine, other users' included. One after another they cost a disk round trip each."""
    with ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="fex-fsync") as pool:
        list(pool.map(_fsync_path, sorted(set(files))))
    for folder in sorted({f.parent for f in files}):
        _fsync_path(folder)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def still_alignment(face: Face, align: str, zoom: float = 1.0) -> tuple[Face, Alignment]:
    """The alignment of a still's face; a whole-image fallback face is kept as it is, without landmarks,
    since the predictor's guess inside a box nobody detected is not a measurement."""
    if face.detector == "frame":
        return dataclasses.replace(face, landmarks=np.full_like(face.landmarks, np.nan)), bbox_alignment(face.box, margin=0.0)
    return face, alignment_for(align, face.landmarks, face.box, zoom)  # type: ignore[arg-type]


EMIT_BATCH_FRAMES = 64          # frames tracked before their crops are made ...
EMIT_BATCH_BYTES = 64 << 20     # ... fewer for large frames: at most this much of them held (10 at 1080p)


def emit_batch(frame: np.ndarray) -> int:
    """How many tracked frames to hold before cropping them.

    Tracking a run of frames and then cropping the run, rather than each frame in turn, spares 12-20 %
    of the CPU: dlib's shape predictor reads ~4 MB of its model per face and walks much the same trees
    for consecutive frames of a face, which then stay in the caches instead of being pushed out by the
    warp and PNG buffers between calls. On the benchmark clip (512 px, one thread, landmarks + crop +
    PNG) 3.7 ms per frame one by one, 2.9 in runs of 16, 2.5 in runs of 64; all of `fex ingest`, 8.0
    -> 7.0 CPU ms per frame (docs/ingest.md). Outputs are the same: the same work in another order.
    """
    return max(1, min(EMIT_BATCH_FRAMES, EMIT_BATCH_BYTES // max(1, frame.nbytes)))


def _merge(into: dict[str, int], stats: dict[str, int]) -> None:
    for k, v in stats.items():
        into[k] = into.get(k, 0) + v


def make_finder(options: IngestOptions) -> FaceFinder:
    return FaceFinder(options.detector, options.landmarks, options.fan_weights, options.fallback)  # type: ignore[arg-type]


# -- process-pool plumbing ----------------------------------------------------------------------------------

_PROCESSOR: UnitProcessor | None = None


def init_worker(out: str, options: IngestOptions, owner_pid: int, io_threads: int = 1) -> None:
    """Pool initializer: models loaded once per worker and kept for every unit it runs; the worker exits
    when the ingest process that owns the pool is gone (a SIGKILL leaves no worker writing into OUT, nor
    a fork server waiting on it)."""
    global _PROCESSOR
    _exit_when_gone(owner_pid)
    _PROCESSOR = UnitProcessor(Path(out), options, io_threads)


def run_unit(unit: Unit) -> UnitResult:
    assert _PROCESSOR is not None, "init_worker was not called"
    return _PROCESSOR.run(unit)


def _exit_when_gone(pid: int, poll_s: float = 0.2) -> None:
    """Watch `pid` from a daemon thread and end this process at once when it has exited.

    Workers are forked by multiprocessing's fork server, not by the ingest process, so the kernel's
    parent-death signal would watch the wrong process; polling the owner works for every start method.
    A zombie (killed, not yet reaped) counts as gone.
    """
    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except OSError:
            return True  # no procfs (macOS): os.kill alone

    def watch() -> None:
        while alive():
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="fex-owner-watch", daemon=True).start()
