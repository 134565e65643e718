"""Checkpoints: atomic writes, safe loading (no arbitrary pickle), safetensors export, load_editor / load_run."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from _train_fixtures import TINY_ARCH

from fextrain.checkpoint import (CheckpointError, FORMAT, export_generator, load_checkpoint,
                                 save_checkpoint)
from fextrain.config import TrainConfig, save_json, to_dict
from fextrain.models import build_model, load_editor, load_run
from fextrain.models.fexgan import one_hot

AFFECTS = ["anger", "joy", "neutral"]


def _config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(manifest="m.parquet", out=str(tmp_path), size=64, arch=dict(TINY_ARCH), affects=list(AFFECTS))


def _models(cfg: TrainConfig):
    torch.manual_seed(3)
    m = build_model("fexgan", size=64, num_affects=len(AFFECTS), **TINY_ARCH)
    return m.generator, m.discriminator


def test_atomic_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"format": FORMAT, "step": 1})

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": FORMAT, "step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_loading_refuses_arbitrary_pickles(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"format": FORMAT, "step": 1, "x": Payload()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(evil)
    assert "would run" not in capsys.readouterr().out
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a fex checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_checkpoint(tmp_path / "missing.pt")


def test_export_and_load_run(tmp_path):
    cfg = _config(tmp_path)
    g, d = _models(cfg)
    # put something non-default in the BatchNorm statistics, which the export must carry
    g.train()
    g(torch.randn(4, 3, 64, 64), one_hot(torch.tensor([0, 1, 2, 0]), 3), one_hot(torch.tensor([2, 2, 1, 0]), 3))
    export_generator(g, tmp_path, to_dict(cfg), step=7)
    meta = json.loads((tmp_path / "generator.json").read_text())
    assert meta["affects"] == AFFECTS and meta["size"] == 64 and meta["step"] == 7 and meta["model"] == "fexgan"

    # the export alone (no checkpoint, no config.json): from the run directory or the file itself
    for path in (tmp_path, tmp_path / "generator.safetensors"):
        ed = load_editor(path)
        assert ed.step == 7 and ed.model == "fexgan" and ed.affects == tuple(AFFECTS) and ed.size == 64
        assert not ed.gan.training and ed.classify(torch.zeros(1, 3, 64, 64)) is None
        for (name, a), b in zip(g.state_dict().items(), ed.gan.generator.state_dict().values()):
            assert torch.equal(a, b), name
    (tmp_path / "generator.json").unlink()  # the metadata inside the safetensors file is enough
    assert load_editor(tmp_path / "generator.safetensors").step == 7

    # without a checkpoint, load_run still gives the generator (no discriminator)
    save_json(cfg, tmp_path / "config.json")
    cfg2, g3, d3, step = load_run(tmp_path)
    assert d3 is None and step == 7 and cfg2.affects == AFFECTS

    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {
        "format": FORMAT, "step": 9, "config": json.loads((tmp_path / "config.json").read_text()),
        "nets": {"generator": g.state_dict(), "discriminator": d.state_dict()}})
    cfg4, g4, d4, step4 = load_run(tmp_path)
    assert step4 == 9 and d4 is not None and not d4.training
    x, a = torch.rand(2, 3, 64, 64) * 2 - 1, one_hot(torch.tensor([1, 2]), 3)
    g.eval()
    d.eval()
    with torch.no_grad():
        assert torch.allclose(g(x, a, a)[0], g4(x, a, a)[0])
        ed = load_editor(tmp_path)
        assert torch.allclose(ed.edit(x, a, a), g(x, a, a)[0], atol=1e-6)
        assert torch.allclose(ed.classify(x), d(x)[1], atol=1e-6)
    with pytest.raises(CheckpointError, match="not a fex run directory"):
        load_run(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_editor(tmp_path / "elsewhere")


def test_format_1_checkpoints_still_load(tmp_path):
    """Runs saved before the model registry (generator/g_opt keys, target_law at the top) still load."""
    cfg = _config(tmp_path)
    g, d = _models(cfg)
    old = to_dict(cfg)
    old["target_law"], old["target_sigma"] = old["loss"].pop("target_law"), old["loss"].pop("target_sigma")
    old["target_law"] = "scaled"  # the only law of those days
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {
        "format": 1, "step": 5, "config": old, "generator": g.state_dict(), "discriminator": d.state_dict()})
    ed = load_editor(tmp_path)
    assert ed.step == 5 and ed.config["loss"]["target_law"] == "scaled"
    assert torch.equal(ed.gan.generator.mu.weight, g.mu.weight)
