"""Training config: strict keys, YAML/JSON files, --set, precedence, and what --resume starts from."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from _train_fixtures import TINY_ARCH, write_tiny_manifest

from cli.main import main as fex
from fextrain.config import ConfigError, from_dict, load_file, parse_set, resolve, save_json, to_dict


def test_strict_keys_and_types():
    cfg = from_dict({"steps": 5.0, "loss": {"gamma": 3}, "betas": [0.1, 0.2], "arch": {"latent_dim": 8}})
    assert cfg.steps == 5 and cfg.loss.gamma == 3.0 and cfg.betas == (0.1, 0.2) and cfg.arch == {"latent_dim": 8}
    with pytest.raises(ConfigError, match="unknown config key loss.gama"):
        from_dict({"loss": {"gama": 1}})
    with pytest.raises(ConfigError, match="steps must be a whole number"):
        from_dict({"steps": 2.5})
    with pytest.raises(ConfigError, match="compile must be true or false"):
        from_dict({"compile": "yes"})
    assert parse_set(["loss.gamma=50", "augment.flip=false", "device=cuda:1"]) == {
        "loss": {"gamma": 50}, "augment": {"flip": False}, "device": "cuda:1"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["gamma"])


def test_precedence_file_set_options_and_resume(tmp_path):
    (tmp_path / "c.yaml").write_text("steps: 10\nbatch: 8\nloss:\n  gamma: 5\n  beta: 0.5\n")
    (tmp_path / "c.json").write_text(json.dumps({"steps": 11}))
    assert load_file(tmp_path / "c.json") == {"steps": 11}
    cfg = resolve(tmp_path / "run", config_file=tmp_path / "c.yaml", sets=["loss.gamma=7", "batch=4"],
                  options={"batch": 16, "lr": None})
    assert (cfg.steps, cfg.batch, cfg.loss.gamma, cfg.loss.beta, cfg.lr) == (10, 16, 7.0, 0.5, 2e-4)
    # --resume starts from the run's own config; new options override it
    run = tmp_path / "run"
    run.mkdir()
    save_json(cfg, run / "config.json")
    again = resolve(run, resume=True, options={"steps": 20})
    assert again.steps == 20 and again.loss.gamma == 7.0 and again.batch == 16
    assert resolve(run, resume=False).loss.gamma == 100.0  # a new run does not inherit it
    assert to_dict(again)["betas"] == [0.5, 0.999]
    with pytest.raises(ConfigError, match="no such config file"):
        resolve(run, config_file=tmp_path / "missing.yaml")


def test_cli_defaults_do_not_override_the_config_file(tmp_path):
    torch.set_num_threads(1)
    manifest = write_tiny_manifest(tmp_path / "data", identities=1, affects=("joy", "neutral"), per_cell=2)
    (tmp_path / "c.yaml").write_text(json.dumps({
        "steps": 2, "batch": 2, "size": 64, "device": "cpu", "log_every": 1, "num_samples": 1,
        "cache_dir": str(tmp_path / "cache"), "arch": TINY_ARCH}))
    result = CliRunner().invoke(fex, ["train", "--manifest", str(manifest), "--out", str(tmp_path / "run"),
                                      "--config", str(tmp_path / "c.yaml"), "--seed", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["steps"], saved["batch"], saved["size"], saved["seed"], saved["lr"]) == (2, 2, 64, 3, 2e-4)
    result = CliRunner().invoke(fex, ["train", "--out", str(tmp_path / "run2"), "--config", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2 and "no such config file" in result.output
