"""A run that was killed, is resumed from elsewhere or goes bad: what `fex train` keeps, drops, refuses and says.

Real tiny runs on CPU (tests/_train_fixtures.py); a kill is reproduced by what it leaves behind (a torn
log line, a checkpoint's temporary file, no checkpoint at all) or by an exception out of the loop.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from _train_fixtures import TINY_ARCH, TINY_ARCHS, tiny_config, write_tiny_manifest

from cli.main import main as fex
from fexdata.paths import locked
from fexdata.versions import versions
from fextrain.checkpoint import load_checkpoint, save_checkpoint
from fextrain.config import from_dict
from fextrain.train import (LOCK_NAME, NonFiniteWeights, TrainingError, check_resumable, loop, nonfinite_state, setup,
                            train)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_drops_a_torn_last_metrics_line(manifest, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(manifest, run, steps=2)
    train(cfg, progress=False)
    with open(run / "metrics.jsonl", "a") as fh:  # a kill in the middle of the next line's write
        fh.write('{"step": 3, "g_l1": 0.5')
    messages: list[str] = []
    cfg.steps = 3
    train(cfg, resume=True, progress=False, log=messages.append)
    assert _steps(run) == [1, 2, 3]
    assert any("torn last line" in m for m in messages)
    assert not list(run.glob(".metrics.jsonl.*"))  # rewritten through a temp file that is gone

    # a bad line elsewhere is not a kill's: refused with its line number, the file left as it was
    lines = (run / "metrics.jsonl").read_text().splitlines()
    broken = "\n".join([lines[0], "not json", *lines[1:]]) + "\n"
    (run / "metrics.jsonl").write_text(broken)
    cfg.steps = 4
    with pytest.raises(TrainingError, match="metrics.jsonl: line 2 is not a metrics record"):
        train(cfg, resume=True, progress=False)
    assert (run / "metrics.jsonl").read_text() == broken


def test_a_restarted_run_does_not_keep_the_killed_attempts_log(manifest, tmp_path):
    run = tmp_path / "run"

    def kill(step, logged):
        if step == 3:
            raise KeyboardInterrupt  # a second Ctrl-C: stops at once, before any checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(manifest, run, steps=5, sample_every=1), progress=False, on_step=kill)
    assert not (run / "checkpoints" / "last.pt").exists() and _steps(run) == [1, 2, 3]
    messages: list[str] = []
    train(tiny_config(manifest, run, steps=2, sample_every=1), progress=False, log=messages.append)
    assert _steps(run) == [1, 2]
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step_0000001.png", "step_0000002.png"]
    assert any("dropped 3 line(s)" in m for m in messages)


def test_outputs_a_kill_left_unwritten_after_a_checkpoint_are_completed(manifest, tmp_path):
    """Killed after a checkpoint but before the grid and export that follow it: the resume writes them as
    the uninterrupted run did (same pixels, same weights)."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    train(tiny_config(manifest, ref, steps=4, ckpt_every=2, sample_every=2), progress=False)

    def stop(step, logged):
        if step == 3:
            raise KeyboardInterrupt  # a second Ctrl-C: stops at once; the checkpoint of step 2 stays

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(manifest, run, steps=4, ckpt_every=2, sample_every=2), progress=False, on_step=stop)
    (run / "samples" / "step_0000002.png").unlink()  # as if killed between the checkpoint and its grid
    cfg = tiny_config(manifest, run, steps=4, ckpt_every=2, sample_every=2)
    train(cfg, resume=True, progress=False)
    # the last checkpoint is written, then the grid and the export: a kill between them
    for name in ("samples/step_0000004.png", "generator.safetensors", "generator.json"):
        (run / name).unlink()
    (run / ".generator.safetensors.k1ll3d.tmp").write_bytes(b"half an export")
    messages: list[str] = []
    result = train(cfg, resume=True, progress=False, log=messages.append)
    assert result.status == "up-to-date" and any("which a stop had left unwritten" in m for m in messages)
    for name in ("samples/step_0000002.png", "samples/step_0000004.png"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
    want, got = load_file(ref / "generator.safetensors"), load_file(run / "generator.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert json.loads((run / "generator.json").read_text())["step"] == 4
    assert not list(run.glob(".*.tmp"))
    train(cfg, resume=True, progress=False, log=messages.append)  # complete: nothing to write
    assert "left unwritten" not in messages[-2]


def test_one_process_per_run_and_a_killed_writers_temp_files_go(manifest, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(manifest, run, steps=1)
    train(cfg, progress=False)
    # what a SIGKILL during a checkpoint write leaves (atomic_path's temp name)
    tmp = run / "checkpoints" / ".last.pt.k1ll3d.tmp"
    tmp.write_bytes(b"half a checkpoint")
    cfg.steps = 2
    with locked(run / LOCK_NAME, RuntimeError("test holds it")):  # another process writing this run
        with pytest.raises(TrainingError, match="another fex train is writing to"):
            train(cfg, resume=True, progress=False)
        assert tmp.exists()  # not touched while someone else may be writing it
        with pytest.raises(TrainingError, match="another fex train is writing to"):
            train(tiny_config(manifest, run, steps=1), progress=False)
    assert train(cfg, resume=True, progress=False).step == 2
    assert not tmp.exists() and load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    # a new run into a fresh folder takes the lock too
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with locked(fresh / LOCK_NAME, RuntimeError("test holds it")):
        with pytest.raises(TrainingError, match="another fex train"):
            train(tiny_config(manifest, fresh, steps=1), progress=False)


def test_nonfinite_state_finds_an_inf_gradients_adam_update():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(8, 3)).square().mean().backward()
    opt.step()
    assert nonfinite_state({"g": net}, {"g": opt}) is None
    net[0].bias.grad = torch.full_like(net[0].bias, float("inf"))  # the loss itself was finite
    opt.step()
    assert torch.isnan(net[0].bias).all()  # Adam's inf / inf
    assert nonfinite_state({"g": net}, {"g": opt}) == "g.0.bias"
    assert nonfinite_state({}, {"g": opt}) == "the g optimiser's exp_avg"


def test_no_checkpoint_from_nonfinite_optimiser_state(manifest, tmp_path):
    run = tmp_path / "run"
    session = setup(tiny_config(manifest, run, steps=4, ckpt_every=2))

    def poison(step, logged):
        if step == 3:  # Adam's second moment goes inf: the next update is 0, the weights and loss stay finite
            state = next(iter(session.opts["generator"].state.values()))
            state["exp_avg_sq"].fill_(float("inf"))

    with pytest.raises(NonFiniteWeights, match=r"generator optimiser's exp_avg_sq at step 4.*checkpoint \(step 2\)"):
        loop(session, poison)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert not (run / "generator.safetensors").exists()
    assert _steps(run) == [1, 2, 3, 4]  # the losses were finite: the NaN guard on losses saw nothing


def test_resume_from_another_folder(manifest, tmp_path, monkeypatch):
    run = tmp_path / "run"
    sets = [f"--set=arch.{k}={json.dumps(v)}" for k, v in TINY_ARCH.items()]
    common = ["--device", "cpu", "--no-progress", "--log-every", "1", "--batch", "4", "--amp", "off"]
    monkeypatch.chdir(manifest.parent.parent)
    result = CliRunner().invoke(fex, ["train", "--manifest", f"{manifest.parent.name}/manifest.parquet", "--out",
                                      str(run), "--size", "64", "--steps", "1", *common, *sets,
                                      f"--set=cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["manifest"] == str(manifest.resolve())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(fex, ["train", "--out", str(run), "--resume", "--steps", "2", *common])
    assert result.exit_code == 0 and "at step 2" in result.output, result.output

    # a run written before the path was stored absolute: one clear line, and --manifest fixes it
    (run / "config.json").write_text(json.dumps({**saved, "manifest": f"{manifest.parent.name}/manifest.parquet"}))
    result = CliRunner().invoke(fex, ["train", "--out", str(run), "--resume", "--steps", "3", *common])
    assert result.exit_code == 2 and "relative to the folder the run was started from" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(fex, ["train", "--out", str(run), "--resume", "--steps", "3", "--manifest",
                                      str(manifest), *common])
    assert result.exit_code == 0, result.output


def test_versions_are_recorded_and_a_change_does_not_stop_a_resume(manifest, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(manifest, run, steps=1)
    train(cfg, progress=False)
    now = versions()
    assert json.loads((run / "config.json").read_text())["versions"] == now
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["config"]["versions"] == now
    state["config"]["versions"] = {**now, "torch": "1.0.0"}  # as if trained under another torch
    save_checkpoint(run / "checkpoints" / "last.pt", state)
    messages: list[str] = []
    cfg.steps = 2
    assert train(cfg, resume=True, progress=False, log=messages.append).step == 2
    assert any(f"other versions (torch 1.0.0 -> {now['torch']})" in m for m in messages)


@pytest.mark.parametrize("model,change,message", [
    ("fexgan", {"size": 128}, "size changed from 64 to 128"),
    ("fexgan", {"arch": {**TINY_ARCH, "latent_dim": 8}}, "arch changed"),
    ("fexgan", {"affects": ["anger", "joy"]}, "affects changed"),
    ("fexgan", {"holdout_fold": 1}, "holdout_fold changed from None to 1"),
    ("degan", {"identities": ["test:id0", "test:id9"]}, "identities changed"),  # sizes its identity head
])
def test_check_resumable_refuses_what_the_weights_depend_on(tmp_path, model, change, message):
    base = dict(manifest="m.parquet", out=str(tmp_path), model=model, size=64, arch=dict(TINY_ARCHS[model]),
                affects=["anger", "joy", "neutral"], identities=["test:id0", "test:id1"])
    saved = from_dict(base)
    with pytest.raises(TrainingError, match=f"cannot resume {tmp_path}: {message}"):
        check_resumable(from_dict({**base, **change}), saved)
    # what may change: steps, lr, cadences, loss weights, and (for models without an identity head) identities
    same = from_dict({**base, "steps": 9, "lr": 1e-3, "log_every": 3, "identities": ["test:id5"]})
    if model == "fexgan":
        check_resumable(same, saved)
