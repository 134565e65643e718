"""The bookkeeping of an ingest OUT folder that whole runs and shards share: lock, job check, status, tidy.

    OUT/.ingest.lock                  flock: a whole run holds it alone, shards share it
    OUT/ingest.json                   options, sources, status and summary of the OUT as a whole
    OUT/shards/shard-<I>-of-<N>.json  the same for one shard's run (each shard writes only its own)

N shards (`fex ingest --shard I/N`, possibly on N hosts of a shared filesystem) write into one OUT side
by side: each writes only its own units' crops and parts, and its own status file. What concerns the whole
folder - dropping parts no unit owns any more, temp files of killed writes, crops no record lists - is
`tidy`, done by whoever holds the lock alone: a whole run, or the shard that finds itself the last one at
its end (it then writes OUT/ingest.json for the whole folder). `tidy` leaves alone everything a unit still
to run may be writing, so even on a filesystem whose locks do not reach across hosts it cannot delete
another shard's work in flight.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

from fexdata import parquet
from fexdata.errors import IngestError
from fexdata.ingest import records as R
from fexdata.ingest.plan import IngestOptions, Plan, Shard, Source, Unit
from fexdata.paths import atomic_write_text

INGEST_JSON = "ingest.json"
SHARDS_DIR = "shards"
LOCK_NAME = ".ingest.lock"
FORMAT_VERSION = 1
LOCK_WAIT_S = 600.0  # a shard waits this long for a run that holds OUT alone (a tidy takes seconds)


class OutLock:
    """OUT's lock: exclusive for a whole run, shared by shards (released by the OS if the process dies)."""

    def __init__(self, out: Path, shared: bool, log: Callable[[str], None] = print) -> None:
        self.path, self.shared, self.log = out / LOCK_NAME, shared, log

    def __enter__(self) -> OutLock:
        self.fh = open(self.path, "a")
        if not self.shared:
            if not self._try(fcntl.LOCK_EX):
                self.fh.close()
                raise IngestError(f"another fex ingest is writing to {self.path.parent}",
                                  hint="wait for it to finish, or use another --out")
            return self
        deadline = time.monotonic() + LOCK_WAIT_S
        if not self._try(fcntl.LOCK_SH):
            self.log(f"waiting for the fex ingest that holds {self.path.parent} alone "
                     "(a whole run, or a shard tidying up)")
        while not self._try(fcntl.LOCK_SH):
            if time.monotonic() > deadline:
                self.fh.close()
                raise IngestError(f"an unsharded fex ingest is writing to {self.path.parent}",
                                  hint="shards cannot run beside a whole run of the same OUT: wait for it, "
                                       "or give the shards another --out")
            time.sleep(0.5)
        return self

    def alone(self) -> bool:
        """True when no other ingest holds OUT now: always for a whole run; for a shard, once it finds
        itself the last one (it then keeps the lock alone until it exits)."""
        if not self.shared:
            return True
        fcntl.flock(self.fh, fcntl.LOCK_UN)  # let go first: two shards upgrading at once would both fail
        self.shared = not self._try(fcntl.LOCK_EX)
        return not self.shared

    def _try(self, mode: int) -> bool:
        try:
            fcntl.flock(self.fh, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


# -- the job: what OUT was made with ----------------------------------------------------------------------

def fingerprint(sources: Sequence[Source], options: IngestOptions) -> dict:
    fp = {"format": FORMAT_VERSION,
          "sources": [{"root": str(s.root), "given": s.given, "layout": s.layout} for s in sources],
          "options": options.fingerprint()}
    return json.loads(json.dumps(fp))  # as it reads back from ingest.json (tuples become lists)


def status_path(out: Path, shard: Shard) -> Path:
    return out / INGEST_JSON if shard.whole else out / SHARDS_DIR / f"shard-{shard.name}.json"


def write_status(path: Path, status: dict) -> None:
    atomic_write_text(path, json.dumps(status, indent=2, default=str))


def check_same_job(out: Path, fp: dict, overwrite: bool) -> None:
    """Refuse an OUT whose ingest.json or any shard's status names other options or sources (mixing two
    jobs would corrupt it), unless `overwrite`, which empties it."""
    for path in [out / INGEST_JSON, *sorted((out / SHARDS_DIR).glob("shard-*.json"))]:
        old = _read_json(path)
        if old is None:
            continue
        if (old.get("options") == fp["options"]
                and [(s["root"], s["layout"]) for s in old.get("sources", [])]
                == [(s["root"], s["layout"]) for s in fp["sources"]]):
            continue
        if not overwrite:
            diffs = [k for k in fp["options"] if old.get("options", {}).get(k) != fp["options"][k]]
            what = f"options {', '.join(diffs)}" if diffs else "sources"
            raise IngestError(f"{out} holds an ingest made with different {what} ({path.name})",
                              hint="use another --out, or --overwrite (without --shard) to replace it")
        for name in (R.RECORDS_DIR, R.REJECTS_DIR, R.CROPS_DIR, SHARDS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
        return


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def shard_statuses(out: Path) -> dict[str, str]:
    """Each shard status file's shard (I/N) and status, for the OUT-wide ingest.json."""
    found = {}
    for path in sorted((out / SHARDS_DIR).glob("shard-*.json")):
        st = _read_json(path) or {}
        found[st.get("shard", path.stem)] = st.get("status", "unknown")
    return found


def unfinished(out: Path) -> str | None:
    """What is missing from the ingest in OUT, as a sentence, or None when it finished (or OUT has no status
    files: records made some other way). For `fex build-manifest`, which reads OUT but never writes it."""
    status = _read_json(out / INGEST_JSON)
    shards = [(path, _read_json(path) or {}) for path in sorted((out / SHARDS_DIR).glob("shard-*.json"))]
    if status is None and not shards:
        return None
    parts = len(done_parts(out))
    if _writing_now(out):
        total = (status or {}).get("units")
        return f"a fex ingest is writing it now ({parts}{f' of {total}' if total else ''} units done so far)"
    problems = []
    state = (status or {}).get("status")
    if state == "running":  # a whole run that was stopped before it finished
        total = status.get("units")
        problems.append(f"its ingest.json says 'running': the run was stopped after {parts}"
                        f"{f' of {total}' if total else ''} units")
    elif state == "partial":  # the last shard standing found units no shard had done
        problems.append(f"only {status.get('units_finished')} of {status.get('units')} units were ingested")
    # A shard status newer than ingest.json speaks for a run after it (a whole run's leaves older ones stale).
    since = (out / INGEST_JSON).stat().st_mtime if status is not None else float("-inf")
    stopped = [f"{st.get('shard', path.stem)} ({st.get('status', 'unreadable')})" for path, st in shards
               if st.get("status") != "finished" and path.stat().st_mtime >= since]
    if stopped:
        problems.append(f"shard(s) not finished: {', '.join(stopped)}")
    return "; ".join(problems) or None


def _writing_now(out: Path) -> bool:
    """True while a whole `fex ingest` holds OUT (shards, holding it shared, say so in their status files).
    The probe holds a shared lock for an instant only."""
    if not (out / LOCK_NAME).is_file():
        return False
    with open(out / LOCK_NAME, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def remove_status_temp_files(out: Path) -> None:
    """Temp files of status writes a killed run never finished (only safe while holding OUT alone)."""
    for folder in (out, out / SHARDS_DIR):
        for path in folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)


# -- parts and crops --------------------------------------------------------------------------------------

def done_parts(out: Path) -> set[str]:
    return {p.name for p in (out / R.RECORDS_DIR).glob("part-*.parquet")}


def write_scan_rejects(out: Path, plan: Plan) -> str | None:
    """The scan's rejects as one part named by its content; every shard makes the same one."""
    rows = [R.reject_row(rj.source or src.layout, src.given, rj.source_path, "", R.LAYOUT, rj.reason)
            for src, rj in plan.scan_rejects]
    rows += [R.reject_row(item.source, src.given, item.path, item.key, R.DUPLICATE,
                          "same layout and path as an item of an earlier SRC; its crops would overwrite those")
             for src, item in plan.duplicates]
    if not rows:
        return None
    name = R.part_name("scan-" + R.stable_hash(json.dumps(rows, sort_keys=True)))
    path = out / R.REJECTS_DIR / name
    if not path.exists() or parquet.problem(path):
        R.write_part(path, rows, R.REJECTS)
    return name


def drop_damaged_parts(out: Path, units: Iterable[Unit], log: Callable[[str], None]) -> None:
    """Delete the records and rejects parts of these units that fail their checksum (damaged on disk or in a
    copy, or written by an older fex without one), so that the units run again."""
    for unit in units:
        name = R.part_name(unit.id)
        paths = [out / R.RECORDS_DIR / name, out / R.REJECTS_DIR / name]
        if not paths[0].exists():
            continue  # not done: it runs anyway
        why = next((f"{p}: {w}" for p in paths if p.exists() and (w := parquet.problem(p))), None)
        if why:
            log(f"{why}; its unit runs again")
            for p in paths:
                p.unlink(missing_ok=True)


_TEMP = re.compile(r"^\.(?P<target>.+?)\.(?:\d+\.\d+|[^.]+)\.tmp$")  # .<name>.<pid>.<thread>.tmp or mkstemp's
_FRAME = re.compile(r"_f\d+$")


def tidy(out: Path, plan: Plan, scan_part: str | None, options: IngestOptions) -> None:
    """Drop parts no unit of `plan` owns, temp files of killed writes and crops no record lists, but
    nothing a unit without its records part (still to run, perhaps running in another shard) may write."""
    done = done_parts(out)
    busy_units = [u for u in plan.units if R.part_name(u.id) not in done]
    busy_parts = {R.part_name(u.id) for u in busy_units} | {scan_part}
    wanted = {R.part_name(u.id) for u in plan.units} | {scan_part}
    for folder in (out / R.RECORDS_DIR, out / R.REJECTS_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            temp = _TEMP.match(path.name)
            if (path.name.startswith("part-") and path.name not in wanted) or (temp and temp["target"] not in busy_parts):
                path.unlink(missing_ok=True)

    crops = out / R.CROPS_DIR
    if not crops.is_dir():
        return
    busy_stems, busy_dirs = _crop_stems(busy_units, options.sizes)
    table = R.read_table(out / R.RECORDS_DIR, ["image"])
    listed = set(table.column("image").to_pylist()) if table is not None else set()
    for dirpath, _, files in os.walk(crops, topdown=False):
        rel_dir = Path(dirpath).relative_to(out).as_posix()
        for name in files:
            if f"{rel_dir}/{name}" in listed:
                continue
            temp = _TEMP.match(name)
            target = temp["target"] if temp else name
            if f"{rel_dir}/{_FRAME.sub('', target.rsplit('.', 1)[0])}" in busy_stems:
                continue  # a crop (or its temp) that a unit still to run may be writing now
            os.unlink(os.path.join(dirpath, name))
        if Path(dirpath) != crops and rel_dir not in busy_dirs and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _crop_stems(units: Iterable[Unit], sizes: Iterable[int]) -> tuple[set[str], set[str]]:
    """`crops/.../<item stem>` of every crop these units may write, and every folder on the way."""
    stems: set[str] = set()
    dirs: set[str] = set()
    for unit in units:
        for item in unit.items:
            for size in sizes:
                rel = PurePosixPath(R.crop_relpath(size, item.source, item.identity, item.key, None))
                stems.add(str(rel.with_suffix("")))
                dirs.update(str(p) for p in rel.parents)
    return stems, dirs
