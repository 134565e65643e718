"""`fex ingest --executor ray` on a real local Ray cluster: same output as the local pool, worker deaths
retried, models loaded once per worker process, and one-line errors when Ray is missing or unreachable."""
import _thread
import importlib.util
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from _ingest_fixtures import crop_pixels

from cli.main import main
from fexdata.ingest import IngestError, ingest, resolve_sources
from fexdata.ingest.plan import IngestOptions
from fexdata.sample import write_studio_tree

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'fex[ray]')")


def records(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "records").sort_values("image").reset_index(drop=True)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """Four clips and a broken one, and the local process pool's output for them (2 workers)."""
    base = tmp_path_factory.mktemp("ray")
    root = write_studio_tree(base / "studio", identities=2, affects=("joy", "anger"), seconds=0.5, fps=30, size=192)
    (root / "ada" / "fear.mp4").write_bytes(b"not a video")
    pool = base / "pool"
    summary = ingest(resolve_sources([str(root)], "studio", log=lambda _: None), pool, IngestOptions(), workers=2,
                     progress=False, log=lambda _: None)
    assert summary["run"]["executor"] == {"name": "local", "workers": 2}
    return root, pool


def run_ray(root: Path, out: Path) -> dict:
    return ingest(resolve_sources([str(root)], "studio", log=lambda _: None), out, IngestOptions(), workers=2,
                  progress=False, log=lambda _: None, executor="ray")


def assert_same_output(out: Path, pool: Path) -> None:
    pd.testing.assert_frame_equal(records(out), records(pool))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "rejects"), pd.read_parquet(pool / "rejects"))
    assert crop_pixels(out) == crop_pixels(pool) and len(crop_pixels(pool)) == 4 * 15
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []


@needs_ray
def test_local_ray_with_two_cpus_equals_the_local_pool(studio, tmp_path):
    import ray

    root, pool = studio
    summary = run_ray(root, tmp_path / "ray")
    assert not ray.is_initialized()  # the Ray started for the run is stopped after it
    assert_same_output(tmp_path / "ray", pool)
    ran = summary["run"]["executor"]
    assert ran["name"] == "ray" and ran["workers"] == 2 and summary["run"]["units_processed"] == 5
    # one model load per worker process that ran tasks, not one per task (5 tasks)
    assert 1 <= ran["worker_processes"] <= 2 and ran["model_loads"] == ran["worker_processes"]


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra


def test_executor_ray_without_ray_installed_says_how_to_get_it(tmp_path, no_ray):
    root = tmp_path / "faces"
    (root / "kim" / "joy").mkdir(parents=True)
    result = CliRunner().invoke(main, ["ingest", str(root), "--layout", "folder", "--out", str(tmp_path / "o"),
                                       "--executor", "ray"])
    assert result.exit_code == 2
    assert result.output.splitlines() == ["error: --executor ray: Ray is not installed in this environment",
                                          "hint: pip install 'fex[ray]' (on every node of the cluster), "
                                          "or use --executor local"]


@needs_ray
def test_unreachable_cluster_fails_in_seconds(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "faces"
    (root / "kim" / "joy").mkdir(parents=True)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["ingest", str(root), "--layout", "folder", "--out", str(tmp_path / "o"),
                                       "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert result.exit_code == 2 and time.monotonic() - started < 60
    first, hint = result.output.splitlines()
    assert first.startswith(f"error: --ray-address 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port}")
    assert "ray start --head" in hint
    with pytest.raises(IngestError, match="expected auto, HOST:PORT"):
        ingest([], tmp_path / "o2", executor="ray", ray_address="nowhere")


@pytest.fixture(scope="module")
def cluster():
    """A Ray already running in this process (as on a cluster): ingest uses it and leaves it running."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             object_store_memory=128 << 20)
    yield ray
    ray.shutdown()


def _task_pids() -> list[int]:
    """Ray workers running an ingest task now (Ray titles a busy worker `ray::<function>`)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if fh.read().startswith(b"ray::_run_unit_task"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


@needs_ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers through /proc")
def test_a_killed_ray_worker_is_retried_and_the_output_is_the_same(cluster, studio, tmp_path):
    root, pool = studio
    out = tmp_path / "ray-killed"
    killed: list[int] = []

    def kill_one_worker_mid_task() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            busy = _task_pids()
            # once a task has written crops (and not yet its records part), kill the worker running it
            if busy and (out / "crops").is_dir() and any(p.is_file() for p in (out / "crops").rglob("*.png")):
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_worker_mid_task, daemon=True)
    killer.start()
    summary = run_ray(root, out)
    killer.join()
    assert killed, "no Ray worker was caught mid-task"
    assert summary["run"]["units_processed"] == 5  # the killed task's unit came back from its retry
    assert_same_output(out, pool)
    assert cluster.is_initialized()  # a Ray the run did not start is left running


def _parts(out: Path) -> int:
    return len(list((out / "records").glob("part-*.parquet")))


@needs_ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers through /proc")
def test_ctrl_c_cancels_the_outstanding_tasks_and_a_rerun_resumes(cluster, studio, tmp_path):
    root, pool = studio
    out = tmp_path / "ray-interrupted"

    def ctrl_c_once_a_task_writes() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any((out / "crops").rglob("*.png")):
            time.sleep(0.005)
        _thread.interrupt_main()  # KeyboardInterrupt in the main thread, as Ctrl-C gives

    threading.Thread(target=ctrl_c_once_a_task_writes, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_ray(root, out)
    deadline = time.monotonic() + 60
    while _task_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _task_pids() == []  # the running task was stopped and the queued ones never started
    stopped_at = _parts(out)
    time.sleep(1.0)
    assert _parts(out) == stopped_at < 5  # nothing went on writing, and not everything was done
    summary = run_ray(root, out)
    assert summary["run"]["units_resumed"] == stopped_at
    assert_same_output(out, pool)
    # the next run of this driver reuses the Ray workers (and their models) into an OUT made anew
    shutil.rmtree(out)
    summary = run_ray(root, out)
    assert summary["run"]["executor"]["model_loads"] == 0  # loaded by the runs before, in these workers
    assert_same_output(out, pool)
