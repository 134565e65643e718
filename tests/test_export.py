"""`fex export RUN --format onnx` and `fex edit MODEL.onnx`: every registered model's ONNX file against torch
(onnxruntime on the CPU), the CLI on a real tiny trained run, and the edit pipeline on onnxruntime against the
torch backend on the same photo and clip.

Parametrised over `fextrain.models.MODELS`, so a newly registered model is exported and checked the same way
(it needs a tiny architecture in `_train_fixtures.TINY_ARCHS`).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _edit_fixtures import build_run, canvas_photo, clip_with_audio, fex_edit
from _train_fixtures import TINY_ARCHS

from cli.main import main as fex
from fexdata.affects import AFFECTS
from fexdata.images import read_rgb, write_png
from fexdata.ingest.video import iter_frames
from fextrain.export import TOLERANCE, load_onnx, onnx_bytes, read_metadata
from fextrain.models import MODELS, Editor, build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

IDENTITIES = ("demo:a", "demo:b", "demo:c")


def tiny_editor(name: str, **arch: Any) -> Editor:
    """A tiny 64 px model of `name` (its tiny arch under `arch`) whose normalisation statistics moved off their
    initial values (a few train-mode forwards), in eval mode behind the Editor interface; random buffers (a
    fitted expression prior) are filled with noise."""
    torch.manual_seed(0)
    gan = build_model(name, size=64, num_affects=len(AFFECTS), num_identities=len(IDENTITIES),
                      **{**TINY_ARCHS[name], **arch})
    for key, buffer in gan.named_buffers():
        if key.split(".")[-1].startswith("prior_"):
            buffer.normal_(0, 0.05)
    gan.train()
    with torch.no_grad():
        for _ in range(3):
            x = torch.rand(4, 3, 64, 64) * 2 - 1
            gan.edit(x, torch.rand(4, len(AFFECTS)), torch.rand(4, len(AFFECTS)))
    gan.eval()
    config = {"model": name, "affects": list(AFFECTS), "size": 64, "identities": list(IDENTITIES)}
    return Editor(gan=gan, model=name, affects=AFFECTS, size=64, config=config, identities=IDENTITIES, step=7,
                  device=torch.device("cpu"), has_discriminator=True)


# Slow: an export takes 5-10 s of CPU per model (TorchDynamo tracing, then the ONNX translation); the default
# suite exports one model through the CLI below, which checks it against torch too.
@pytest.mark.slow
@pytest.mark.parametrize("name,arch", [(name, {}) for name in sorted(MODELS)] + [("warp-refine", {"prior": True})],
                         ids=[*sorted(MODELS), "warp-refine-prior"])
def test_onnx_file_matches_torch(name, arch, tmp_path):
    editor = tiny_editor(name, **arch)
    data, summary = onnx_bytes(editor)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    onnx_editor = load_onnx(path)
    takes_identity = editor.gan.identity_edit
    names = [i.name for i in onnx_editor.gan.session.get_inputs()]
    assert names == ["image", "source", "target", *(["identity"] if takes_identity else [])] == summary["inputs"]
    rng = np.random.default_rng(1)
    for batch in (1, 5):   # neither is the export example's batch (2): the batch is dynamic
        x = rng.uniform(-1, 1, (batch, 3, 64, 64)).astype(np.float32)
        source, target = (rng.dirichlet(np.ones(len(AFFECTS)), batch).astype(np.float32) for _ in range(2))
        target[0] *= 1.5   # a scaled target (ExprGAN's intensity)
        who = np.arange(batch) % len(IDENTITIES) if takes_identity else None
        with torch.no_grad():
            want = editor.edit(*map(torch.from_numpy, (x, source, target)),
                               identity=None if who is None else torch.from_numpy(who)).numpy()
        got = onnx_editor.edit(x, source, target, who)
        assert got.shape == want.shape == x.shape
        assert np.abs(got - want).max() <= TOLERANCE, f"{name}: max abs diff {np.abs(got - want).max():.2g}"
    meta = read_metadata(path)
    assert meta["fex.model"] == name and meta["fex.step"] == 7 and meta["fex.size"] == 64
    assert meta["fex.affects"] == list(AFFECTS) and meta["fex.inputs"]["image"]["range"] == [-1, 1]
    assert meta["fex.identities"] == (list(IDENTITIES) if takes_identity else [])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("export") / "fexgan.onnx"
    result = CliRunner().invoke(fex, ["export", str(run), "--format", "onnx", "--out", str(path), "--threads", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path, result.output


def test_fex_export_writes_a_checked_file_with_the_runs_recipe(run, exported):
    import json

    path, output = exported
    assert path.is_file() and f"wrote {path}" in output and "onnxruntime matches torch within" in output
    meta = read_metadata(path)
    config = json.loads((run / "config.json").read_text())
    assert meta["fex.model"] == "fexgan" and meta["fex.affects"] == config["affects"]
    assert meta["fex.recipe"]["align"] == "ffhq" and meta["fex.recipe"]["crop_size"] == 128
    assert meta["fex.size"] == 64 and meta["fex.version"] and "dynamo" in meta["fex.exporter"]


def test_fex_edit_on_onnxruntime_gives_the_torch_backends_pixels(run, exported, tmp_path):
    photo = write_png(tmp_path / "in" / "me.png", canvas_photo())
    clip = clip_with_audio(tmp_path / "in" / "take.mp4", frames=6)
    outs = {}
    for backend, model in (("torch", run), ("onnx", exported[0])):
        outs[backend] = tmp_path / backend
        result = fex_edit(str(model), str(photo), str(clip), "--to", "joy", "--from", "neutral", "--batch", "4",
                          "--out", str(outs[backend]))
        assert "edited 1 photos and 1 videos" in result.output, result.output
    a, b = (read_rgb(outs[k] / "me" / "joy.png").astype(int) for k in ("torch", "onnx"))
    assert (a != read_rgb(photo)).any() and np.abs(a - b).max() <= 1
    frames = [np.stack([f.image for f in iter_frames(outs[k] / "take" / "joy.mp4")]).astype(int) for k in ("torch", "onnx")]
    assert frames[0].shape == frames[1].shape and np.abs(frames[0] - frames[1]).max() <= 2


# A child process in which `import torch` fails: what a render node without torch has.
NO_TORCH = """
import sys, importlib.abc
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is not installed here")
sys.meta_path.insert(0, NoTorch())
import numpy as np
from fextrain.export import load_onnx
editor = load_onnx(sys.argv[1])
x = np.zeros((3, 3, editor.size, editor.size), np.float32)
v = np.eye(len(editor.affects), dtype=np.float32)[[0, 1, 2]]
y = editor.edit(x, v, v[::-1])
print(editor.model, y.shape, float(np.abs(y).max()) <= 1, "torch" in sys.modules)
"""


def test_an_exported_file_runs_without_torch(exported):
    from _proc import finish, start

    proc = start([sys.executable, "-c", NO_TORCH, str(exported[0])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    out, err = finish(proc, 120)
    assert proc.returncode == 0, err
    assert out.split() == ["fexgan", "(3,", "3,", "64,", "64)", "True", "False"]


def test_fex_edit_of_an_exported_file_runs_without_torch(exported, tmp_path):
    """A render-farm node without torch: the whole `fex edit` of a photo, on onnxruntime."""
    from _edit_fixtures import canvas_photo
    from _proc import finish, start
    from fexdata.images import write_png

    photo = write_png(tmp_path / "me.png", canvas_photo())
    blocker = NO_TORCH.split("import numpy")[0]
    script = blocker + ("from cli.main import main\n"
                        "main(sys.argv[1:], prog_name='fex')\n")
    proc = start([sys.executable, "-c", script, "edit", str(exported[0]), str(photo), "--to", "joy", "--from", "neutral",
                  "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet", "--threads", "1"],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = finish(proc, 180)
    assert proc.returncode == 0, err + out
    assert (tmp_path / "out" / "me" / "joy.png").is_file()


def test_missing_run_and_missing_onnxruntime_are_user_errors(run, exported, tmp_path, monkeypatch):
    result = CliRunner().invoke(fex, ["export", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "error: " in result.output and "no such run" in result.output
    assert "hint: pass a `fex train --out` folder" in result.output
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    result = CliRunner().invoke(fex, ["edit", str(bad), str(tmp_path), "--to", "joy", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "onnxruntime cannot load it" in result.output and "hint: " in result.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # as if the extra were not installed
    for args in (["export", str(run)], ["edit", str(exported[0]), str(tmp_path), "--to", "joy", "--out",
                                        str(tmp_path / "o")]):
        result = CliRunner().invoke(fex, args)
        assert result.exit_code == 2 and "error: ONNX support needs onnxruntime" in result.output, result.output
        assert "requirements-onnx.lock" in result.output and "Traceback" not in result.output
