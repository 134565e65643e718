"""`fex ingest`: dataset trees and studio recordings in, aligned face crops and record tables out.

    OUT/ingest.json                 options, sources and summary of the last run
    OUT/crops/<size>/<source>/<identity>/<item-slug>[_f<frame>].png
    OUT/records/part-<unit>.parquet one part per finished unit of work
    OUT/rejects/part-<unit>.parquet one row per rejected input

The run: lock OUT, check it was made with the same options (else refuse: mixing would corrupt it), clear
temp files a killed run left, scan the sources into a plan of units (fexdata.ingest.plan), drop parts no
unit of the plan owns (inputs that changed or vanished), run the units that have no records part yet on
`workers` processes (fexdata.ingest.worker), delete crops no record lists, and summarise from the tables.
Every file appears atomically, so a run killed at any moment and run again ends exactly like one that was
never interrupted.
"""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from fexdata.errors import IngestError
from fexdata.ingest import records as R
from fexdata.ingest.plan import IngestOptions, Plan, Source, Unit, make_plan
from fexdata.ingest.worker import UnitProcessor, UnitResult, init_worker, run_unit
from fexdata.padding import format_pad_summary, pad_summary
from fexdata.paths import atomic_write_text
from fexdata.threads import ingest_plan
from fexdata.ingest.sources.base import Item, Reject

INGEST_JSON = "ingest.json"
LOCK_NAME = ".ingest.lock"
FORMAT_VERSION = 1


def resolve_sources(srcs: Sequence[str | os.PathLike], layout: str = "auto",
                    log: Callable[[str], None] = print) -> list[Source]:
    """One Source per SRC argument; `auto` detects each layout and says what it found."""
    from fexdata.ingest import sources

    out = []
    for src in srcs:
        path = Path(src)
        if not path.exists():
            raise IngestError(f"{src}: no such file or folder", hint="check the path")
        name = sources.detect_layout(path) if layout == "auto" else layout
        sources.get(name)
        if layout == "auto":
            log(f"{src}: detected layout '{name}'")
        out.append(Source(sources.item_root(path).resolve(), str(src), name))
    return out


@dataclass
class RunInfo:
    units_total: int
    units_done_before: int
    units_run: int
    seconds: float
    frames: int
    no_face_frames: int  # video/sequence frames skipped for want of a face (not rejects)
    tracker: dict[str, int]


def ingest(sources: Sequence[Source], out: str | os.PathLike, options: IngestOptions = IngestOptions(),
           workers: int | None = None, overwrite: bool = False, progress: bool = True,
           log: Callable[[str], None] = print,
           scan: Callable[[Source], Iterable[Item | Reject]] | None = None) -> dict:
    """Run (or resume) an ingest; returns the summary also written to OUT/ingest.json.

    `scan` lists a source's items (default: its layout adapter); tests and callers with their own
    item lists pass one.
    """
    scan = scan or _scan
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        fingerprint = _fingerprint(sources, options)
        _check_same_job(out, fingerprint, overwrite)
        atomic_write_text(out / INGEST_JSON, json.dumps({**fingerprint, "status": "running"}, indent=2))
        _remove_temp_files(out)

        # a source that cannot be listed at all (e.g. a CSV without its columns) raises LayoutError
        plan = make_plan(((s, scan(s)) for s in sources), options)
        scan_part = _write_scan_rejects(out, plan)
        _remove_stale_parts(out, plan, scan_part)
        done = {p.name for p in (out / R.RECORDS_DIR).glob("part-*.parquet")}
        pending = [u for u in plan.units if R.part_name(u.id) not in done]
        # Long units first, so the last worker is not left alone with a long clip.
        pending.sort(key=lambda u: (u.kind == "image", -len(u.items)))

        started = time.perf_counter()
        results = _run_units(out, options, pending, workers, progress)
        seconds = time.perf_counter() - started
        _remove_orphan_crops(out)

        tracker: Counter = Counter()
        for r in results:
            tracker.update(r.tracker)
        run = RunInfo(len(plan.units), len(plan.units) - len(pending), len(results), seconds,
                      sum(r.frames for r in results), sum(r.no_face_frames for r in results), dict(tracker))
        summary = summarize(out, run)
        atomic_write_text(out / INGEST_JSON, json.dumps({**fingerprint, "status": "finished",
                                                          "summary": summary}, indent=2, default=str))
        return summary


def _scan(source: Source):
    from fexdata.ingest import sources

    # Adapters take the SRC as given: for the csv layout that is the table file itself, while
    # source.root (the folder item paths are relative to) may hold other CSVs.
    return sources.get(source.layout).scan(Path(source.given))


def _run_units(out: Path, options: IngestOptions, pending: list[Unit], workers: int | None,
               progress: bool) -> list[UnitResult]:
    plan = ingest_plan(workers, len(pending))  # workers x their threads within the cores
    workers = plan.workers
    total_items = sum(len(u.items) for u in pending)
    bar = tqdm(total=total_items, unit="item", desc="ingest", disable=not progress or not pending,
               dynamic_ncols=True)
    results: list[UnitResult] = []
    counts = Counter()

    def advance(res: UnitResult) -> None:
        results.append(res)
        counts.update(crops=res.records, rejects=sum(res.rejects.values()))
        bar.update(res.items)
        bar.set_postfix(crops=counts["crops"], rejects=counts["rejects"], refresh=False)

    try:
        if not pending:
            pass
        elif workers == 1:
            processor = UnitProcessor(out, options, plan.writer_threads)
            try:
                for unit in pending:
                    advance(processor.run(unit))
            finally:
                processor.close()
        else:
            # Not plain fork: a caller that already used OpenCV (fex demo renders its clips first) has
            # a thread pool a forked child inherits half-dead, and the child hangs on its first cv2
            # call. forkserver starts workers from a clean process, which imports fex and loads the
            # models once before it forks them (fexdata.ingest.preload).
            # Workers end themselves when this process is gone (see init_worker), and the fork server
            # then exits, so a killed run leaves no worker writing, nor holding the OUT lock.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(["__main__", "fexdata.ingest.preload"])
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                                     initargs=(str(out), options, os.getpid(), plan.writer_threads)) as pool:
                futures = [pool.submit(run_unit, u) for u in pending]
                for fut in as_completed(futures):
                    advance(fut.result())
    finally:
        bar.close()
    return results


def summarize(out: Path, run: RunInfo | None = None) -> dict:
    """Counts over everything in OUT (this run and earlier, resumed ones) plus this run's timing."""
    rec = R.read_table(out / R.RECORDS_DIR, ["image", "crop_size", "source", "item", "source_path", "frame",
                                             "detector", "pad_share"])
    rej = R.read_table(out / R.REJECTS_DIR, ["category", "reason", "source_path"])
    summary: dict = {"records": 0, "crops_by_size": {}, "items_with_crops": 0, "frames": 0, "detector": {},
                     "padding": {}, "rejects": 0, "rejects_by_category": {}, "reject_examples": {}}
    if rec is not None and rec.num_rows:
        df = rec.to_pandas()
        summary["records"] = int(len(df))
        summary["crops_by_size"] = {int(k): int(v) for k, v in df["crop_size"].value_counts().sort_index().items()}
        first = df[df["crop_size"] == df["crop_size"].max()]
        summary["items_with_crops"] = int(first["item"].nunique())
        summary["frames"] = int(len(first))
        summary["detector"] = {str(k): int(v) for k, v in first["detector"].value_counts().items()}
        summary["padding"] = pad_summary(first)
    if rej is not None and rej.num_rows:
        dj = rej.to_pandas()
        summary["rejects"] = int(len(dj))
        summary["rejects_by_category"] = {str(k): int(v) for k, v in dj["category"].value_counts().items()}
        summary["reject_examples"] = {
            str(cat): [f"{r.source_path}: {r.reason}" for r in grp.head(3).itertuples()]
            for cat, grp in dj.groupby("category", sort=True)}
    if run is not None:
        summary["run"] = {"units": run.units_total, "units_resumed": run.units_done_before,
                          "units_processed": run.units_run, "seconds": round(run.seconds, 2),
                          "frames_processed": run.frames, "frames_without_face": run.no_face_frames,
                          "frames_per_second": round(run.frames / run.seconds, 1) if run.seconds > 0 else None,
                          "tracker": run.tracker}
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['records']} crop records ({', '.join(f'{n} at {s}px' for s, n in summary['crops_by_size'].items()) or 'none'}) "
             f"from {summary['frames']} frames/images of {summary['items_with_crops']} items"]
    if summary.get("detector"):
        lines.append("faces by: " + ", ".join(f"{k} {v}" for k, v in summary["detector"].items()))
    if summary.get("padding"):
        lines += ["padded share of the crops (outside the source frame), per source",
                  *format_pad_summary(summary["padding"])]
    run = summary.get("run")
    if run:
        fps = f", {run['frames_per_second']} frames/s" if run.get("frames_per_second") else ""
        lines.append(f"this run: {run['units_processed']} units processed, {run['units_resumed']} already done"
                     f" ({run['seconds']} s{fps})")
        if run.get("frames_without_face"):
            lines.append(f"video frames without a face (skipped): {run['frames_without_face']}")
    if summary["rejects"]:
        lines.append(f"{summary['rejects']} rejected:")
        for cat, n in summary["rejects_by_category"].items():
            lines.append(f"  {n:6d}  {cat}  (e.g. {summary['reject_examples'][cat][0]})")
    else:
        lines.append("nothing rejected")
    return "\n".join(lines)


# -- bookkeeping -------------------------------------------------------------------------------------------

class _locked:
    """Exclusive lock on OUT so two runs never write the same parts (released by the OS if killed)."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_NAME

    def __enter__(self) -> None:
        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise IngestError(f"another fex ingest is writing to {self.path.parent}",
                              hint="wait for it to finish, or use another --out") from None

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _fingerprint(sources: Sequence[Source], options: IngestOptions) -> dict:
    fp = {"format": FORMAT_VERSION,
          "sources": [{"root": str(s.root), "given": s.given, "layout": s.layout} for s in sources],
          "options": options.fingerprint()}
    return json.loads(json.dumps(fp))  # as it reads back from ingest.json (tuples become lists)


def _check_same_job(out: Path, fingerprint: dict, overwrite: bool) -> None:
    path = out / INGEST_JSON
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    same = (old.get("options") == fingerprint["options"]
            and [(s["root"], s["layout"]) for s in old.get("sources", [])]
            == [(s["root"], s["layout"]) for s in fingerprint["sources"]])
    if same:
        return
    if not overwrite:
        diffs = [k for k in fingerprint["options"] if old.get("options", {}).get(k) != fingerprint["options"][k]]
        what = f"options {', '.join(diffs)}" if diffs else "sources"
        raise IngestError(f"{out} holds an ingest made with different {what}",
                          hint="use another --out, or --overwrite to replace it")
    import shutil

    for name in (R.RECORDS_DIR, R.REJECTS_DIR, R.CROPS_DIR):
        shutil.rmtree(out / name, ignore_errors=True)


def _remove_temp_files(out: Path) -> None:
    """Delete the temp files of writes a killed run never finished (fexdata.paths.atomic_path names)."""
    for dirpath, _, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(dirpath, name))


def _write_scan_rejects(out: Path, plan: Plan) -> str | None:
    rows = [R.reject_row(rj.source or src.layout, src.given, rj.source_path, "", R.LAYOUT, rj.reason)
            for src, rj in plan.scan_rejects]
    rows += [R.reject_row(item.source, src.given, item.path, item.key, R.DUPLICATE,
                          "same layout and path as an item of an earlier SRC; its crops would overwrite those")
             for src, item in plan.duplicates]
    if not rows:
        return None
    name = R.part_name("scan-" + R.stable_hash(json.dumps(rows, sort_keys=True)))
    if not (out / R.REJECTS_DIR / name).exists():
        R.write_part(out / R.REJECTS_DIR / name, rows, R.REJECTS)
    return name


def _remove_stale_parts(out: Path, plan: Plan, scan_part: str | None) -> None:
    wanted = {R.part_name(u.id) for u in plan.units} | ({scan_part} if scan_part else set())
    for folder in (out / R.RECORDS_DIR, out / R.REJECTS_DIR):
        for part in folder.glob("part-*.parquet"):
            if part.name not in wanted:
                part.unlink()


def _remove_orphan_crops(out: Path) -> None:
    """Delete crops that no record lists (left by a killed unit whose inputs then changed, or stale units)."""
    crops = out / R.CROPS_DIR
    if not crops.is_dir():
        return
    table = R.read_table(out / R.RECORDS_DIR, ["image"])
    listed = set(table.column("image").to_pylist()) if table is not None else set()
    for dirpath, dirnames, files in os.walk(crops, topdown=False):
        for name in files:
            rel = Path(dirpath, name).relative_to(out).as_posix()
            if rel not in listed:
                os.unlink(os.path.join(dirpath, name))
        if not os.listdir(dirpath) and Path(dirpath) != crops:
            os.rmdir(dirpath)
