"""`fex edit RUN INPUT... --to SPEC... --out DIR`: the run.

Load the model and the run's crop recipe, read the targets and list the inputs (a mistake in either stops
before DIR is touched), lock DIR, check it holds edits made with the same run and settings (else refuse:
two models' outputs would mix), clear temp files a killed run left, give every input its output folder
(the one it owns in DIR, recorded in edit.json before anything is written), then edit every input whose
outputs are not all done (photos: fextrain.edit.photo; videos: fextrain.edit.video). An input that cannot
be edited becomes one reject row with ingest's category and reason, and the rest goes on. At the end every
part is gathered into DIR/edits.parquet and the summary into DIR/edit.json. Every file appears atomically,
so a killed run, run again, ends as if never stopped.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from fexdata import parquet
from fexdata.errors import EditError
from fexdata.images import DEFAULT_MAX_PIXELS, ImageError
from fexdata.ingest import records as R
from fexdata.ingest.video import VideoError
from fexdata.paths import atomic_write_text, locked, read_json_or_empty, remove_temp_files
from fextrain.edit import paste
from fextrain.edit.context import STEADY, EditContext, Rejected
from fextrain.edit.faces import FaceChoice, make_finder
from fextrain.edit.inputs import EditInput, collect_inputs
from fextrain.device import resolve_device
from fextrain.edit.model import BatchModel, load_model
from fextrain.edit.outputs import GRID_NAME, claim_folders, done, signature
from fextrain.edit.photo import edit_photo
from fextrain.edit.recipe import resolve_recipe
from fextrain.edit.source import JudgeOptions, SourceAffects, run_judge
from fextrain.edit.table import DAMAGED_HINT, PARTS_DIR, TABLE, gather
from fextrain.edit.targets import Target, parse_targets, read_spec
from fextrain.edit.video import VideoStats, edit_video

EDIT_JSON = "edit.json"
LOCK_NAME = ".edit.lock"
# 2: edit.json records each output folder's input; 3: rows carry `sharpness` (older parts lack it);
# 4: `--faces all` edits every face of a video too (3 followed one), `face` is then the track
FORMAT_VERSION = 4
SOFT = 0.8           # a face box whose sharpness ratio is below this is counted as softened by the edit


@dataclass(frozen=True)
class EditOptions:
    to: tuple[str, ...] = ("all",)
    intensities: tuple[float, ...] = (1.0,)
    source: str = "auto"              # --from: an affect spec, or auto
    estimator: str = "auto"           # auto (the model's affect head where it has one) | discriminator | judge
    faces: str = "largest"            # largest | all
    face: str | None = None           # --face N|X,Y: one face (fextrain.edit.faces.FaceChoice)
    colour: bool = False
    keep_detail: bool = False
    paste: str = "auto"               # auto (warp for a warping model, else crop) | warp | crop
    crops: bool = False
    start: float | None = None
    end: float | None = None
    batch: int = 16
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    recipe: dict[str, Any] = field(default_factory=dict)   # stated recipe settings (override the run's)
    fan_weights: str | None = None
    judge: JudgeOptions = JudgeOptions()
    overwrite: bool = False
    identity: str | None = None       # --identity: a train identity to draw the faces on (identity-editing models)
    steady: float = STEADY            # --steady: videos, weight of the newest frame in the average of the edit


def edit(run: str | os.PathLike, inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
         options: EditOptions = EditOptions(), progress: bool = True,
         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) an edit; returns the summary also written to DIR/edit.json."""
    if options.start is not None and options.end is not None and options.end <= options.start:
        raise EditError(f"--end {options.end:g} is not after --start {options.start:g}",
                        hint="give an --end later than --start, or leave one out")
    run_path, out = Path(run), Path(out)
    device = resolve_device(options.device, EditError)
    editor = load_model(run_path, device)
    identity = _identity(editor, options.identity)
    affects, size = tuple(editor.affects), int(editor.size)
    recipe, recipe_from = resolve_recipe(editor.config, run_path, size, options.recipe)
    targets = parse_targets(options.to, options.intensities, affects)
    faces = _face_choice(options)
    if options.source.strip().lower() != "auto":
        read_spec(options.source, affects, "--from")
    items, scan_rejects = collect_inputs(inputs, out)
    out.mkdir(parents=True, exist_ok=True)
    busy = EditError(f"another fex edit is writing to {out}", hint="wait for it to finish, or use another --out")
    with locked(out / LOCK_NAME, busy):
        fingerprint = _fingerprint(run_path, editor, recipe.to_dict(), options)
        _check_same_job(out, fingerprint, options.overwrite)
        remove_temp_files(out)
        items, owners = claim_folders(out, items, read_json_or_empty(out / EDIT_JSON).get("inputs", {}))
        fingerprint_and_targets = {**fingerprint, "targets": {t.name: t.spec for t in targets},
                                   "inputs": dict(sorted(owners.items()))}
        before = (out / EDIT_JSON).read_text() if (out / EDIT_JSON).is_file() else None
        atomic_write_text(out / EDIT_JSON, json.dumps({**fingerprint_and_targets, "status": "running"}, indent=2))
        log(f"model: {editor.model} at step {editor.step} ({size}px, {device}); crop recipe from {recipe_from}: "
            + ", ".join(f"{k}={v}" for k, v in recipe.to_dict().items()))
        model = BatchModel(editor, options.batch, identity)
        judge = functools.partial(run_judge, editor.config, run_path, size, options.judge, str(device), progress, log)
        ctx = EditContext(out, recipe, make_finder(recipe, options.fan_weights), model,
                          SourceAffects(options.source, affects, model, options.estimator, judge), affects, size,
                          faces=str(faces), colour=options.colour, keep_detail=options.keep_detail,
                          warp=uses_warp(editor, options),
                          crops=options.crops, max_pixels=options.max_pixels, start=options.start, end=options.end,
                          steady=options.steady, progress=progress)
        started = time.perf_counter()
        _write_rejects(out, "inputs", scan_rejects)
        try:
            counts, frames = _edit_all(ctx, items, targets, options.overwrite, progress, log)
        except EditError:
            # Stopped before any output (e.g. a --face point on no face): DIR stays as it was, so the same
            # command with a corrected option is not refused as "other settings".
            if not any((out / PARTS_DIR).glob("*.parquet")):
                if before is None:
                    (out / EDIT_JSON).unlink()
                else:
                    atomic_write_text(out / EDIT_JSON, before)
            raise
        rows = gather(out)
        summary = _summary(out, counts, frames, rows, time.perf_counter() - started)
        atomic_write_text(out / EDIT_JSON, json.dumps({**fingerprint_and_targets, "status": "finished",
                                                       "summary": summary}, indent=2, default=str))
        return summary


def _edit_all(ctx: EditContext, items: list[EditInput], targets: list[Target], overwrite: bool, progress: bool,
              log: Callable[[str], None]) -> tuple[Counter, VideoStats]:
    counts: Counter = Counter()
    frames = VideoStats()
    constant = [t for t in targets if not t.scheduled]
    if any(it.kind == "image" for it in items) and len(constant) < len(targets):
        log("note: schedules apply to videos only; photos get the other targets")
    bar = tqdm(items, desc="edit", unit="input", disable=not progress, dynamic_ncols=True)
    for item in bar:
        mine = targets if item.kind == "video" else constant
        if not mine:
            continue
        try:
            sig = signature(item.path)
        except OSError:
            _reject(ctx.out, item, R.BAD_IMAGE if item.kind == "image" else R.BAD_VIDEO, "file does not exist")
            continue
        pending = [t for t in mine if overwrite or not done(ctx.out, item, t, sig)]
        if not pending:
            counts["inputs_done_before"] += 1
            continue
        try:
            if item.kind == "image":
                counts["outputs"] += edit_photo(ctx, item, pending, mine, sig)
                counts["photos"] += 1
            else:
                written, stats = edit_video(ctx, item, pending, mine, sig)
                counts["outputs"] += written
                counts["videos"] += 1
                for k, v in asdict(stats).items():
                    setattr(frames, k, getattr(frames, k) + v)
            _reject_path(ctx.out, item).unlink(missing_ok=True)
        except Rejected as exc:
            _reject(ctx.out, item, exc.category, str(exc))
        except ImageError as exc:
            _reject(ctx.out, item, R.BAD_IMAGE, str(exc))
        except VideoError as exc:
            _reject(ctx.out, item, R.BAD_VIDEO, str(exc))
        except EditError:
            raise  # a problem with the run or options, not with this input: stop
        except Exception as exc:  # never let one input stop the run; say what happened
            _reject(ctx.out, item, R.ERROR, f"{type(exc).__name__}: {exc}")
        bar.set_postfix(outputs=counts["outputs"], refresh=False)
    return counts, frames


def _reject_path(out: Path, item: EditInput) -> Path:
    return out / R.REJECTS_DIR / R.part_name(R.stable_hash(item.key))


def _reject(out: Path, item: EditInput, category: str, reason: str) -> None:
    R.write_part(_reject_path(out, item), [R.reject_row(item.kind, item.root, item.shown, item.key, category, reason)],
                 R.REJECTS)


def _write_rejects(out: Path, name: str, rows: list[dict[str, Any]]) -> None:
    path = out / R.REJECTS_DIR / R.part_name(name)
    if rows:
        R.write_part(path, rows, R.REJECTS)
    else:
        path.unlink(missing_ok=True)


def _face_choice(options: EditOptions) -> FaceChoice:
    """--faces largest|all, or --face N|X,Y (one face: not with --faces all)."""
    if options.face is None:
        return FaceChoice.parse(options.faces)
    if options.faces == "all":
        raise EditError(f"--face {options.face} picks one face and --faces all every face",
                        hint="give one of the two")
    return FaceChoice.parse(options.face)


def uses_warp(editor: Any, options: EditOptions) -> bool:
    """Whether faces are warped at full resolution: `--paste warp`, or auto with a warping model and no
    --keep-detail (which asks for the crop paste)."""
    if options.paste not in ("auto", "warp", "crop"):
        raise EditError(f"--paste {options.paste!r} is not a paste mode", hint="use auto, warp or crop")
    if options.paste == "warp" and not editor.warps:
        raise EditError(f"--paste warp: model {editor.model!r} paints its edits, it does not warp its source",
                        hint="leave --paste out (auto), or use a run of a warping model (warp-refine)")
    return editor.warps and (options.paste == "warp" or (options.paste == "auto" and not options.keep_detail))


def _identity(editor: Any, name: str | None) -> int | None:
    """--identity NAME as a train-identity index; refused for models that edit expressions."""
    if name is None:
        return None
    if not getattr(editor.gan, "identity_edit", False):
        raise EditError(f"--identity: model {editor.model!r} edits expressions, not identities",
                        hint="leave --identity out, or use a run of an identity-editing model (degan)")
    return editor.identity_index(name)


def _fingerprint(run_path: Path, editor: Any, recipe: dict[str, Any], options: EditOptions) -> dict[str, Any]:
    """What decides the pixels of an output besides its input and target: a DIR holds one of these."""
    settings = {"source": options.source, "estimator": options.estimator, "faces": str(_face_choice(options)),
                "colour": options.colour, "keep_detail": options.keep_detail, "warp": uses_warp(editor, options),
                "start": options.start,
                "end": options.end,
                "steady": options.steady,
                "mask": {"brow_lift": paste.BROW_LIFT, "erode": paste.ERODE, "feather": paste.FEATHER},
                **({"identity": options.identity} if options.identity else {})}
    return json.loads(json.dumps({"format": FORMAT_VERSION, "run": str(run_path.resolve()), "model": editor.model,
                                  "step": int(editor.step), "affects": list(editor.affects), "size": int(editor.size),
                                  "recipe": recipe, "settings": settings}))


def _check_same_job(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> None:
    if not (out / EDIT_JSON).exists():
        return
    old = read_json_or_empty(out / EDIT_JSON)
    keys = ("format", "run", "model", "step", "affects", "size", "recipe", "settings")
    diffs = [k for k in keys if old.get(k) != fingerprint[k]]
    if not diffs:
        return
    if not overwrite:
        raise EditError(f"{out} holds edits made with other {', '.join(diffs)}",
                        hint="use another --out, or --overwrite to replace them")
    _clear(out)


def _clear(out: Path) -> None:
    """Remove every output the edit table lists, its grid and crops, the parts and the rejects."""
    table = out / TABLE
    if table.is_file():
        for rel in set(parquet.read_table(table, ["output"], error=EditError, hint=DAMAGED_HINT)["output"].to_pylist()):
            folder = (out / rel).parent
            (out / rel).unlink(missing_ok=True)
            shutil.rmtree(folder / "crops", ignore_errors=True)
            (folder / GRID_NAME).unlink(missing_ok=True)
        table.unlink()
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    shutil.rmtree(out / R.REJECTS_DIR, ignore_errors=True)


def _sharpness(out: Path) -> dict[str, Any]:
    """Median sharpness ratio of edits.parquet's rows and the share below SOFT (NaN rows left out)."""
    values = parquet.read_table(out / TABLE, ["sharpness"], error=EditError, hint=DAMAGED_HINT)["sharpness"]
    ratios = values.to_numpy(zero_copy_only=False).astype(np.float64)
    ratios = ratios[np.isfinite(ratios)]
    return {"measured": int(len(ratios)), "median": float(np.median(ratios)) if len(ratios) else None,
            "share_below": float((ratios < SOFT).mean()) if len(ratios) else None, "below": SOFT}


def _summary(out: Path, counts: Counter, frames: VideoStats, rows: int, seconds: float) -> dict[str, Any]:
    return {"photos_edited": counts["photos"], "videos_edited": counts["videos"], "outputs_written": counts["outputs"],
            "inputs_done_before": counts["inputs_done_before"], "rows": rows, "video_frames": asdict(frames),
            "sharpness": _sharpness(out), **R.reject_summary(out / R.REJECTS_DIR), "seconds": round(seconds, 2)}


def format_summary(summary: dict[str, Any], out: str | os.PathLike) -> str:
    f = summary["video_frames"]
    lines = [f"edited {summary['photos_edited']} photos and {summary['videos_edited']} videos into "
             f"{summary['outputs_written']} outputs in {summary['seconds']:.1f}s "
             f"({summary['inputs_done_before']} inputs already done)"]
    if f["frames"]:
        lines.append(f"video frames: {f['frames']} decoded, {f['edited']} with a face edited, {f['no_face']} without "
                     f"a face and {f['outside']} outside --start/--end passed through unchanged"
                     + (f"; {f['tracks']} faces followed" if f.get("tracks", 0) > summary["videos_edited"] else ""))
    s = summary["sharpness"]
    if s["measured"]:
        lines.append(f"sharpness of the face boxes, output over input at full resolution: median {s['median']:.2f}, "
                     f"{s['share_below']:.0%} of {s['measured']} faces below {s['below']:g}")
    lines += R.reject_lines(summary, f"rejected {summary['rejects']} inputs (see {out}/rejects):")
    lines.append(f"wrote {out}/{TABLE} ({summary['rows']} rows) and {out}/{EDIT_JSON}")
    return "\n".join(lines)
