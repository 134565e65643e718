"""Edit one video into every pending target in a single decoding pass.

Frames are decoded with ffmpeg (fexdata.ingest.video.iter_frames), the face is tracked and its alignment
smoothed over time exactly as `fex ingest` does (FaceTracker, Smoother with the run's recipe), the faces
of a batch of frames go through the model together for all targets, are pasted back, and every frame is
piped to one H.264 encoder per target at the source's exact frame rate: the output has the source's
frame count and duration, and the source's audio is copied in at the end. Frames outside `--start/--end`,
frames without a face, and frames a schedule leaves alone are written unchanged (and counted). Each
output is encoded to a temp file and muxed into place atomically, then the grid is written, and last the
parts (the outputs' "done" marks); a truncated source (fewer frames than its container promised) or one
with no face at all is rejected and leaves no output.

Estimated source affects are smoothed over the frames of one track (an exponential average of the
probabilities, reset at every cut), so the source condition does not flicker with the estimate's noise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fexdata.ingest import records as R
from fexdata.ingest.align import Smoother, alignment_for
from fexdata.ingest.faces import Face, FaceTracker
from fexdata.ingest.video import DecodeReport, VideoError, VideoInfo, VideoWriter, frame_range, iter_frames, mux_audio, probe
from fexdata.images import write_png
from fexdata.paths import atomic_path
from fextrain.edit.context import EditContext, Rejected
from fextrain.edit.faces import FaceCrop, aligned_face
from fextrain.edit.inputs import EditInput
from fextrain.edit.outputs import (crop_path, drop_stale_parts, face_region, grid_path, output_path, part_path,
                                   write_grid)
from fextrain.edit.paste import sharpness_ratio
from fextrain.edit.table import edit_row, write_part
from fextrain.edit.targets import Target

SOURCE_EMA = 0.3   # weight of the newest frame in the smoothed source-affect probabilities


@dataclass
class VideoStats:
    frames: int = 0
    edited: int = 0          # frames with a face inside the time range
    no_face: int = 0         # frames inside the range without a face (passed through)
    outside: int = 0         # frames outside --start/--end (passed through)


@dataclass
class _Frame:
    index: int
    time: float
    image: np.ndarray
    face: Face | None = None
    alignment: object = None
    cut: bool = False


@dataclass
class _Pass:
    """State of one decoding pass over a video."""
    ctx: EditContext
    item: EditInput
    targets: list[Target]
    writers: dict[str, VideoWriter]
    grid_at: int
    rows: dict[str, list] = field(default_factory=dict)
    stats: VideoStats = field(default_factory=VideoStats)
    grid: tuple[int, np.ndarray, tuple] | None = None  # frame index, source image, face box
    _probs: np.ndarray | None = None

    def process(self, batch: list[_Frame]) -> None:
        """Edit the faces of `batch` for every target and write every frame of it, in order."""
        ctx, item = self.ctx, self.item
        with_face = [f for f in batch if f.face is not None]
        faces: list[FaceCrop] = [aligned_face(f.image, f.face, f.alignment, ctx.recipe, ctx.size) for f in with_face]
        outputs: dict[str, dict[int, np.ndarray]] = {t.name: {} for t in self.targets}
        if faces:
            crops = np.stack([fc.image for fc in faces])
            src = self._sources(crops, with_face)
            jobs = [(ti, fi, vec) for ti, t in enumerate(self.targets) for fi, f in enumerate(with_face)
                    if (vec := t.vector_at(f.time)) is not None]
            if jobs:
                generated = ctx.model.edit(crops[[fi for _, fi, _ in jobs]], src.vectors[[fi for _, fi, _ in jobs]],
                                           np.asarray([v for _, _, v in jobs], np.float32))
                for (ti, fi, vec), gen in zip(jobs, generated):
                    target, frame, face = self.targets[ti], with_face[fi], faces[fi]
                    pasted = outputs[target.name][frame.index] = ctx.paste_faces(frame.image, [face], [gen])
                    rel = output_path(ctx.out, item, target).relative_to(ctx.out).as_posix()
                    self.rows.setdefault(target.name, []).append(edit_row(
                        item.shown, "video", frame.index, frame.time, face, src.names[fi], src.confidence[fi], src.by,
                        target.name, vec, rel, sharpness_ratio(frame.image, pasted, face.box)))
                    if ctx.crops:
                        write_png(crop_path(ctx.out, item, frame.index, 0, target.name), gen)
            if ctx.crops:
                for frame, face in zip(with_face, faces):
                    write_png(crop_path(ctx.out, item, frame.index, 0, "source"), face.image)
            self._keep_grid(with_face)
        for frame in batch:
            for target in self.targets:
                self.writers[target.name].write(outputs[target.name].get(frame.index, frame.image))

    def _sources(self, crops: np.ndarray, frames: list[_Frame]):
        sources = self.ctx.sources
        if not sources.estimating or self.item.affect is not None:
            return sources.decide(crops, self.item.affect)
        probs, by = sources.probs(crops)
        smoothed = np.empty_like(probs)
        for i, frame in enumerate(frames):
            prev = None if frame.cut else self._probs
            self._probs = probs[i] if prev is None else SOURCE_EMA * probs[i] + (1 - SOURCE_EMA) * prev
            smoothed[i] = self._probs
        return sources.decide(crops, None, smoothed, by)

    def _keep_grid(self, frames: list[_Frame]) -> None:
        """Keep the first face frame at or after the middle of the range (or the last one before it)."""
        for frame in frames:
            if self.grid is None or self.grid[0] < self.grid_at:
                self.grid = (frame.index, frame.image, frame.face.box)


def edit_video(ctx: EditContext, item: EditInput, pending: list[Target], targets: list[Target],
               sig: str) -> tuple[int, VideoStats]:
    """Write the outputs of `pending`; returns (outputs written, frame counts). Raises Rejected, VideoError."""
    info = probe(item.path)
    first, stop = frame_range(info, ctx.start, ctx.end)
    total = info.frame_count
    last = min(x for x in (stop, total) if x is not None) if (stop, total) != (None, None) else first
    folder = output_path(ctx.out, item, pending[0]).parent
    folder.mkdir(parents=True, exist_ok=True)
    temps = {t.name: folder / f".{t.name}.{os.getpid()}.video.tmp" for t in pending}
    writers = {t.name: VideoWriter(temps[t.name], info.width, info.height, info.rate) for t in pending}
    run = _Pass(ctx, item, pending, writers, grid_at=(first + last) // 2)
    report = DecodeReport()
    try:
        _decode(run, info, first, stop, report)
        for w in writers.values():
            w.close()
        if report.truncated:
            raise Rejected(R.TRUNCATED_VIDEO, report.describe())
        if not run.stats.edited:
            raise Rejected(R.NO_FACE, f"no face found in any of {run.stats.frames - run.stats.outside} frames "
                                      f"({ctx.recipe.detector} detector)")
        for target in pending:
            dest = output_path(ctx.out, item, target)
            with atomic_path(dest) as tmp:
                mux_audio(temps[target.name], item.path, tmp)
    finally:
        for w in writers.values():
            w.abort()
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()  # a rejected video leaves nothing behind
    _write_grid(ctx, item, targets, run, info)
    for target in pending:
        write_part(part_path(ctx.out, item, target, sig), run.rows.get(target.name, []))
        drop_stale_parts(ctx.out, item, target, sig)
    return len(pending), run.stats


def _decode(run: _Pass, info: VideoInfo, first: int, stop: int | None, report: DecodeReport) -> None:
    ctx = run.ctx
    tracker = FaceTracker(ctx.finder, ctx.recipe.redetect_every)
    smoother: Smoother = Smoother(ctx.recipe.smooth)
    batch: list[_Frame] = []
    faces_in_batch = 0
    bar = tqdm(total=info.frame_count, desc=run.item.key, unit="frame", leave=False, disable=not ctx.progress,
               dynamic_ncols=True)

    def emit(ready: list) -> None:
        nonlocal faces_in_batch
        for frame, al in ready:
            frame.alignment = al
            batch.append(frame)
            faces_in_batch += 1

    try:
        for decoded in iter_frames(run.item.path, info=info, report=report):
            run.stats.frames += 1
            bar.update(1)
            frame = _Frame(decoded.index, decoded.time, decoded.image)
            inside = first <= decoded.index and (stop is None or decoded.index < stop)
            face = tracker.update(frame.image, cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)) if inside else None
            if face is None:
                # Passed through: flush the smoother first, so frames stay in order.
                emit(smoother.flush())
                batch.append(frame)
                if inside:
                    run.stats.no_face += 1
                else:
                    run.stats.outside += 1
                    tracker.reset()
            else:
                run.stats.edited += 1
                frame.face, frame.cut = face, tracker.last_was_cut
                al = alignment_for(ctx.recipe.align, face.landmarks, face.box, ctx.recipe.zoom)  # type: ignore[arg-type]
                emit(smoother.push(frame, al, cut=tracker.last_was_cut))
            if faces_in_batch >= ctx.model.batch or len(batch) >= 4 * ctx.model.batch:
                run.process(batch)
                batch, faces_in_batch = [], 0
    except VideoError:
        if report.frames == 0:
            raise
    finally:
        bar.close()
    emit(smoother.flush())
    run.process(batch)


def _write_grid(ctx: EditContext, item: EditInput, targets: list[Target], run: _Pass, info: VideoInfo) -> None:
    if run.grid is None:
        return
    index, source, box = run.grid
    tiles = [(f"source f{index}", source)]
    # Every tile is read back from its finished video, whichever run wrote it, so that a run resumed after a
    # kill draws the same grid as an uninterrupted one (a frame still in memory is not what H.264 kept).
    for target in targets:
        if output_path(ctx.out, item, target).is_file():
            frame = frame_at(output_path(ctx.out, item, target), index, info)
            if frame is not None:
                tiles.append((target.name, frame))
    write_grid(grid_path(ctx.out, item), tiles, face_region([box], source.shape))


def frame_at(path: Path, index: int, info: VideoInfo) -> np.ndarray | None:
    """Frame `index` of a video with `info`'s frame rate (None if it has no such frame)."""
    start = float(index / info.rate)
    try:
        for frame in iter_frames(path, start=start, end=start + float(1 / info.rate) * 0.999 + 1e-6):
            return frame.image
    except VideoError:
        return None
    return None

