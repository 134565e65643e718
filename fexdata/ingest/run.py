"""`fex ingest`: dataset trees and studio recordings in, aligned face crops and record tables out.

    OUT/ingest.json                 options, sources and summary of the last run
    OUT/shards/shard-<I>-of-<N>.json  the same for one shard (--shard I/N)
    OUT/crops/<size>/<source>/<identity>/<item-slug>[_f<frame>].png
    OUT/records/part-<unit>.parquet one part per finished unit of work
    OUT/rejects/part-<unit>.parquet one row per rejected input

The run: lock OUT, check it was made with the same options (else refuse: mixing would corrupt it), scan
the sources into a plan of units (fexdata.ingest.plan), keep this shard's units, run those that have no
records part yet on `workers` local processes (fexdata.ingest.worker) or as Ray tasks
(fexdata.ingest.ray_executor), then - when no other shard is still writing - drop parts no unit owns any
more, temp files of killed writes and crops no record lists (fexdata.ingest.outdir), and summarise from the
tables. Every file appears atomically, so a run killed at any moment and run again ends exactly like one
that was never interrupted, and N shards into one OUT end exactly like one whole run.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from fexdata.errors import IngestError
from fexdata.ingest import records as R
from fexdata.ingest import outdir
from fexdata.ingest.plan import IngestOptions, Shard, Source, Unit, make_plan
from fexdata.ingest.worker import UnitProcessor, UnitResult, init_worker, run_unit
from fexdata.padding import format_pad_summary, pad_summary
from fexdata.threads import ingest_plan
from fexdata.ingest.sources.base import Item, Reject

EXECUTORS = ("local", "ray")


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
    executor: dict = field(default_factory=dict)  # what ran the units (fexdata.ingest.run._run_units)


def ingest(sources: Sequence[Source], out: str | os.PathLike, options: IngestOptions = IngestOptions(),
           workers: int | None = None, overwrite: bool = False, progress: bool = True,
           log: Callable[[str], None] = print,
           scan: Callable[[Source], Iterable[Item | Reject]] | None = None,
           shard: Shard = Shard(), executor: str = "local", ray_address: str | None = None) -> dict:
    """Run (or resume) an ingest, or one shard of it; returns the summary also written to the status file
    (OUT/ingest.json, or OUT/shards/shard-<I>-of-<N>.json).

    `scan` lists a source's items (default: its layout adapter); tests and callers with their own
    item lists pass one. `executor` runs the units on local worker processes or as Ray tasks
    (`ray_address`: a cluster to join; default $RAY_ADDRESS, else a local Ray for the run).
    """
    scan = scan or _scan
    out = Path(out)
    if executor not in EXECUTORS:
        raise IngestError(f"unknown executor {executor!r}", hint=f"use one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        from fexdata.ingest import ray_executor

        ray_executor.preflight(ray_address)  # Ray missing, or no cluster there: say so before the scan
    if overwrite and not shard.whole:
        raise IngestError("--overwrite cannot be used with --shard: it would delete what the other shards write",
                          hint="empty OUT once (rm -r OUT, or one `fex ingest ... --overwrite` without --shard), "
                               "then start the shards")
    out.mkdir(parents=True, exist_ok=True)
    with outdir.OutLock(out, shared=not shard.whole, log=log) as lock:
        fingerprint = outdir.fingerprint(sources, options)
        outdir.check_same_job(out, fingerprint, overwrite)
        header = fingerprint if shard.whole else {**fingerprint, "shard": str(shard)}
        status_file = outdir.status_path(out, shard)
        outdir.write_status(status_file, {**header, "status": "running"})
        if shard.whole:
            outdir.remove_status_temp_files(out)

        # a source that cannot be listed at all (e.g. a CSV without its columns) raises LayoutError
        plan = make_plan(((s, scan(s)) for s in sources), options)
        scan_part = outdir.write_scan_rejects(out, plan)
        mine = [u for u in plan.units if shard.owns(u)]
        outdir.drop_damaged_parts(out, mine, log)
        done = outdir.done_parts(out)
        pending = [u for u in mine if R.part_name(u.id) not in done]
        # The units to do, so a reader of a stopped run (fex build-manifest) can say how many are missing.
        outdir.write_status(status_file, {**header, "status": "running", "units": len(mine)})
        # Long units first, so the last worker is not left alone with a long clip.
        pending.sort(key=lambda u: (u.kind == "image", -len(u.items)))

        started = time.perf_counter()
        results, executor_info = _run_units(out, options, pending, workers, progress, executor, ray_address)
        seconds = time.perf_counter() - started
        tracker: Counter = Counter()
        for r in results:
            tracker.update(r.tracker)
        run = RunInfo(len(mine), len(mine) - len(pending), len(results), seconds,
                      sum(r.frames for r in results), sum(r.no_face_frames for r in results), dict(tracker),
                      executor_info)

        def finish() -> dict:
            summary = summarize(out, run)
            if not shard.whole:
                summary["run"]["shard"] = str(shard)
            outdir.write_status(status_file, {**header, "status": "finished", "summary": summary})
            return summary

        # A shard says it is finished before `alone()`, which lets go of its lock: the last shard reads every
        # shard's status into ingest.json, and one that let go first would still read as running.
        summary = None if shard.whole else finish()
        alone = lock.alone()
        if alone:  # no other shard is writing: tidy the whole folder
            outdir.tidy(out, plan, scan_part, options)
        if shard.whole:
            summary = finish()
        elif alone:  # the last shard standing speaks for the whole folder
            finished = len(outdir.done_parts(out) & {R.part_name(u.id) for u in plan.units})
            outdir.write_status(out / outdir.INGEST_JSON, {
                **fingerprint, "status": "finished" if finished == len(plan.units) else "partial",
                "units": len(plan.units), "units_finished": finished, "shards": outdir.shard_statuses(out),
                "summary": summarize(out)})
        return summary


def _scan(source: Source):
    from fexdata.ingest import sources

    # Adapters take the SRC as given: for the csv layout that is the table file itself, while
    # source.root (the folder item paths are relative to) may hold other CSVs.
    return sources.get(source.layout).scan(Path(source.given))


def _run_units(out: Path, options: IngestOptions, pending: list[Unit], workers: int | None,
               progress: bool, executor: str = "local", ray_address: str | None = None
               ) -> tuple[list[UnitResult], dict]:
    """Each pending unit's result, and what ran them (executor, workers; for Ray its worker processes)."""
    plan = ingest_plan(workers, len(pending))  # workers x their threads within the cores
    workers = plan.workers
    info: dict = {"name": executor, "workers": workers}
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
        elif executor == "ray":
            from fexdata.ingest import ray_executor

            info.update(ray_executor.run_units(out, options, pending, ray_address, workers, advance))
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
    return results, info


def summarize(out: Path, run: RunInfo | None = None) -> dict:
    """Counts over everything in OUT (this run and earlier, resumed ones) plus this run's timing."""
    rec = R.read_table(out / R.RECORDS_DIR, ["image", "crop_size", "source", "item", "source_path", "frame",
                                             "detector", "pad_share"])
    summary: dict = {"records": 0, "crops_by_size": {}, "items_with_crops": 0, "frames": 0, "detector": {},
                     "padding": {}, **R.reject_summary(out / R.REJECTS_DIR)}
    if rec is not None and rec.num_rows:
        df = rec.to_pandas()
        summary["records"] = int(len(df))
        summary["crops_by_size"] = {int(k): int(v) for k, v in df["crop_size"].value_counts().sort_index().items()}
        first = df[df["crop_size"] == df["crop_size"].max()]
        summary["items_with_crops"] = int(first["item"].nunique())
        summary["frames"] = int(len(first))
        summary["detector"] = {str(k): int(v) for k, v in first["detector"].value_counts().items()}
        summary["padding"] = pad_summary(first)
    if run is not None:
        summary["run"] = {"units": run.units_total, "units_resumed": run.units_done_before,
                          "units_processed": run.units_run, "seconds": round(run.seconds, 2),
                          "frames_processed": run.frames, "frames_without_face": run.no_face_frames,
                          "frames_per_second": round(run.frames / run.seconds, 1) if run.seconds > 0 else None,
                          "tracker": run.tracker, "executor": run.executor}
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
        who = f"this run (shard {run['shard']})" if run.get("shard") else "this run"
        lines.append(f"{who}: {run['units_processed']} units processed, {run['units_resumed']} already done"
                     f" ({run['seconds']} s{fps})")
        if run.get("frames_without_face"):
            lines.append(f"video frames without a face (skipped): {run['frames_without_face']}")
    lines += R.reject_lines(summary, f"{summary['rejects']} rejected:")
    return "\n".join(lines)
