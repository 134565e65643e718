"""`fex ingest --executor ray`: the units of a run as Ray tasks, on an existing cluster or a local Ray.

Each unit is one task (one CPU). Workers write crops and parts straight into OUT, so on a cluster OUT and
the sources must be on storage every node mounts at the same path, and fex must be installed on every
node (docs/scale.md). A task keeps its `UnitProcessor` in a per-process cache, so the dlib models load once
per Ray worker process, not once per task. A task whose worker dies (killed, out of memory, node lost)
is run again by Ray (`RETRIES`); its writes are atomic and deterministic, so the retry rewrites the same
files and the dead attempt leaves at most hidden temp files, which the run sweeps at its end. Ctrl-C
cancels the outstanding tasks. Progress comes from task completions.

Ray is an optional extra (`pip install 'fex[ray]'`); nothing here imports it until a run asks for it.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit

from fexdata.errors import IngestError
from fexdata.ingest.plan import IngestOptions, Unit
from fexdata.ingest.faces import FaceFinder
from fexdata.ingest.worker import UnitProcessor, UnitResult, make_finder

RETRIES = 3              # runs of a unit after its worker died, before the run gives up on it
CONNECT_TIMEOUT_S = 5.0  # Ray's own connect to a dead address hangs for minutes: we knock first
LOCAL_OBJECT_STORE = 128 << 20  # results are a few hundred bytes: a local Ray needs no large store
# Ray starts its workers at nice 15; a local Ray started for one ingest runs them at normal priority, like the
# local pool's workers (at nice 15, other work on the machine took up to half their CPU in our benchmark).
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}

# Per Ray worker process, which Ray reuses for later tasks and later runs of the same driver: the face
# finders (the models) by options, kept; and the current run's processor, whose memory of the crop folders
# it made must not outlive the run (the next run may write into an OUT deleted and made again).
_FINDERS: dict[IngestOptions, FaceFinder] = {}
_RUN: dict = {"id": None, "processor": None, "loads": 0}  # loads: finders this worker made for the run


def run_units(out: Path, options: IngestOptions, pending: Sequence[Unit], address: str | None,
              workers: int, advance: Callable[[UnitResult], None]) -> dict:
    """Run `pending` as Ray tasks, calling `advance` with each result as its task completes; returns
    the cluster's CPUs (workers), how many worker processes ran tasks and how often they loaded models for it
    (never more than once each; a worker Ray reuses from an earlier run of this driver keeps its models).

    `address`: a cluster to join (`auto`, `HOST:PORT`, `ray://HOST:PORT`; default $RAY_ADDRESS), else a
    local Ray with `workers` CPUs is started for the run and stopped after it. A Ray already initialised
    in this process (a notebook, a test) is used as it is.
    """
    ray = import_ray()
    started = _connect(ray, address, workers)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        loads: dict[int, int] = {}  # worker pid -> model loads in it
        task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_run_unit_task)
        run_id = uuid.uuid4().hex
        remaining = [task.remote(run_id, str(out), options, unit) for unit in pending]
        try:
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=min(len(remaining), 64), timeout=0.1)
                for ref in done:
                    result, pid, loaded = _result(ray, ref)
                    loads[pid] = max(loads.get(pid, 0), loaded)
                    advance(result)
        except BaseException:  # Ctrl-C, or a unit that failed for good: stop the others
            for ref in remaining:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
    return {"workers": cpus, "worker_processes": len(loads), "model_loads": sum(loads.values())}


def preflight(address: str | None) -> None:
    """Fail before any work when Ray is missing or nothing answers at the cluster's address."""
    ray = import_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and not ray.is_initialized():
        _check_reachable(address)


def _run_unit_task(run_id: str, out: str, options: IngestOptions, unit: Unit) -> tuple[UnitResult, int, int]:
    """Body of one Ray task: (the unit's result, this worker's pid, model loads in this worker for this run)."""
    if _RUN["id"] != run_id:  # (UnitProcessor keeps OpenCV to one thread itself)
        if _RUN["processor"] is not None:
            _RUN["processor"].close()
        loads = 0
        if options not in _FINDERS:
            _FINDERS[options] = make_finder(options)
            loads = 1
        _RUN.update(id=run_id, processor=UnitProcessor(Path(out), options, finder=_FINDERS[options]), loads=loads)
    return _RUN["processor"].run(unit), os.getpid(), _RUN["loads"]


def _result(ray, ref) -> tuple[UnitResult, int, int]:
    try:
        return ray.get(ref)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError) as exc:
        raise IngestError(f"a unit's Ray worker died {RETRIES + 1} times ({type(exc).__name__})",
                          hint="see the Ray logs (ray logs, or /tmp/ray/session_latest/logs on the node); "
                               "finished units are kept: run the same command again to resume") from None


def import_ray():
    try:
        import ray
    except ImportError:
        raise IngestError("--executor ray: Ray is not installed in this environment",
                          hint="pip install 'fex[ray]' (on every node of the cluster), or use --executor local")
    return ray


def _connect(ray, address: str | None, workers: int) -> bool:
    """Join the cluster at `address` (or $RAY_ADDRESS), or start a local Ray; True if we started one."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level="WARNING",
                 object_store_memory=LOCAL_OBJECT_STORE,
                 _system_config={} if "RAY_worker_niceness" in os.environ else LOCAL_SYSTEM_CONFIG)
        return True
    try:
        ray.init(address=address, logging_level="WARNING")
    except ConnectionError as exc:
        raise IngestError(f"--ray-address {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})",
                          hint=_ADDRESS_HINT) from None
    return False


_ADDRESS_HINT = ("start one with `ray start --head` (and `ray start --address HEAD:6379` on the other nodes), "
                 "pass the address `ray status` shows, or leave --ray-address out to start a local Ray")


def _check_reachable(address: str) -> None:
    """Fail in seconds, with a reason, when nothing listens at the cluster's address."""
    if address == "auto":
        try:
            # Ray's own lookup of the cluster on this machine (`ray start`); raises ConnectionError if none.
            from ray._private.services import canonicalize_bootstrap_address_or_die
            address = canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError as exc:
            raise IngestError(f"--ray-address auto: {str(exc).splitlines()[0]}", hint=_ADDRESS_HINT) from None
        except ImportError:  # a Ray without that helper: let ray.init find it
            return
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise IngestError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT",
                          hint=_ADDRESS_HINT)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise IngestError(f"--ray-address {address}: no Ray cluster answers at {host}:{port} "
                          f"({exc.strerror or type(exc).__name__})", hint=_ADDRESS_HINT) from None
