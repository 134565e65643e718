"""Runtime choices: bf16 autocast where it is native (CUDA, CPUs with AVX512-BF16/AMX), devices, layouts."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fextrain import distributed as dd
from fextrain import runtime
from fextrain.runtime import TrainingError, amp_dtype, cpu_native_bf16, resolve_device, use_channels_last


def test_cpu_bf16_detection_agrees_with_the_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo here")
    flags = set(cpuinfo.read_text().split())
    assert cpu_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_uses_bf16_on_cpus_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) == (torch.bfloat16 if native else None)
    assert amp_dtype("bf16", cpu) == torch.bfloat16 and amp_dtype("off", cpu) is None
    with pytest.raises(TrainingError, match="amp must be auto, bf16 or off"):
        amp_dtype("fp16", cpu)


def test_device_and_layout_choices():
    assert resolve_device("cpu", dd.DistInfo()) == torch.device("cpu")
    with pytest.raises(TrainingError, match="unknown device"):
        resolve_device("tpu", dd.DistInfo())
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA device"):
            resolve_device("cuda", dd.DistInfo())
    assert use_channels_last("auto", torch.device("cpu")) is False and use_channels_last("on", torch.device("cpu"))
    with pytest.raises(TrainingError, match="channels_last must be"):
        use_channels_last("sideways", torch.device("cpu"))
