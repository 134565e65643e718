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
probabilities, reset at every cut), so the source condition does not flicker with the estimate's noise; so is
what the model adds to each face (a warping model's fields, another's change to the crop), so the edit does
not flicker with the alignment's noise.

`--faces all` and `--face N|x,y` follow every face with its own tracker (fextrain.edit.faces.FaceTracks),
each track with its own alignment smoother and source average; a frame is edited once every face of it has
its smoothed alignment. The faces of one frame are pasted in the order of their track numbers, so where two
masks overlap the higher-numbered face lies on top, the same way in every run. `--face X,Y` picks the track
whose box holds the point in the first frame of the range that shows a face.
"""
from __future__ import annotations

import os
from collections import deque
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
from fextrain.edit.faces import FaceChoice, FaceCrop, FaceTracks, aligned_face
from fextrain.edit.inputs import EditInput
from fextrain.edit.outputs import (crop_path, drop_stale_parts, face_region, grid_path, output_path, part_path,
                                   write_grid)
from fextrain.edit.paste import sharpness_ratio
from fextrain.edit.table import edit_row, write_part
from fextrain.edit.targets import Target

# Weight of the newest frame in the per-track average of the estimated source-affect probabilities (that of what
# the model adds to each face, a warping model's fields, else the crop's change, is `EditContext.steady`).
SOURCE_EMA = 0.3


class _Average:
    """Exponential averages over the consecutive frames of a track, one per key; each restarts at a cut or
    after a frame without its face."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self._last: dict = {}   # key -> (frame index, average)

    def __call__(self, key, index: int, cut: bool, value: np.ndarray) -> np.ndarray:
        prev = self._last.get(key)
        if prev is not None and not cut and index == prev[0] + 1:
            value = self.weight * value + (1 - self.weight) * prev[1]
        self._last[key] = (index, value)
        return value


@dataclass
class VideoStats:
    frames: int = 0
    edited: int = 0          # frames with a face edited, inside the time range
    no_face: int = 0         # frames inside the range without a face (passed through)
    outside: int = 0         # frames outside --start/--end (passed through)
    tracks: int = 0          # faces followed and edited (one per video unless --faces all)


@dataclass
class _Frame:
    index: int
    time: float
    image: np.ndarray
    # The faces edited in this frame: track number -> [face, cut, smoothed alignment (None until known)].
    faces: dict[int, list] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(al is not None for _, _, al in self.faces.values())


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
    grid: tuple[int, np.ndarray, list] | None = None  # frame index, source image, face boxes
    _sources_avg: _Average = field(default_factory=lambda: _Average(SOURCE_EMA))   # per track
    _edits_avg: _Average = field(init=False)                                         # per (target, track)
    follow: _Follow | None = None

    def __post_init__(self) -> None:
        self._edits_avg = _Average(self.ctx.steady)

    def process(self, batch: list[_Frame]) -> None:
        """Edit the faces of `batch` for every target and write every frame of it, in order."""
        ctx, item = self.ctx, self.item
        # One entry per face: (frame, track, cut), in frame order, then track order within a frame.
        entries = [(f, n, cut) for f in batch for n, (_, cut, _) in f.faces.items()]
        faces: list[FaceCrop] = [aligned_face(f.image, f.faces[n][0], f.faces[n][2], ctx.recipe, ctx.size, n)
                                 for f, n, _ in entries]
        outputs: dict[str, dict[int, np.ndarray]] = {t.name: {} for t in self.targets}
        if faces:
            crops = np.stack([fc.image for fc in faces])
            src = self._sources(crops, entries)
            jobs = [(ti, ei, vec) for ti, t in enumerate(self.targets) for ei, (f, _, _) in enumerate(entries)
                    if (vec := t.vector_at(f.time)) is not None]
            if jobs:
                batch_in = (crops[[ei for _, ei, _ in jobs]], src.vectors[[ei for _, ei, _ in jobs]],
                            np.asarray([v for _, _, v in jobs], np.float32))
                generated, fields = (ctx.model.edit_with_fields(*batch_in) if ctx.warp
                                     else (ctx.model.edit(*batch_in), [None] * len(jobs)))
                self._steady(jobs, entries, crops, generated, fields)
                # Per (target, frame), its faces' jobs in track order: pasted together into one output frame.
                per_frame: dict[tuple[int, int], list] = {}
                for (ti, ei, vec), gen, field in zip(jobs, generated, fields):
                    per_frame.setdefault((ti, entries[ei][0].index), []).append((ei, vec, gen, field))
                for (ti, _), done in per_frame.items():
                    target, frame = self.targets[ti], entries[done[0][0]][0]
                    pasted = outputs[target.name][frame.index] = ctx.paste_faces(
                        frame.image, [faces[ei] for ei, *_ in done], [gen for _, _, gen, _ in done],
                        [field for *_, field in done] if ctx.warp else None)
                    rel = output_path(ctx.out, item, target).relative_to(ctx.out).as_posix()
                    for ei, vec, gen, _ in done:
                        face = faces[ei]
                        self.rows.setdefault(target.name, []).append(edit_row(
                            item.shown, "video", frame.index, frame.time, face, src.names[ei], src.confidence[ei],
                            src.by, target.name, vec, rel, sharpness_ratio(frame.image, pasted, face.box)))
                        if ctx.crops:
                            write_png(crop_path(ctx.out, item, frame.index, face.index, target.name), gen)
            if ctx.crops:
                for (frame, _, _), face in zip(entries, faces):
                    write_png(crop_path(ctx.out, item, frame.index, face.index, "source"), face.image)
            self._keep_grid([f for f in batch if f.faces])
        for frame in batch:
            for target in self.targets:
                self.writers[target.name].write(outputs[target.name].get(frame.index, frame.image))

    def _sources(self, crops: np.ndarray, entries: list[tuple[_Frame, int, bool]]):
        sources = self.ctx.sources
        if not sources.estimating or self.item.affect is not None:
            return sources.decide(crops, self.item.affect)
        probs, by = sources.probs(crops)
        smoothed = np.stack([self._sources_avg(track, frame.index, cut, p)
                             for p, (frame, track, cut) in zip(probs, entries)])
        return sources.decide(crops, None, smoothed, by)

    def _steady(self, jobs: list, entries: list, crops: np.ndarray, generated: np.ndarray, fields: list) -> None:
        """Average what the model adds to each face over the frames of its track, per target, in place: the
        model's answer to a face moves with alignment noise from frame to frame, which pasted back is a flicker
        inside the face. A warping model's fields are averaged, another model's change to the crop."""
        for j, (ti, ei, _) in enumerate(jobs):
            frame, track, cut = entries[ei]
            if self.ctx.warp:
                fields[j] = self._edits_avg((ti, track), frame.index, cut, fields[j])
            else:
                change = self._edits_avg((ti, track), frame.index, cut, generated[j].astype(np.float32) - crops[ei])
                generated[j] = np.clip(np.rint(crops[ei] + change), 0, 255).astype(np.uint8)

    def _keep_grid(self, frames: list[_Frame]) -> None:
        """Keep the first face frame at or after the middle of the range (or the last one before it)."""
        for frame in frames:
            if self.grid is None or self.grid[0] < self.grid_at:
                self.grid = (frame.index, frame.image, [face.box for face, _, _ in frame.faces.values()])


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
            assert run.follow is not None
            raise Rejected(R.NO_FACE, f"{run.follow.missing(run.stats.frames - run.stats.outside)} "
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


class _Follow:
    """The faces to edit in each frame: ingest's one tracked face (`largest`, numbered 0), or every face
    tracked (FaceTracks), of which the choice keeps all or one."""

    def __init__(self, ctx: EditContext, item: EditInput) -> None:
        self.choice, self.item = FaceChoice.parse(ctx.faces), item
        self.tracks = FaceTracks(ctx.finder, ctx.recipe.redetect_every) if self.choice.tracks_all else None
        self.tracker = FaceTracker(ctx.finder, ctx.recipe.redetect_every)
        self.picked = self.choice.index           # --face X,Y: decided in the first frame with a face
        self.edited: set[int] = set()

    def reset(self) -> None:
        (self.tracks or self.tracker).reset()

    def update(self, frame: _Frame) -> dict[int, tuple[Face, bool]]:
        gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        if self.tracks is None:
            face = self.tracker.update(frame.image, gray)
            faces = {} if face is None else {0: (face, self.tracker.last_was_cut)}
        else:
            faces = self.tracks.update(frame.image, gray)
            if self.choice.mode == "point" and self.picked is None and faces:
                self.picked = self.choice.pick({n: f.box for n, (f, _) in faces.items()},
                                               f"frame {frame.index} of {self.item.shown}, its first with a face")
            if self.choice.mode != "all":
                faces = {n: v for n, v in faces.items() if n == self.picked}
        self.edited.update(faces)
        return faces

    def missing(self, frames: int) -> str:
        """Why no face was edited in `frames` frames, for the reject reason."""
        if self.tracks is not None and self.choice.mode == "index" and self.tracks.count:
            return f"no face {self.picked} in {frames} frames (its faces are numbered 0 to {self.tracks.count - 1})"
        return f"no face found in any of {frames} frames"


def _decode(run: _Pass, info: VideoInfo, first: int, stop: int | None, report: DecodeReport) -> None:
    ctx = run.ctx
    follow = run.follow = _Follow(ctx, run.item)
    smoothers: dict[int, Smoother] = {}       # one per track being followed
    waiting: deque[_Frame] = deque()          # decoded, some face's smoothed alignment still unknown
    batch: list[_Frame] = []
    faces_in_batch = 0
    bar = tqdm(total=info.frame_count, desc=run.item.key, unit="frame", leave=False, disable=not ctx.progress,
               dynamic_ncols=True)

    def settle(ready: list) -> None:
        nonlocal faces_in_batch
        for (frame, track), al in ready:
            frame.faces[track][2] = al
        while waiting and waiting[0].ready:   # frames leave in order, once each of their faces is aligned
            frame = waiting.popleft()
            batch.append(frame)
            faces_in_batch += len(frame.faces)

    try:
        for decoded in iter_frames(run.item.path, info=info, report=report):
            run.stats.frames += 1
            bar.update(1)
            frame = _Frame(decoded.index, decoded.time, decoded.image)
            inside = first <= decoded.index and (stop is None or decoded.index < stop)
            faces = follow.update(frame) if inside else {}
            if not inside:
                follow.reset()
            for track in [t for t in smoothers if t not in faces]:
                settle(smoothers.pop(track).flush())   # a track that ended: its frames are final
            frame.faces = {track: [face, cut, None] for track, (face, cut) in faces.items()}
            waiting.append(frame)
            for track, (face, cut) in faces.items():
                al = alignment_for(ctx.recipe.align, face.landmarks, face.box, ctx.recipe.zoom)  # type: ignore[arg-type]
                smoother = smoothers.setdefault(track, Smoother(ctx.recipe.smooth))
                settle(smoother.push((frame, track), al, cut=cut))
            settle([])
            if faces:
                run.stats.edited += 1
            elif inside:
                run.stats.no_face += 1   # passed through
            else:
                run.stats.outside += 1
            if faces_in_batch >= ctx.model.batch or len(batch) >= 4 * ctx.model.batch:
                run.process(batch)
                batch, faces_in_batch = [], 0
    except VideoError:
        if report.frames == 0:
            raise
    finally:
        bar.close()
    for smoother in smoothers.values():
        settle(smoother.flush())
    run.process(batch)
    run.stats.tracks = len(follow.edited)


def _write_grid(ctx: EditContext, item: EditInput, targets: list[Target], run: _Pass, info: VideoInfo) -> None:
    if run.grid is None:
        return
    index, source, boxes = run.grid
    tiles = [(f"source f{index}", source)]
    # Every tile is read back from its finished video, whichever run wrote it, so that a run resumed after a
    # kill draws the same grid as an uninterrupted one (a frame still in memory is not what H.264 kept).
    for target in targets:
        if output_path(ctx.out, item, target).is_file():
            frame = frame_at(output_path(ctx.out, item, target), index, info)
            if frame is not None:
                tiles.append((target.name, frame))
    write_grid(grid_path(ctx.out, item), tiles, face_region(boxes, source.shape))


def frame_at(path: Path, index: int, info: VideoInfo) -> np.ndarray | None:
    """Frame `index` of a video with `info`'s frame rate (None if it has no such frame)."""
    start = float(index / info.rate)
    try:
        for frame in iter_frames(path, start=start, end=start + float(1 / info.rate) * 0.999 + 1e-6):
            return frame.image
    except VideoError:
        return None
    return None

