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


@pytest.mark.parametrize("data,message", [
    ({"lr": -1}, "lr must be a positive number"),
    ({"lr": float("inf")}, "lr must be a positive number"),
    ({"steps": -1}, "steps must be at least 0"),
    ({"steps": 0}, "steps 0 would save fexgan's untrained networks"),  # only a prior alone is whole at step 0
    ({"model": "warp-refine", "steps": 0, "arch": {"prior": True}}, "steps 0 would save warp-refine's untrained"),
    ({"batch": 1}, "batch must be at least 2"),
    ({"size": 8}, "size must be at least 16"),
    ({"seed": -1}, "seed must be at least 0"),
    ({"log_every": 0}, "log_every must be at least 1"),
    ({"ckpt_every": 0}, "ckpt_every must be at least 1"),
    ({"sample_every": -1}, "sample_every must be at least 0"),
    ({"holdout_fold": -1}, "holdout_fold must be a fold number"),
    ({"holdout_fold": "one"}, "holdout_fold must be a number"),
    ({"betas": [1.5, 0.999]}, r"betas must be two numbers in \[0, 1\)"),
    ({"betas": [0.5]}, "betas must be two numbers"),
    ({"betas": 0.5}, "betas must be two numbers"),
    ({"data_on_device": "maybe"}, "data_on_device must be auto, on or off"),
    ({"loss": {"gamma": -5}}, "loss.gamma must be a finite number, 0 or more"),
    ({"loss": {"decay_step": "abc"}}, "loss.decay_step must be a number"),
    ({"model": "stargan", "loss": {"n_critic": 0}}, "n_critic must be at least 1"),
    ({"augment": {"jitter": -0.1}}, "augment.jitter must be a finite number"),
    ({"arch": {"latent_dim": -1}}, "arch.latent_dim must be a finite number"),
    ({"arch": {"d_widths": [8, -16]}}, "arch.d_widths must be a finite number"),
])
def test_values_outside_their_domain_are_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_yaml_on_off_and_set_conflicts():
    # YAML reads a bare on/off as a boolean: it still means the setting's on/off
    cfg = from_dict(parse_set(["amp=off", "data_on_device=on", "channels_last=off", "loss.decay_step=7.0"]))
    assert (cfg.amp, cfg.data_on_device, cfg.channels_last, cfg.loss.decay_step) == ("off", "on", "off", 7)
    with pytest.raises(ConfigError, match="arch was set to a value above"):
        parse_set(["arch=5", "arch.latent_dim=8"])


@pytest.mark.parametrize("sets,message", [
    (["lr=-1"], "error: lr must be a positive number; got -1.0"),
    (["steps=0"], "error: steps 0 would save fexgan's untrained networks, which edit nothing"),
    (["betas=[0.5, 2]"], "error: betas must be two numbers in [0, 1)"),
])
def test_cli_reports_a_bad_value_in_one_line(tmp_path, sets, message):
    result = CliRunner().invoke(fex, ["train", "--manifest", str(tmp_path / "m.parquet"),
                                      "--out", str(tmp_path / "run"), *[f"--set={s}" for s in sets]])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_resume_with_another_model_names_the_change(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_json(from_dict({"model": "fexgan", "manifest": "m.parquet"}), run / "config.json")
    with pytest.raises(ConfigError, match="cannot resume .*: model changed from fexgan to stargan") as err:
        resolve(run, resume=True, options={"model": "stargan"})
    assert "another --out" in err.value.hint
    result = CliRunner().invoke(fex, ["train", "--out", str(run), "--resume", "--model", "stargan"])
    assert result.exit_code == 2 and "model changed from fexgan to stargan" in result.output, result.output
    assert resolve(run, resume=True, options={"model": "fexgan"}).model == "fexgan"
    (run / "config.json").write_text('{"model": "fexgan", "steps": 1')  # a torn file
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        resolve(run, resume=True)
