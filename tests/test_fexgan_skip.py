"""What is specific to `fexgan-skip`: detail kept through the mask and skips, the mask penalty, its settings.

The registry-parametrised tests (tests/test_models.py) cover shapes, learning, resume and loading.
"""
from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from _train_fixtures import TINY_ARCHS, tiny_config, write_tiny_manifest

from fexdata.errors import TrainingError
from fexdata.sample import sample_face
from fextrain.augment import to_uint8
from fextrain.pixels import laplacian_variance
from fextrain.models import Batch, StepContext, build_model, one_hot
from fextrain.models.fexgan_skip import CYCLE_PROBE_EVERY, total_variation
from fextrain.train import train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _faces(n: int = 4, size: int = 64) -> torch.Tensor:
    faces = np.stack([sample_face(i, "joy", size=size, seed=i) for i in range(n)])
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


def _sharpness_ratio(name: str, x: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = build_model(name, size=64, num_affects=3, **TINY_ARCHS[name]).eval()
    same = one_hot(torch.zeros(len(x), dtype=torch.long), 3)
    with torch.no_grad():
        y = model.edit(x, same, same)
    return float(laplacian_variance(to_uint8(y)).mean() / laplacian_variance(to_uint8(x)).mean())


def test_an_untrained_edit_keeps_the_sources_detail_where_fexgan_repaints_it():
    x = _faces()
    skip, faithful = _sharpness_ratio("fexgan-skip", x), _sharpness_ratio("fexgan", x)
    # The mask starts at sigmoid(2) = 0.88 of the source: Laplacian variance about 0.88^2 of the source's.
    assert 0.6 < skip < 1.0
    # FExGAN redraws every pixel from its 1x1 bottleneck: almost none of the source's detail.
    assert faithful < 0.1 and skip > 5 * faithful


def test_total_variation_has_known_values():
    flat = torch.full((1, 1, 4, 4), 0.5)
    stripes = torch.tensor([0.0, 1.0, 0.0, 1.0]).repeat(4, 1)[None, None]  # columns alternate
    assert total_variation(flat).item() == 0.0
    assert total_variation(stripes).item() == pytest.approx(1.0)  # 0 down the rows, 1 across the columns


def test_the_mask_penalty_lowers_the_mask(tmp_path):
    manifest = write_tiny_manifest(tmp_path / "data")
    shares = {}
    for penalty in (0.0, 20.0):
        out = tmp_path / f"run{penalty:g}"
        train(tiny_config(manifest, out, model="fexgan-skip", steps=6, lr=2e-3,
                          loss={"mask_penalty": penalty}),
              progress=False, log=lambda m: None)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        shares[penalty] = rows[-1]["g_mask"]
    assert shares[20.0] < shares[0.0] - 0.05, shares


def test_the_cycle_off_is_measured_on_probe_steps_only_and_on_every_step_when_it_trains(tmp_path):
    manifest = write_tiny_manifest(tmp_path / "data")
    steps = CYCLE_PROBE_EVERY + 2
    logged = {}
    for weight in (0.0, 1.0):
        out = tmp_path / f"cyc{weight:g}"
        train(tiny_config(manifest, out, model="fexgan-skip", steps=steps, loss={"lambda_cyc": weight}),
              progress=False, log=lambda m: None)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        logged[weight] = [row["step"] for row in rows if "g_cyc" in row]
    assert logged[0.0] == [CYCLE_PROBE_EVERY]  # log_every 1: the only step that ran the probe
    assert logged[1.0] == list(range(1, steps + 1))


def test_the_cycle_probe_leaves_the_generator_as_it_was():
    """With the cycle off, the probe only logs g_cyc: a probe step and an ordinary step from the same state
    leave the same generator, BatchNorm running statistics and batch counts included."""
    torch.manual_seed(1)
    x = _faces()
    b = Batch(x=x, affect=torch.tensor([0, 1, 2, 0]), identity=torch.tensor([0, 1, 2, 3]),
              target_affect=torch.tensor([1, 2, 0, 2]), target=x.flip(0))
    states = {}
    for step in (CYCLE_PROBE_EVERY, CYCLE_PROBE_EVERY + 1):
        torch.manual_seed(0)
        model = build_model("fexgan-skip", size=64, num_affects=3, **TINY_ARCHS["fexgan-skip"])
        nets = model.networks()
        ctx = StepContext(step=step, total=100, nets=nets, plain=nets, eager=nets, raw=nets, autocast=nullcontext,
                          optimizers=model.optimizers(1e-3, (0.5, 0.999)), rng=torch.Generator().manual_seed(0))
        logged = model.train_step(b, ctx)
        assert ("g_cyc" in logged) == (step == CYCLE_PROBE_EVERY)
        states[step] = model.generator.state_dict()
        assert all(p.requires_grad for p in model.generator.parameters())
    probe, plain = states.values()
    assert any("running_mean" in k for k in probe)  # G has BatchNorm statistics the probe could have moved
    assert [k for k in probe if not torch.equal(probe[k], plain[k])] == []


def test_a_refused_setting_is_named_and_skips_and_mask_can_be_switched_off():
    with pytest.raises(TrainingError, match="skip_divisors"):
        build_model("fexgan-skip", size=64, num_affects=3, skip_divisors=[3])
    torch.manual_seed(0)
    without = build_model("fexgan-skip", size=64, num_affects=3, skip_divisors=[], mask=False,
                          **TINY_ARCHS["fexgan-skip"]).eval()
    x, src, tgt = _faces(1), one_hot(torch.tensor([0]), 3), one_hot(torch.tensor([1]), 3)
    with torch.no_grad():
        y, mask = without.generator(x, src, tgt)
    # no mask: the decoder paints every pixel, so the edit keeps none of the source exactly (with the
    # mask at 0.88 of the source, most of it would be within 0.12 * 2 of x)
    assert mask is None and y.shape == (1, 3, 64, 64)
    assert (y - x).abs().mean() > 0.3


@pytest.mark.parametrize("divisors", [[2], [16, 8, 4, 2]])
def test_every_allowed_skip_is_used(divisors):
    """Each allowed skip, size/2 (the last layer's input) included, widens the decoder and reaches the edit:
    changing the encoder map a skip carries (and nothing else) changes the output."""
    torch.manual_seed(0)
    plain = build_model("fexgan-skip", size=64, num_affects=3, skip_divisors=[], **TINY_ARCHS["fexgan-skip"])
    skipped = build_model("fexgan-skip", size=64, num_affects=3, skip_divisors=divisors,
                          **TINY_ARCHS["fexgan-skip"]).eval()
    params = lambda m: sum(p.numel() for p in m.generator.parameters())  # noqa: E731
    assert params(skipped) > params(plain)
    g = skipped.generator
    x, src, tgt = _faces(1), one_hot(torch.tensor([0]), 3), one_hot(torch.tensor([1]), 3)
    with torch.no_grad():
        y = g(x, src, tgt)[0]
    assert y.shape == (1, 3, 64, 64)
    blocks = {64 // 2 ** (i + 1): block for i, block in enumerate(g.down)}  # resolution each block outputs
    for res in sorted(g.cfg.skip_resolutions):
        # shift the encoder map at `res` and hand the next encoder block the unshifted map, so the bottleneck
        # path is unchanged and a change in the edit can only come through the skip
        seen = []

        def shift(module, args, out):
            seen.append(out)
            return out + 1.0

        def unshift(module, args):
            return (seen[-1],)

        hooks = [blocks[res].register_forward_hook(shift), blocks[res // 2].register_forward_pre_hook(unshift)]
        try:
            with torch.no_grad():
                y_skip = g(x, src, tgt)[0]
        finally:
            for hook in hooks:
                hook.remove()
        assert (y_skip - y).abs().max() > 1e-5, f"the skip at {res} px does not reach the edit"
