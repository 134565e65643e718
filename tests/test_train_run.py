"""`fex train` end to end on a tiny 64x64 manifest on CPU: outputs, exact resume, learning, stops, errors."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _train_fixtures import TINY_ARCH, tiny_config, write_tiny_manifest

from cli.main import main as fex
from fexdata.affects import AFFECTS
from fexdata.manifest import ManifestError, read_manifest, write_manifest
from fextrain.checkpoint import load_checkpoint
from fextrain.models import load_run
from fextrain.models.fexgan import affect_vector, one_hot
from fextrain.train import NonFiniteLoss, TrainingError, setup, train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

PER_STEP = ("g_total", "g_adv_bin", "g_adv_cls", "g_kl", "g_l1", "d_total", "acc_real_cls", "binary_weight")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cli_run_writes_the_run_directory(manifest, tmp_path):
    run = tmp_path / "run"
    sets = [f"--set=arch.{k}={json.dumps(v)}" for k, v in TINY_ARCH.items()]
    result = CliRunner().invoke(fex, [
        "train", "--manifest", str(manifest), "--out", str(run), "--size", "64", "--steps", "3", "--batch", "4",
        "--device", "cpu", "--log-every", "1", "--sample-every", "2", "--no-progress",
        f"--set=cache_dir={tmp_path / 'cache'}", "--set=num_samples=2", *sets])
    assert result.exit_code == 0, result.output
    assert "done:" in result.output and "step 3" in result.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["size"] == 64 and cfg["steps"] == 3 and cfg["affects"][0] == "anger" and cfg["arch"]["latent_dim"] == 16
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 3 and {"nets", "optimizers", "rng", "config"} <= set(state)
    assert set(state["nets"]) == set(state["optimizers"]) == {"generator", "discriminator"}
    assert (run / "generator.safetensors").is_file() and json.loads((run / "generator.json").read_text())["step"] == 3
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert [r["step"] for r in _rows(run)] == [1, 2, 3]
    assert {"g_l1", "d_real_bin", "acc_fake_cls", "img_per_s", "data_frac"} <= set(_rows(run)[0])
    grids = sorted((run / "samples").glob("step_*.png"))
    assert [g.name for g in grids] == ["step_0000002.png", "step_0000003.png"]
    grid = cv2.imread(str(grids[-1]))
    assert grid.shape == (2 * 66 + 2, 8 * 66 + 2, 3)  # 2 sources x (source + 7 affects), 2 px gaps
    # what tensorboard will show
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tb")).Reload()
    assert {"loss/g_l1", "loss/d_fake_cls", "acc/acc_real_bin", "perf/img_per_s"} <= set(events.Tags()["scalars"])
    assert "samples" in events.Tags()["images"]


def test_resume_reproduces_the_uninterrupted_run(manifest, tmp_path):
    loss = {"decay_step": 3}  # the schedule changes inside the resumed part
    whole = tiny_config(manifest, tmp_path / "whole", steps=6, ckpt_every=100)
    whole.loss.decay_step = 3
    train(whole, progress=False)

    part = tiny_config(manifest, tmp_path / "part", steps=4, ckpt_every=2)
    part.loss.decay_step = loss["decay_step"]
    train(part, progress=False)
    messages: list[str] = []
    part.steps = 6
    result = train(part, resume=True, progress=False, log=messages.append)
    assert result.start_step == 4 and result.step == 6
    assert any("from step 4" in m for m in messages)

    a, b = _rows(tmp_path / "whole"), _rows(tmp_path / "part")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        for key in PER_STEP:
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-7), (ra["step"], key)
    assert a[3]["binary_weight"] == 0.1 and a[2]["binary_weight"] == 1.0
    _, g_whole, _, _ = load_run(tmp_path / "whole")
    _, g_part, _, step = load_run(tmp_path / "part")
    assert step == 6
    for (name, p), q in zip(g_whole.state_dict().items(), g_part.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), name

    # already there: nothing to train
    again = train(part, resume=True, progress=False, log=messages.append)
    assert again.status == "up-to-date" and "nothing to train" in messages[-1]


def test_the_callers_config_is_left_as_it_was(manifest, tmp_path):
    """setup() resolves a copy (absolute manifest, affects, identities, the model's whole arch); the caller's
    config stays as given, through a run and its resume."""
    cfg = tiny_config(manifest, tmp_path / "run", steps=1)
    given = copy.deepcopy(cfg)
    run = setup(cfg, log=lambda _m: None)
    assert cfg == given
    assert run.cfg.affects == list(AFFECTS) and run.cfg.identities == ["test:id0", "test:id1"]
    assert set(run.cfg.arch) > set(cfg.arch) and run.cfg.recipe is None and run.cfg.versions
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.start = 1  # type: ignore[misc]
    train(cfg, progress=False)
    assert train(dataclasses.replace(cfg, steps=2), resume=True, progress=False).step == 2
    assert cfg == given
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["affects"] == list(AFFECTS) and saved["arch"] == run.cfg.arch

def test_reconstruction_l1_falls(manifest, tmp_path):
    """Proves the wiring (gradients reach every part that L1 needs), not image quality."""
    cfg = tiny_config(manifest, tmp_path / "learn", steps=80, batch=8, lr=1e-3, log_every=10,
                      arch={**TINY_ARCH, "dropout": 0.0})
    train(cfg, progress=False)
    l1 = [r["g_l1"] for r in _rows(tmp_path / "learn")]
    assert l1[-1] < 0.45 * l1[0], l1  # ~0.52 -> ~0.16 here


def test_ctrl_c_stops_after_the_step_and_saves(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", steps=10)

    def interrupt(step, logged):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    result = train(cfg, progress=False, on_step=interrupt)
    assert result.status == "interrupted" and result.step == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_nan_stops_and_keeps_the_last_good_checkpoint(manifest, tmp_path, monkeypatch):
    import fextrain.models.fexgan as train_module

    real = train_module.generator_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        total, terms = real(*args, **kwargs)
        if calls["n"] >= 3:
            total = total * float("nan")
            terms = {**terms, "g_total": terms["g_total"] * float("nan")}
        return total, terms

    monkeypatch.setattr(train_module, "generator_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"between steps 3 and 3 \(g_total=nan\).*step 2"):
        train(tiny_config(manifest, run, steps=6, ckpt_every=2), progress=False)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["nets"]["generator"].values() if t.is_floating_point())
    assert not (run / "generator.safetensors").exists()


def _rewrite(manifest: Path, dst: Path, edit) -> Path:
    df, meta = read_manifest(manifest, columns=None)
    df = edit(df.copy())
    dst.mkdir(parents=True, exist_ok=True)
    for rel in df["image"]:  # keep image paths inside the new manifest's folder
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        src = manifest.parent / rel
        if src.exists() and not (dst / rel).exists():
            os.link(src, dst / rel)
    return write_manifest(df, dst / "manifest.parquet", affects=meta["affects"])


@pytest.mark.parametrize("case,edit,size,message", [
    ("no-train", lambda df: df.assign(split="val"), 64, "no rows in the train split"),
    ("one-affect", lambda df: df[df["affect"] == "joy"], 64, "only one affect"),
    ("too-small", lambda df: df, 128, "smaller than the model's 128 px"),
])
def test_bad_manifests_fail_before_the_first_step(manifest, tmp_path, case, edit, size, message):
    bad = _rewrite(manifest, tmp_path / case, edit)
    with pytest.raises(ManifestError, match=message):
        train(tiny_config(bad, tmp_path / "run", size=size), progress=False)
    assert not (tmp_path / "run").exists()


def test_missing_crop_and_run_dir_misuse(manifest, tmp_path):
    bad = _rewrite(manifest, tmp_path / "missing", lambda df: df)
    df, _ = read_manifest(bad, columns=["image", "split"])
    (bad.parent / df["image"][0]).unlink()
    with pytest.raises(ManifestError, match="1 of 12 train crops are missing"):
        train(tiny_config(bad, tmp_path / "run"), progress=False)
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tiny_config(manifest, tmp_path / "run"), resume=True, progress=False)
    cfg = tiny_config(manifest, tmp_path / "run", steps=1)
    train(cfg, progress=False)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(cfg, progress=False)
    cfg.arch = {**cfg.arch, "latent_dim": 8}
    with pytest.raises(TrainingError, match="arch changed"):
        train(cfg, resume=True, progress=False)
    result = CliRunner().invoke(fex, ["train", "--out", str(tmp_path / "nothing"), "--resume"])
    assert result.exit_code == 2 and "error: --resume: no checkpoint" in result.output


def test_mixed_affects_at_inference(manifest, tmp_path):
    train(tiny_config(manifest, tmp_path / "run", steps=2), progress=False)
    cfg, g, d, step = load_run(tmp_path / "run")
    assert step == 2 and d is not None and not g.training
    ds_img = cv2.cvtColor(cv2.imread(str(manifest.parent / read_manifest(manifest, ["image"])[0]["image"][0])),
                          cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(ds_img).permute(2, 0, 1)[None].float() / 127.5 - 1
    specs = ("anger", "anger+sadness", "0.5*joy", "joy", "sadness")
    vecs = torch.stack([affect_vector(s, cfg.affects) for s in specs])
    unit = torch.eye(len(cfg.affects))
    anger, joy, sadness = (unit[cfg.affects.index(a)] for a in ("anger", "joy", "sadness"))
    assert torch.equal(vecs, torch.stack([anger, anger + sadness, 0.5 * joy, joy, sadness]))
    with torch.no_grad():
        mu, _ = g.encode(x, one_hot(torch.tensor([4]), len(cfg.affects)))
        out = g.decode(mu.expand(len(specs), -1), vecs)
    assert out.shape == (5, 3, 64, 64) and torch.isfinite(out).all()
    assert (out.abs() > 0.99).float().mean() < 0.05  # a face, not a tanh pinned at -1/+1
    # a mixed condition is neither of its parts, a scaled one is not the full affect
    assert not torch.allclose(out[1], out[0]) and not torch.allclose(out[1], out[4])
    assert not torch.allclose(out[2], out[3])


def test_bf16_autocast_and_channels_last_on_cpu(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", steps=2, amp="bf16", channels_last="on")
    messages: list[str] = []
    result = train(cfg, progress=False, log=messages.append)
    assert "bf16, channels_last" in messages[0]
    assert all(np.isfinite(v) for v in result.metrics.values())
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(t.dtype == torch.float32 for t in state["nets"]["generator"].values() if t.is_floating_point())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_with_bf16_channels_last_and_resume(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", steps=3, device="cuda", amp="auto", channels_last="auto")
    messages: list[str] = []
    result = train(cfg, progress=False, log=messages.append)
    assert "cuda" in messages[0] and "channels_last" in messages[0] and "images on gpu" in messages[0]
    assert all(np.isfinite(v) for v in result.metrics.values())
    cfg.steps = 5
    assert train(cfg, resume=True, progress=False).step == 5
    _, g, _, _ = load_run(tmp_path / "run", "cuda")
    assert next(g.parameters()).is_cuda


# ~15 s: three interpreters start; the only way to run the CLI under torchrun without GPUs
def test_torchrun_two_processes_on_cpu(manifest, tmp_path):
    """The same command under torchrun: DDP over Gloo, a pair sampler per rank, only rank 0 writes."""
    import subprocess

    run = tmp_path / "ddp"
    sets = [f"--set=arch.{k}={json.dumps(v)}" for k, v in TINY_ARCH.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cli.main", "train", "--manifest", str(manifest), "--out", str(run), "--size", "64",
           "--steps", "2", "--batch", "4", "--device", "cpu", "--log-every", "1", "--no-progress",
           f"--set=cache_dir={tmp_path / 'cache'}", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done:") == 1 and "cpu x2" in proc.stdout
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 2 and len(state["rng"]) == 2  # both ranks' random streams, for exact resume
    assert state["rng"][0]["sampler"] != state["rng"][1]["sampler"]
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["img_per_s"] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_run(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", steps=3, device="cuda", compile=True)
    result = train(cfg, progress=False)
    assert result.step == 3 and all(np.isfinite(v) for v in result.metrics.values())
    _, g, _, _ = load_run(tmp_path / "run", "cuda")  # the saved weights carry no torch.compile prefixes
