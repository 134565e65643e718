"""Named training presets (`fex train --preset auto|paper|cpu-64`, issue 24): every model's cpu-64 preset
trains, where a preset lies in the config's precedence, what auto picks, and the errors a user can make."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from _train_fixtures import write_tiny_manifest

from cli.main import main as fex
from fextrain.config import ConfigError, TrainConfig, from_dict, resolve, save_json
from fextrain.models import MODELS
from fextrain.train import train

ALL = sorted(MODELS)
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("presets"))


def _small(manifest: Path, out: Path) -> dict:
    """Settings that keep a run to one cheap step without touching the preset's widths or losses."""
    return {"manifest": str(manifest), "out": str(out), "device": "cpu", "amp": "off", "steps": 1, "batch": 4,
            "log_every": 1, "sample_every": 0, "num_samples": 2, "cache_dir": str(out.parent / f"{out.name}-cache")}


@pytest.mark.parametrize("name", ALL)
def test_the_cpu64_preset_builds_and_trains_a_step(name, manifest, tmp_path):
    preset = MODELS[name].presets["cpu-64"]
    assert "paper" not in MODELS[name].presets and "auto" not in MODELS[name].presets  # names the CLI reserves
    cfg = from_dict({"model": name, "preset": "cpu-64", **_small(manifest, tmp_path / "run")})
    assert (cfg.preset, cfg.size, cfg.lr) == ("cpu-64", 64, preset.lr or MODELS[name].defaults.lr)
    assert cfg.arch == preset.arch  # the run's own settings (steps, batch) lay over it; its widths stay
    result = train(cfg, progress=False, log=lambda _msg: None)
    assert result.step == 1 and all(math.isfinite(v) for v in result.metrics.values())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["preset"] == "cpu-64" and all(saved["arch"][k] == v for k, v in preset.arch.items())
    for key, value in preset.loss.items():  # a nested setting merges into the model's own (id_net's other keys)
        got = saved["loss"][key]
        assert {k: got[k] for k in value} == value if isinstance(value, dict) else got == value
    # its full settings as the preset gives them build a valid config too (steps, batch and all)
    full = from_dict({"model": name, "preset": "cpu-64"})
    assert (full.steps, full.batch, full.size) == (preset.steps, preset.batch, preset.size)


def test_directly_built_configs_and_configs_without_a_preset_stay_the_papers():
    assert TrainConfig().preset == "paper" and TrainConfig().size == 128
    cfg = from_dict({"model": "stargan"})
    assert (cfg.preset, cfg.size, cfg.steps, cfg.lr, cfg.arch, cfg.loss.n_critic) == ("paper", 128, 200_000, 1e-4, {}, 5)
    # a merge into one run's settings never reaches the class attribute the next run reads
    from_dict({"model": "exprgan", "preset": "cpu-64", "loss": {"id_net": {"steps": 3}}})
    assert MODELS["exprgan"].presets["cpu-64"].loss["id_net"] == {"width": 16}


def test_precedence_preset_config_file_set_option(tmp_path):
    preset = MODELS["fexgan"].presets["cpu-64"]
    (tmp_path / "c.yaml").write_text("batch: 8\narch:\n  latent_dim: 16\n")
    cfg = resolve(tmp_path / "run", config_file=tmp_path / "c.yaml", preset="cpu-64",
                  sets=["arch.base_width=16", "steps=7"], options={"steps": 5})
    assert (cfg.preset, cfg.size, cfg.steps, cfg.batch) == ("cpu-64", 64, 5, 8)
    assert cfg.arch == {**preset.arch, "latent_dim": 16, "base_width": 16}
    # --set preset=... names the preset above the CLI's default one; --preset above both
    assert resolve(tmp_path / "run", preset="auto", sets=["preset=paper"]).size == 128
    assert resolve(tmp_path / "run", preset="auto", sets=["preset=paper"], options={"preset": "cpu-64"}).size == 64


def test_auto_is_paper_on_cuda_and_cpu64_elsewhere(monkeypatch):
    assert from_dict({"preset": "auto", "device": "cpu"}).preset == "cpu-64"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU boundary: this machine has none
    on_gpu = from_dict({"preset": "auto"})
    assert (on_gpu.preset, on_gpu.size, on_gpu.steps) == ("paper", 128, 100_000)
    assert from_dict({"preset": "auto", "device": "cpu"}).preset == "cpu-64"  # --device cpu on a GPU machine


def test_resume_keeps_the_runs_preset_and_refuses_another(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_json(from_dict({"manifest": "m.parquet", "preset": "paper"}), run / "config.json")
    # the CLI's default (auto: cpu-64 here) does not replace the run's own preset ...
    assert resolve(run, resume=True, preset="auto").preset == "paper"
    # ... nor does a run made before presets existed take one (it ran the paper's settings)
    saved = json.loads((run / "config.json").read_text())
    del saved["preset"]
    (run / "config.json").write_text(json.dumps(saved))
    assert resolve(run, resume=True, preset="auto").preset == "paper"
    with pytest.raises(ConfigError, match="cannot resume .*: preset changed from paper to cpu-64") as err:
        resolve(run, resume=True, options={"preset": "cpu-64"})
    assert "another --out" in err.value.hint


def test_a_saved_run_outlives_its_preset_being_retuned_or_removed(manifest, tmp_path, monkeypatch):
    """A run's config.json and checkpoint hold every setting, so a preset changed in a later fex release neither
    changes the run when it resumes or loads for an edit nor makes it unreadable."""
    from fextrain.models import load_editor, load_run

    run = tmp_path / "run"
    train(from_dict({"model": "fexgan", "preset": "cpu-64", **_small(manifest, run)}), progress=False,
          log=lambda _msg: None)
    made = json.loads((run / "config.json").read_text())
    monkeypatch.setattr(MODELS["fexgan"], "presets", {})  # the preset is gone
    cfg = resolve(run, resume=True, options={"steps": 2})
    assert (cfg.preset, cfg.arch, cfg.steps) == ("cpu-64", made["arch"], 2)
    assert train(cfg, resume=True, progress=False, log=lambda _msg: None).step == 2
    assert load_run(run, "cpu")[0].arch == made["arch"] and load_editor(run).step == 2
    # a new run still cannot name it
    with pytest.raises(ConfigError, match="unknown preset 'cpu-64' for model fexgan; its presets: auto, paper$"):
        from_dict({"model": "fexgan", "preset": "cpu-64"})


def test_cli_default_auto_trains_cpu64_names_it_and_refuses_another_on_resume(manifest, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--manifest", str(manifest), "--out", str(run), "--device", "cpu", "--amp", "off",
            "--no-progress", "--threads", "1", "--batch", "4", "--steps", "1", "--sample-every", "0",
            f"--set=cache_dir={tmp_path / 'cache'}", "--set=num_samples=2", "--set=arch.d_widths=[8, 16, 32]"]
    result = CliRunner().invoke(fex, args)
    assert result.exit_code == 0, result.output
    assert "preset cpu-64" in result.output.splitlines()[0]  # the run's first line says which preset
    saved = json.loads((run / "config.json").read_text())
    preset = MODELS["fexgan"].presets["cpu-64"]
    assert (saved["preset"], saved["size"], saved["steps"], saved["batch"]) == ("cpu-64", 64, 1, 4)
    assert saved["arch"]["base_width"] == preset.arch["base_width"] and saved["arch"]["d_widths"] == [8, 16, 32]
    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["config"]["preset"] == "cpu-64"
    again = CliRunner().invoke(fex, ["train", "--out", str(run), "--resume", "--preset", "paper"])
    assert again.exit_code == 2 and "error: cannot resume" in again.output
    assert "preset changed from cpu-64 to paper" in again.output and "hint:" in again.output


def test_an_unknown_preset_is_a_user_error(tmp_path):
    result = CliRunner().invoke(fex, ["train", "--out", str(tmp_path / "run"), "--set", "preset=fast"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: unknown preset 'fast' for model fexgan; its presets: auto, paper, cpu-64" in result.output
    assert "hint: `fex train --help` lists each model's presets" in result.output
    assert not (tmp_path / "run").exists()
    choice = CliRunner().invoke(fex, ["train", "--out", str(tmp_path / "run"), "--preset", "fast"])
    assert choice.exit_code == 2 and "'auto', 'paper', 'cpu-64'" in choice.output


def test_train_help_shows_each_models_cpu64_preset():
    result = CliRunner().invoke(fex, ["train", "--help"])
    assert result.exit_code == 0
    lines = [line.strip() for line in result.output.split("Options:")[0].splitlines()]  # the models' block
    for name, cls in MODELS.items():
        p = cls.presets["cpu-64"]
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} "))
        assert lines[at + 1] == f"--preset cpu-64: {p.size} px, {p.steps} steps, batch {p.batch}; {p.note}"
        assert p.note and "being measured" not in p.note  # each says what it was measured to do
