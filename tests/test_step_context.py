"""The step context's verbs and the model files that use them.

A network comes in several views (DDP-wrapped, compiled, neither); the wrong one fails only under DDP or
compile, which CPU tests rarely run. So models name what a forward is for (`ctx.train`, `frozen`, `no_grad`,
`gradient_penalty`) and the context picks the view: tested here with one stand-in wrapper per view, and every
model file read for a view used directly. Shared layers live in `fextrain/models/blocks.py`; the initial
weights of every model are pinned by digest, so moving a layer there cannot change them unnoticed.
"""
from __future__ import annotations

import ast
import hashlib
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

from _train_fixtures import TINY_ARCHS

from fextrain.losses import gradient_penalty
from fextrain.models import MODELS, StepContext, build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

MODELS_DIR = Path(__file__).resolve().parents[1] / "fextrain" / "models"
VIEWS = {"nets", "plain", "eager", "raw", "optimizers"}  # the loop's fields, which only base.py reads


def _registers(path: Path) -> bool:
    """The file defines a class decorated with @register(...): a model."""
    return any(isinstance(d, ast.Call) and ast.unparse(d.func) == "register"
               for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
               for d in node.decorator_list)


def _model_files() -> list[Path]:
    return [p for p in sorted(MODELS_DIR.glob("*.py")) if _registers(p)]


def test_every_model_uses_only_the_step_contexts_verbs():
    used, views = set(), []
    for path in _model_files():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            ctx = {a.arg for a in fn.args.args if a.annotation is not None
                   and "StepContext" in ast.unparse(a.annotation)}
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ctx:
                    used.add(path.name)
                    if node.attr in VIEWS:
                        views.append(f"{path.name}:{node.lineno} ctx.{node.attr}")
    assert used == {p.name for p in _model_files()} and len(used) == len(MODELS)  # every model's step was read
    assert not views, f"use the StepContext verbs (train, frozen, no_grad, gradient_penalty), not its views: {views}"


def test_models_share_layers_through_blocks_only():
    """A model imports the contract (base), the registry and blocks.py, never another model's file."""
    shared = {"fextrain.models.base", "fextrain.models.blocks", "fextrain.models.registry"}
    crossing = []
    for path in _model_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fextrain.models") \
                    and node.module not in shared:
                crossing.append(f"{path.name}:{node.lineno} from {node.module}")
    assert not crossing


class Critic(nn.Module):
    """A real conv + BatchNorm critic with a tuple output (score [B], features), like the models' discriminators."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm(self.conv(x))
        return h.mean(dim=(1, 2, 3)), h


class View(nn.Module):
    """Stands in for one of the loop's wrappers (DDP, torch.compile): runs the network and records its name."""

    def __init__(self, net: nn.Module, name: str, calls: list[str]) -> None:
        super().__init__()
        self.net, self.name, self.calls = net, name, calls

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(self.name)
        return self.net(x)


def _context(net: Critic, calls: list[str]) -> StepContext:
    views = {v: {"d": View(net, v, calls)} for v in ("nets", "plain", "eager")}
    return StepContext(step=1, total=1, **views, raw={"d": net}, optimizers={"d": torch.optim.SGD(net.parameters())},
                       autocast=nullcontext, rng=torch.Generator().manual_seed(3))


def test_each_verb_runs_the_view_it_is_for_and_leaves_the_network_as_it_was():
    torch.manual_seed(0)
    net, calls = Critic(), []
    ctx, x = _context(net, calls), torch.randn(4, 3, 8, 8)
    assert ctx.train("d")(x)[0].requires_grad and calls == ["nets"]  # trains its own parameters (and statistics)
    kept = {k: v.clone() for k, v in net.state_dict().items()}

    with ctx.frozen("d") as frozen:  # passes gradients through, to the input only
        x_in = x.clone().requires_grad_(True)
        frozen(x_in)[0].sum().backward()
        assert x_in.grad is not None and all(p.grad is None for p in net.parameters())
    assert calls[-1] == "plain" and all(p.requires_grad for p in net.parameters())

    with ctx.no_grad("d") as probe:  # no graph; batch statistics normalise, in train mode
        score = probe(x)[0]
        assert not score.requires_grad and net.training
    assert calls[-1] == "plain"
    for k, v in net.state_dict().items():  # frozen and no_grad moved no running statistic
        assert torch.equal(v, kept[k]), k

    with ctx.no_grad("d", eval_mode=True) as fixed:  # a fixed feature extractor: running statistics normalise
        assert not net.training
        fixed_score = fixed(x)[0]
    assert net.training and not torch.allclose(fixed_score, score)
    net.eval()
    assert torch.equal(fixed_score, net(x)[0].detach())
    net.train()

    # double backward through the eager view, mixing with the context's random stream
    gp = ctx.gradient_penalty("d", x, torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), output=0)
    assert calls[-1] == "eager" and gp.requires_grad
    fake = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(gp, gradient_penalty(lambda v: net(v)[0], x, fake, torch.Generator().manual_seed(3)))


# sha256 of every network's state_dict (tiny architecture, 64 px, 3 affects, 2 identities, torch.manual_seed(0))
INIT_TORCH = "2.13.0"
INIT_DIGESTS = {
    "degan": "f7db4900d4c415d4678087ec958b4201fed00f387a90f69bc275607e956e374c",
    "exprgan": "f367b621a9e38ab2727580304cd4aac62f74094aea59ec81c5db1663aeaa9c11",
    "fexgan": "39c905e90ed507a589ca1f318abb0b56a50dc32fd007b33d347bd3f19eb771a8",
    "fexgan-skip": "720715335dff6bd09e621c2ed83b12ea4fbdb1e7c7c942a2afedce9bfd34f5a3",
    "stargan": "dd5a867dc32a0af2cf74bee034cfdd181100dd66b5149bdf6e1adfa15d63d5f2",
    "warp-refine": "203292dc3b38f7f4cc468a78f39768b54fb1e48d9196eb2d2eb84fa30a6e5f65",
}


def _init_digest(name: str) -> str:
    torch.manual_seed(0)
    model = build_model(name, size=64, num_affects=3, num_identities=2, **TINY_ARCHS[name])
    h = hashlib.sha256()
    for net_name, net in model.networks().items():
        for key, value in net.state_dict().items():
            h.update(f"{net_name}.{key}".encode())
            h.update(value.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_initial_weights_are_unchanged(name):
    if torch.__version__.split("+")[0] != INIT_TORCH:
        pytest.skip(f"digests taken with torch {INIT_TORCH}, this is {torch.__version__}")
    assert _init_digest(name) == INIT_DIGESTS[name]
