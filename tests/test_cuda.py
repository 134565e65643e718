"""Training on a CUDA device (`pytest -m cuda`; benchmarks/gpu_check.sh runs them): every registered model in
bf16 with channels_last, torch.compile against eager, exact resume, and the images' single trip to the GPU.

They skip where no GPU is visible. FEX_TEST_DEVICE=cpu runs the ones that mean something on a CPU there (the
dry run of benchmarks/gpu_check.sh does), so that their code is checked before a GPU is at hand.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from _train_fixtures import tiny_config, write_tiny_manifest

from fextrain.models import MODELS
from fextrain.train import Run, setup, train

DEVICE = os.environ.get("FEX_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.usefixtures("one_thread"),  # conftest.py
    pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
cuda_only = pytest.mark.skipif(not ON_CUDA, reason="measures CUDA itself (kernels, host-to-device copies)")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


def _session(cfg) -> Run:
    return setup(cfg, log=lambda _m: None)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_in_bf16_with_channels_last(model, manifest, tmp_path):
    # 5 steps: StarGAN updates G on every 5th and DE-GAN its recognizer in the last stage, so every network
    # of every model takes a backward pass and an optimiser step
    cfg = tiny_config(manifest, tmp_path / "run", model, steps=5, device=DEVICE, amp="bf16", channels_last="on")
    run = _session(cfg)
    assert run.rt.amp == torch.bfloat16 and run.rt.channels_last
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in run.raw.items()}
    for step in range(1, cfg.steps + 1):
        scalars = run.model.train_step(run.data.next(), run.context(step))
        assert scalars and all(bool(torch.isfinite(v).all()) for v in scalars.values()), (step, scalars)
    convs = [p for net in run.raw.values() for p in net.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for name, net in run.raw.items():
        params = list(net.parameters())
        assert all(p.device.type == run.rt.device.type and p.dtype == torch.float32 for p in params), name
        assert any(not torch.equal(p, q) for p, q in zip(params, before[name])), f"{name} did not move"


@cuda_only
def test_compiled_losses_match_eager(manifest, tmp_path, monkeypatch):
    # fexgan-skip: the model the GPU check trains; each compile takes tens of seconds (test_train_run.py compiles
    # fexgan too)
    model = "fexgan-skip"
    # Inductor draws its own random numbers unless told to fall back to eager's: dropout and noise then match.
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "fallback_random", True)
    losses = {}
    for compiled in (False, True):
        cfg = tiny_config(manifest, tmp_path / f"run-{compiled}", model, device=DEVICE, amp="off", compile=compiled)
        run = _session(cfg)
        losses[compiled] = [{k: float(v) for k, v in run.model.train_step(run.data.next(), run.context(i)).items()}
                            for i in (1, 2, 3)]
    for step, (eager, comp) in enumerate(zip(losses[False], losses[True]), 1):
        assert eager.keys() == comp.keys()
        for key in eager:
            assert comp[key] == pytest.approx(eager[key], rel=2e-2, abs=2e-3), (step, key)


def test_resume_on_the_device_reproduces_the_uninterrupted_run(manifest, tmp_path):
    # Deterministic kernels, so that a difference can only come from what the checkpoint restores (weights,
    # optimisers, the CPU, CUDA and sampler random streams); ops without such a kernel only warn.
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        decay = {"decay_step": 2}  # the binary weight's step, else half of each run's own total
        whole = tiny_config(manifest, tmp_path / "whole", steps=4, device=DEVICE, amp="auto", loss=decay)
        train(whole, progress=False)
        part = tiny_config(manifest, tmp_path / "part", steps=2, device=DEVICE, amp="auto", loss=decay)
        train(part, progress=False)
        part.steps = 4
        result = train(part, resume=True, progress=False)
    finally:
        torch.use_deterministic_algorithms(was)
    assert result.start_step == 2 and result.step == 4
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("whole", "part")}
    assert [r["step"] for r in rows["part"]] == [1, 2, 3, 4]
    for a, b in zip(rows["whole"], rows["part"]):
        for key in ("g_total", "g_l1", "d_total"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)


def _htod_bytes(run: Run, batches: int, trace: Path) -> int:
    """Bytes copied host -> device while the loop draws `batches` batches (the profiler's CUDA memcpy records)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(batches):
            run.data.next()
        torch.cuda.synchronize()
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    return sum(int(e.get("args", {}).get("bytes", 0)) for e in events if "HtoD" in str(e.get("name", "")))


@cuda_only
def test_fused_data_path_moves_the_images_to_the_gpu_once(manifest, tmp_path):
    per_batch = {}
    for mode in ("auto", "off"):  # "off" is the host path: the control that shows the copies are counted
        run = _session(tiny_config(manifest, tmp_path / f"run-{mode}", device=DEVICE, data_on_device=mode))
        run.data.next()  # first draw outside the measurement
        per_batch[mode] = _htod_bytes(run, 4, tmp_path / f"trace-{mode}.json") / 4
        assert run.data.store.where == ("gpu" if mode == "auto" else "host")
    image_batch = run.cfg.batch * np.prod(run.data.store.host.shape[1:])  # uint8 images of one batch
    assert per_batch["off"] >= image_batch, per_batch  # the host path copies every batch's images
    assert per_batch["auto"] < image_batch / 10, per_batch  # the GPU path copies indices, not images
