"""`fex train` across nodes under torchrun: two "nodes" of one process each on this host (Gloo, c10d
rendezvous on 127.0.0.1), only global rank 0 writing, and a resume on a different number of processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _train_fixtures import TINY_ARCH, write_tiny_manifest

from fexdata.errors import TrainingError
from fextrain.checkpoint import load_checkpoint
from fextrain.distributed import cuda_device_index

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(launcher: list[str], manifest: Path, run: Path, steps: int, *extra: str) -> list[str]:
    sets = [f"--set=arch.{k}={json.dumps(v)}" for k, v in TINY_ARCH.items()]
    return [sys.executable, *launcher,
            "-m", "cli.main", "train", "--manifest", str(manifest), "--out", str(run), "--size", "64",
            "--steps", str(steps), "--batch", "4", "--device", "cpu", "--log-every", "1", "--ckpt-every", "1",
            "--no-progress", f"--set=cache_dir={run.parent / 'cache'}", *sets, *extra]


def test_two_nodes_then_resume_in_one_process(tmp_path):
    """One process per node keeps it fast (interpreter start-ups are the cost) and still tells global from
    local ranks: both processes have LOCAL_RANK 0, so only RANK can make one of them the writer."""
    manifest = write_tiny_manifest(tmp_path / "data")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    port = _free_port()
    torchrun = ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "fex-test"]
    nodes = [subprocess.Popen(_train_cmd(torchrun, manifest, run, 2), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("done:") == 1 and "cpu x2" in stdout  # global rank 0 alone speaks
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 2 and len(state["rng"]) == 2  # both ranks' random streams
    assert len({json.dumps(s["sampler"], sort_keys=True) for s in state["rng"]}) == 2  # a pair stream per rank
    assert len(list((run / "tb").rglob("events.out.tfevents.*"))) == 1  # one writer: global rank 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]

    # The same run continued by one plain process: weights, optimisers and step carry over; per-rank
    # random streams cannot (two were saved), so they restart from the seed, and it says so.
    resumed = subprocess.run(_train_cmd([], manifest, run, 4, "--resume"),
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "random states for 2 process(es), this run has 1" in resumed.stdout
    assert "resuming" in resumed.stdout and "cpu x2" not in resumed.stdout
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 4 and len(state["rng"]) == 1
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize("local_rank, devices, expected", [(0, 1, 0), (1, 2, 1), (3, 4, 3)])
def test_local_ranks_map_to_their_node_devices(local_rank, devices, expected):
    assert cuda_device_index(local_rank, devices) == expected


def test_more_local_ranks_than_gpus_is_a_clear_error():
    with pytest.raises(TrainingError, match="local rank 2 has no GPU: this node shows 2") as info:
        cuda_device_index(2, 2)
    assert "--nproc_per_node 2" in info.value.hint
