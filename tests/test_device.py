"""`--device` has one reading for every command (fextrain/device.py), raising the command's own error family."""
from __future__ import annotations

import sys

import pytest
import torch

from fexdata.errors import EditError, EvalError, TrainingError
from fextrain import distributed as dd
from fextrain.device import resolve_device
from fextrain.runtime import resolve_device as training_device

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("error", [TrainingError, EvalError, EditError])
def test_each_command_gets_its_own_error_with_the_same_words(error):
    assert resolve_device("cpu", error) == "cpu"
    assert resolve_device("auto", error) == ("cuda" if CUDA else "cpu")
    with pytest.raises(error, match="unknown device 'tpu'") as err:
        resolve_device("tpu", error)  # `fex eval --device tpu` went on to fail inside torch before
    assert err.value.hint == "use auto, cpu, cuda or cuda:N"
    if not CUDA:
        with pytest.raises(error, match="--device cuda:1: no CUDA device is visible to torch") as err:
            resolve_device("cuda:1", error)
        assert err.value.hint == "use --device cpu"


def test_training_device_is_a_torch_device():
    assert training_device("cpu", dd.DistInfo()) == torch.device("cpu")
    assert training_device("auto", dd.DistInfo()).type == ("cuda" if CUDA else "cpu")


def test_auto_is_the_cpu_where_torch_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert resolve_device("auto", EditError) == "cpu"
    with pytest.raises(EditError, match="no CUDA device"):
        resolve_device("cuda", EditError)
