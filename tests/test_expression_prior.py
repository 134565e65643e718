"""The expression prior's known answers: a motion and a relighting that every person makes are measured back from
their frames; the generator applies a pair's fields bilinearly in the condition vectors; a run with the prior fits
it once, caches it and saves it with the weights."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fextrain.expression_prior import RATIO_EPS, fit_expression_prior, load_or_fit_expression_prior
from fextrain.models import build_model, one_hot
from fextrain.models.warp_refine import relight, render, warp

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SHIFT, GAIN = 2, 0.8  # every person's frame at affect 1 is their frame at affect 0 moved 2 px left and 20% darker


def _people(n: int = 3, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n people x 2 affects x 2 frames of a smooth random texture (grey, so luminance is the pixel value)."""
    images, ids, affects = [], [], []
    rng = np.random.default_rng(0)
    for person in range(n):
        face = rng.uniform(0.15, 0.95, (size // 4 + 2, size // 4 + 2)).astype(np.float32)
        for frame in range(2):  # two frames of each: the same face, a little sensor noise apart
            noisy = face + rng.normal(0, 0.01, face.shape).astype(np.float32)
            base = cv2.resize(noisy, (size + 8, size + 8), interpolation=cv2.INTER_CUBIC)
            source = base[4:-4, 4:-4]
            target = (base[4:-4, 4 + SHIFT:size + 4 + SHIFT] + RATIO_EPS) * GAIN - RATIO_EPS
            for affect, image in enumerate((source, target)):
                grey = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
                images.append(np.repeat(grey[..., None], 3, 2))
                ids.append(person)
                affects.append(affect)
    return np.stack(images), np.array(ids), np.array(affects)


def test_a_motion_and_a_relighting_every_person_makes_are_measured_back():
    images, ids, affects = _people()
    fields, counts = fit_expression_prior(images, ids, affects, num_affects=3)
    assert counts == {"people": 3, "pairs": 3 * 2 * 4, "cells": 2}
    inner = (slice(12, 52), slice(12, 52))
    flow = fields["flow"].numpy() * 64 / 2  # back to pixels
    assert np.median(flow[0, 1, 0][inner]) == pytest.approx(SHIFT, abs=0.25)   # 0 -> 1: from 2 px to the right
    assert np.median(flow[1, 0, 0][inner]) == pytest.approx(-SHIFT, abs=0.25)  # and back
    assert np.abs(np.median(flow[0, 1, 1][inner])) < 0.25
    assert np.median(fields["log_ratio"][0, 1, 0].numpy()[inner]) == pytest.approx(np.log(GAIN), abs=0.03)
    assert np.median(fields["log_ratio"][1, 0, 0].numpy()[inner]) == pytest.approx(-np.log(GAIN), abs=0.03)
    # no one shows affect 2, and a -> a is no change: those cells are the identity
    assert fields["people"].tolist() == [[0, 3, 0], [3, 0, 0], [0, 0, 0]]
    for a, t in [(0, 0), (1, 1), (0, 2), (2, 1)]:
        assert fields["flow"][a, t].abs().max() == 0 and fields["log_ratio"][a, t].abs().max() == 0


def test_the_prior_is_cached_and_a_corrupt_entry_is_refitted(tmp_path: Path):
    images, ids, affects = _people(2)
    first, cost = load_or_fit_expression_prior(tmp_path, images, ids, affects, 3)
    again, cached = load_or_fit_expression_prior(tmp_path, images, ids, affects, 3)
    assert not cost.cached and cost.retrained == "none cached" and cached.cached
    assert all(torch.equal(first[k], again[k]) for k in first)
    Path(cached.file).write_bytes(Path(cached.file).read_bytes()[:-10])
    _, refit = load_or_fit_expression_prior(tmp_path, images, ids, affects, 3)
    assert not refit.cached and "digest" in refit.retrained
    _, other = load_or_fit_expression_prior(tmp_path, images[::-1].copy(), ids, affects, 3)  # other data
    assert not other.cached


def test_the_generator_applies_a_pairs_fields_in_proportion_to_the_target():
    torch.manual_seed(0)
    model = build_model("warp-refine", size=64, num_affects=3, widths=[4, 8, 8, 16], d_widths=[8, 16, 32],
                        prior=True).eval()
    g = model.generator
    with torch.no_grad():
        g.prior_flow.normal_(0, 0.05)
        g.prior_log_ratio.normal_(0, 0.2)
        src = one_hot(torch.tensor([0, 0, 1]), 3)
        tgt = torch.stack([one_hot(torch.tensor(1), 3), 0.5 * one_hot(torch.tensor(2), 3), one_hot(torch.tensor(1), 3)])
        flow, ratio = g.prior(src, tgt)
        assert torch.allclose(flow[0], g.prior_flow[0, 1]) and torch.allclose(ratio[0], g.prior_log_ratio[0, 1])
        assert torch.allclose(flow[1], 0.5 * g.prior_flow[0, 2]) and torch.allclose(ratio[1], 0.5 * g.prior_log_ratio[0, 2])
        assert torch.allclose(flow[2], g.prior_flow[1, 1])
        g.cfg = dataclasses.replace(g.cfg, prior_gain=1.5)  # arch.prior_gain scales every pair's fields alike
        strong = g.prior(src, tgt)
        assert torch.allclose(strong[0], 1.5 * flow) and torch.allclose(strong[1], 1.5 * ratio)
        g.cfg = dataclasses.replace(g.cfg, prior_gain=1.0)
        # untrained, the learnt flow is zero: the generator's warp is the prior's, relit by its ratio
        x = torch.rand(3, 3, 64, 64) * 2 - 1
        out = g(x, src, tgt)
        assert torch.allclose(out[0], flow, atol=1e-6) and torch.allclose(out[1], ratio)
        warped, _ = render(x, *out)
        assert torch.allclose(warped, relight(warp(x, flow), ratio), atol=1e-6)
        # a log ratio of log 0.8 makes the luminance (above the floor) 0.8 times as bright, in every channel alike
        grey = torch.full((1, 3, 4, 4), 0.2)
        lit = relight(grey, torch.full((1, 1, 4, 4), float(np.log(GAIN))))
        assert torch.allclose((lit + 1) / 2 + RATIO_EPS, ((grey + 1) / 2 + RATIO_EPS) * GAIN, atol=1e-6)


def test_a_run_with_the_prior_fits_it_once_and_saves_it_with_the_weights(tmp_path: Path):
    from _train_fixtures import TINY_ARCHS, tiny_config, write_tiny_manifest
    from fextrain.models.editor import load_editor
    from fextrain.train import train

    manifest = write_tiny_manifest(tmp_path / "data")
    arch = {**TINY_ARCHS["warp-refine"], "prior": True}
    logs: list[str] = []
    train(tiny_config(manifest, tmp_path / "run", "warp-refine", steps=3, arch=arch, cache_dir=str(tmp_path / "c")),
          progress=False, log=logs.append)
    assert any(line.startswith("expression prior: mean flow and ratio image of 2 train people") for line in logs)
    editor = load_editor(tmp_path / "run")
    assert editor.gan.generator.prior_flow.abs().max() > 0  # the fitted fields came back with the weights
    assert json.loads((tmp_path / "run" / "config.json").read_text())["arch"]["prior"] is True
    logs.clear()  # a second run of the same data (here without the residual) finds the prior in the cache
    train(tiny_config(manifest, tmp_path / "run2", "warp-refine", steps=2, arch={**arch, "residual": False},
                      cache_dir=str(tmp_path / "c")), progress=False, log=logs.append)
    assert any(line.startswith("expression prior") and "; cached:" in line for line in logs)
    plain = load_editor(tmp_path / "run2").gan
    assert not hasattr(plain.generator, "to_refine")
    x, s, t = torch.rand(2, 3, 64, 64) * 2 - 1, one_hot(torch.tensor([0, 1]), 7), one_hot(torch.tensor([3, 0]), 7)
    with torch.no_grad():  # without the residual the edit is the warped, relit source, and fex edit's change is the relighting
        flow, ratio, _, _ = plain.generator(x, s, t)
        edit, flow_f, change = plain.warp_fields(x, s, t)
        assert torch.allclose(edit, relight(warp(x, flow), ratio).clamp(-1, 1), atol=1e-6)
        assert torch.allclose(warp(x, flow_f) + change, relight(warp(x, flow), ratio), atol=1e-5)


def test_a_run_of_zero_steps_is_the_prior_alone_and_other_models_refuse_it(tmp_path: Path):
    from click.testing import CliRunner

    from _train_fixtures import TINY_ARCHS, tiny_config, write_tiny_manifest
    from cli.main import main as fex
    from fextrain.models.editor import load_editor
    from fextrain.train import train

    manifest = write_tiny_manifest(tmp_path / "data")
    arch = {**TINY_ARCHS["warp-refine"], "prior": True, "residual": False}
    logs: list[str] = []
    result = train(tiny_config(manifest, tmp_path / "run", "warp-refine", steps=0, arch=arch), progress=False,
                   log=logs.append)
    assert (result.start_step, result.step, result.status) == (0, 0, "done")
    assert any("no steps (the prepared model is saved as it is)" in line for line in logs)
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "generator.safetensors").is_file()
    g = load_editor(run).gan.generator
    x, s, t = torch.rand(2, 3, 64, 64) * 2 - 1, one_hot(torch.tensor([0, 1]), 7), one_hot(torch.tensor([3, 0]), 7)
    with torch.no_grad():  # the edit is the source moved and relit by the fitted prior of each pair, nothing else
        assert g.prior_flow.abs().max() > 0
        edit = load_editor(run).gan.edit(x, s, t)
        expected = relight(warp(x, torch.stack([g.prior_flow[0, 3], g.prior_flow[1, 0]])),
                           torch.stack([g.prior_log_ratio[0, 3], g.prior_log_ratio[1, 0]]))
        assert torch.allclose(edit, expected.clamp(-1, 1), atol=1e-5)
    again = train(tiny_config(manifest, run, "warp-refine", steps=0, arch=arch), resume=True, progress=False,
                  log=lambda _: None)
    assert again.status == "up-to-date"
    # the prior-only preset is that run, named: `fex train --preset prior-only` fits and saves, no step
    out = CliRunner().invoke(fex, ["train", "--manifest", str(manifest), "--out", str(tmp_path / "named"),
                                   "--model", "warp-refine", "--preset", "prior-only", "--device", "cpu",
                                   "--sample-every", "0"])
    assert out.exit_code == 0, out.output
    saved = json.loads((tmp_path / "named" / "config.json").read_text())
    assert (saved["preset"], saved["steps"], saved["arch"]["prior"], saved["arch"]["residual"]) == (
        "prior-only", 0, True, False)
    # with a residual or another model, step 0 is an untrained network: refused before anything is written
    out = CliRunner().invoke(fex, ["train", "--manifest", str(manifest), "--out", str(tmp_path / "bad"),
                                   "--model", "warp-refine", "--steps", "0", "--set", "arch.residual=true"])
    assert out.exit_code == 2 and "error: steps 0 would save warp-refine's untrained networks" in out.output
    assert "hint: give --steps 1 or more" in out.output and not (tmp_path / "bad").exists()
