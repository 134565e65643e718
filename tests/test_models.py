"""Every registered model through the one loop: shapes at 64/128/256, learning, exact resume, loading, --help.

Parametrised over `fextrain.models.MODELS`, so a newly registered model is tested the same way (it needs a
tiny architecture in `_train_fixtures.TINY_ARCHS`).
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from _train_fixtures import TINY_ARCHS, TINY_LOSSES, tiny_config, write_tiny_manifest

from cli.main import main as fex
from fextrain.models import MODELS, affect_vector, build_model, load_editor, one_hot
from fextrain.train import train

ALL = sorted(MODELS)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_model_has_a_tiny_architecture_and_declares_the_contract():
    for name, cls in MODELS.items():
        assert name in TINY_ARCHS, f"add a tiny architecture for {name!r} to tests/_train_fixtures.py"
        assert cls.name == name and cls.summary and cls.metrics and cls.reconstruction in cls.metrics
        assert set(cls.progress) <= set(cls.metrics) and cls.defaults.batch >= 2


@pytest.mark.parametrize("name", ALL)
def test_a_width_of_zero_is_refused_when_the_model_is_built(name):
    from fextrain.runtime import TrainingError

    for key, value in TINY_ARCHS[name].items():
        zero = [0] * len(value) if isinstance(value, list) else 0
        if key in ("g_repeat",):  # a count of blocks, where 0 is a (degenerate) choice, not a width
            continue
        with pytest.raises(TrainingError, match=f"{key} must be at least 1"):
            build_model(name, size=64, num_affects=3, num_identities=2, **{**TINY_ARCHS[name], key: zero})


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("name", ALL)
def test_shapes_at_every_size(name, size):
    torch.manual_seed(0)
    k = 5
    model = build_model(name, size=size, num_affects=k, num_identities=3, **TINY_ARCHS[name]).eval()
    assert "generator" in model.networks()
    x = torch.rand(2, 3, size, size) * 2 - 1
    src = one_hot(torch.tensor([0, 4]), k)
    with torch.no_grad():
        onehot = model.edit(x, src, one_hot(torch.tensor([1, 2]), k))
        mixed = model.edit(x, src, torch.tensor([[0.5, 0.5, 0, 0, 0], [0, 0.3, 0, 0, 0]]))
        logits = model.classify(x)
    assert onehot.shape == mixed.shape == x.shape and onehot.abs().max() <= 1 and torch.isfinite(mixed).all()
    if model.identity_edit:  # it keeps the input's expression: the identity code is what steers it
        with torch.no_grad():
            other = model.edit(x, src, one_hot(torch.tensor([1, 2]), k), identity=torch.tensor([1, 2]))
        assert not torch.allclose(onehot, other, rtol=1e-3, atol=0)
    else:
        assert not torch.allclose(onehot, mixed, rtol=1e-3, atol=0)  # mixed / scaled vectors reach the generator
    assert logits is None or logits.shape == (2, k)


# Whether each model's discriminator gives a real/fake logit (`real_fake`, FExGAN's Table 1 binary columns):
# every registered model needs an entry.
REAL_FAKE = {"fexgan": True, "fexgan-skip": True, "degan": True, "stargan": False, "exprgan": False,
             "warp-refine": True}


@pytest.mark.parametrize("name", ALL)
def test_real_fake_is_the_discriminators_decision_in_eval_mode(name):
    assert name in REAL_FAKE, f"say in tests/test_models.py REAL_FAKE whether {name!r} gives real/fake logits"
    torch.manual_seed(0)
    model = build_model(name, size=64, num_affects=5, num_identities=3, **TINY_ARCHS[name]).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        logits = model.real_fake(x)
        again = model.real_fake(x[:1])
    if not REAL_FAKE[name]:
        assert logits is None
        return
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert torch.allclose(again, logits[:1], atol=1e-5)  # eval mode: an image's logit does not depend on its batch
    if name != "degan":
        assert torch.equal(logits, model.discriminator(x)[0])


@pytest.mark.parametrize("name", ALL)
def test_a_few_real_steps_reduce_reconstruction(name, manifest, tmp_path):
    """The wiring (gradients reach what reconstruction needs), not image quality."""
    run = tmp_path / name
    cfg = tiny_config(manifest, run, name, steps=60, batch=8, lr=1e-3, log_every=10)
    if name == "fexgan":
        cfg.arch["dropout"] = 0.0
    train(cfg, progress=False)
    key = MODELS[name].reconstruction
    rec = [r[key] for r in _rows(run) if key in r]
    assert len(rec) >= 5 and (rec[-1] + rec[-2]) / 2 < 0.75 * rec[0], rec  # fexgan ~0.45x, stargan ~0.7x


@pytest.mark.parametrize("name", ALL)
def test_exact_resume(name, manifest, tmp_path):
    """Stopped by Ctrl-C at step 5 and resumed = 10 steps at once: every logged scalar and every weight.

    Both halves of the schedules (fexgan's binary weight, stargan's learning-rate decay) start at step 6.
    """
    whole = tiny_config(manifest, tmp_path / "whole", name, steps=10)
    train(whole, progress=False)
    part = tiny_config(manifest, tmp_path / "part", name, steps=10)

    def interrupt(step, logged):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(part, progress=False, on_step=interrupt).status == "interrupted"
    assert train(part, resume=True, progress=False).step == 10
    a, b = _rows(tmp_path / "whole"), _rows(tmp_path / "part")
    assert [r["step"] for r in b] == list(range(1, 11))
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in set(ra) - {"img_per_s", "data_frac"}:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["step"], key)
    ea, eb = load_editor(tmp_path / "whole"), load_editor(tmp_path / "part")
    for net in ea.gan.networks():
        for (k, p), q in zip(ea.gan.networks()[net].state_dict().items(), eb.gan.networks()[net].state_dict().values()):
            assert torch.allclose(p.float(), q.float(), atol=1e-6), (net, k)


@pytest.mark.parametrize("name", ALL)
def test_load_editor_from_run_and_export(name, manifest, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(manifest, run, name, steps=2), progress=False)
    ed = load_editor(run)
    assert ed.model == name and ed.size == 64 and ed.step == 2 and len(ed.affects) == 7
    assert ed.identities == ("test:id0", "test:id1") and ed.config["model"] == name
    assert not any(m.training for m in ed.gan.modules())
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    src = one_hot(torch.tensor([4, 4, 4]), 7)
    tgt = torch.stack([affect_vector(s, ed.affects) for s in ("joy", "anger+sadness", "0.5*joy")])
    with torch.no_grad():
        out = ed.edit(x, src, tgt)
        assert out.shape == x.shape and torch.equal(out, ed.edit(x, src, tgt))  # deterministic
        logits = ed.classify(x)
        assert logits is None or logits.shape == (3, 7)
        only_g = load_editor(run / "generator.safetensors")
        assert only_g.classify(x) is None and torch.allclose(only_g.edit(x, src, tgt), out, atol=1e-6)


def test_train_help_lists_the_registry():
    result = CliRunner().invoke(fex, ["train", "--help"])
    assert result.exit_code == 0
    for name, cls in MODELS.items():
        assert name in result.output and cls.summary[:30] in " ".join(result.output.split())
    bad = CliRunner().invoke(fex, ["train", "--out", "x", "--model", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output


# ExprGAN's three stages and DE-GAN's late phase and recognition stage within the 7 steps of the DDP test
DDP_STAGES = {"exprgan": {"stage2_start": 0.3, "stage3_start": 0.6}, "degan": {"recognition_start": 0.72}}


def _train_every_model_in_this_process(manifest: Path, root: Path) -> None:
    """One torchrun worker of `test_every_model_under_torchrun`: each registered model in turn, 7 steps."""
    from fextrain import distributed as dd

    info = dd.init_distributed("cpu")
    shutdown, dd.shutdown = dd.shutdown, lambda info: None  # one group for all: Gloo re-joins race after a destroy
    try:
        for name in ALL:
            loss = {**TINY_LOSSES.get(name, {}), **DDP_STAGES.get(name, {})}
            train(tiny_config(manifest, root / name, name, steps=7, loss=loss, cache_dir=str(root / "cache")),
                  progress=False, log=print)
        # warp-refine's cpu-64 form: the fitted prior in buffers DDP does not broadcast, no residual head
        arch = {**TINY_ARCHS["warp-refine"], "prior": True, "residual": False}
        train(tiny_config(manifest, root / "warp-refine-prior", "warp-refine", steps=7, arch=arch,
                          cache_dir=str(root / "cache")), progress=False, log=print)
    finally:
        shutdown(info)


def test_every_model_under_torchrun(manifest, tmp_path):
    """Every model under DDP (Gloo, 2 CPU processes) through all its stages: ExprGAN's three (some with idle
    parameters: `sometimes_unused`), DE-GAN's late G-more-often phase and its recognition stage, StarGAN's
    gradient penalty (double backward) and cycle. One torchrun for all models: the interpreters' start-up,
    not the steps, is what costs here."""
    import subprocess
    import sys

    import numpy as np

    repo = Path(__file__).parents[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
           str(manifest), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ALL:
        runs = 2 if name == "warp-refine" else 1  # and its prior form, below
        assert proc.stdout.count(f"training {name} 64px on cpu x2") == runs  # global rank 0 alone speaks
        rows = _rows(tmp_path / name)
        assert [r["step"] for r in rows] == list(range(1, 8)) and any(MODELS[name].reconstruction in r for r in rows)
        assert all(np.isfinite(v) for r in rows for k, v in r.items() if isinstance(v, float)), name
    assert [r["step"] for r in _rows(tmp_path / "warp-refine-prior")] == list(range(1, 8))
    assert proc.stdout.count("expression prior: mean flow") == 1  # rank 0 fits it and speaks; rank 1 reads the cache
    g_step = _rows(tmp_path / "stargan")[4]  # n_critic 5: G (edit and cycle) trains on step 5
    assert {"d_gp", "g_rec"} <= set(g_step)


if __name__ == "__main__":  # under torchrun, from test_every_model_under_torchrun
    import sys

    _train_every_model_in_this_process(Path(sys.argv[1]), Path(sys.argv[2]))
