"""The one cache of fixed helper networks (fextrain/cached_net.py): a usable entry is loaded, anything else
(absent, other data, corrupt, truncated, half-written, not fitting the network) is retrained, never read.
Checked on the cache itself and on both of its users, the eval judge and ExprGAN's identity network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fexdata.affects import AFFECTS
from fextrain.cached_net import CachedNet, CacheMiss, fingerprint, load_or_train
from fextrain.evaluate.judge import JUDGE_WEIGHTS, JudgeSettings, load_judge, load_or_train_judge
from fextrain.identity_net import IdentityNetSettings, load_or_train_identity_net

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _linear(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def _restore(weights: dict, meta: dict) -> nn.Linear:
    net = nn.Linear(3, meta["outputs"])
    net.load_state_dict(weights)
    return net


def _flip_last_byte(path: Path) -> None:
    """Silent corruption: the file still parses, one weight changes."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def test_entry_round_trip_and_every_unusable_entry_is_a_miss(tmp_path):
    entry = CachedNet.named(tmp_path, "net")
    net = _linear(0)
    with pytest.raises(CacheMiss, match="none cached"):
        entry.read("k")
    entry.write(net.state_dict(), "k", {"outputs": 2})
    back = entry.load("k", _restore)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    assert entry.load(None, _restore) is not None  # None: any fingerprint
    with pytest.raises(CacheMiss, match="other data or settings"):
        entry.read("other")

    good = entry.weights.read_bytes()
    _flip_last_byte(entry.weights)
    with pytest.raises(CacheMiss, match="digest"):
        entry.read("k")
    entry.weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CacheMiss, match="digest"):
        entry.read("k")
    # a writer that died between the weights and the sidecar: new weights beside the old sidecar
    entry.weights.write_bytes(_linear(1).state_dict()["weight"].numpy().tobytes())
    with pytest.raises(CacheMiss, match="digest"):
        entry.read("k")
    entry.weights.write_bytes(good)
    entry.sidecar.write_text('{"fingerprint": "k", "outp')  # torn sidecar
    with pytest.raises(CacheMiss, match="unreadable"):
        entry.read("k")
    entry.write(net.state_dict(), "k", {"outputs": 3})  # intact, but not the network restore builds
    with pytest.raises(CacheMiss, match="does not fit"):
        entry.load("k", _restore)


def test_load_or_train_trains_once_and_retrains_a_corrupt_entry(tmp_path):
    entry, trained = CachedNet.named(tmp_path, "net"), []

    def train():
        trained.append(1)
        net = _linear(len(trained))
        return net, net.state_dict(), {"outputs": 2}

    first, why = load_or_train(entry, "k", _restore, train)
    assert why == "none cached" and len(trained) == 1
    again, why = load_or_train(entry, "k", _restore, train)
    assert why is None and len(trained) == 1
    assert torch.equal(first.weight, again.weight)
    _flip_last_byte(entry.weights)
    fresh, why = load_or_train(entry, "k", _restore, train)
    assert "corrupt" in why and len(trained) == 2
    assert torch.equal(entry.load("k", _restore).weight, fresh.weight)  # the rewritten entry is whole again
    assert json.loads(entry.sidecar.read_text())["outputs"] == 2


def test_fingerprint_covers_header_parts_and_pixels():
    images = np.zeros((3, 4, 4, 3), np.uint8)
    labels = np.arange(3)
    base = fingerprint([1, {"a": 1}], images, labels)
    touched = images.copy()
    touched[2, 3, 3, 2] = 1
    others = [fingerprint([2, {"a": 1}], images, labels), fingerprint([1, {"a": 1}], images, labels[::-1]),
              fingerprint([1, {"a": 1}], touched, labels), fingerprint([1, {"a": 1}], images, labels, b"groups")]
    assert base == fingerprint([1, {"a": 1}], images.copy(), labels.copy()) and base not in others
    assert len(set(others)) == len(others)


def _toy_faces(n_per_class: int = 4, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(AFFECTS)), n_per_class)
    images = rng.integers(60, 120, size=(len(labels), size, size, 3), dtype=np.uint8)
    for i, k in enumerate(labels):
        images[i, k * 4 : k * 4 + 4, 4:-4] = 230
    return images, labels


def test_judge_caches_as_before_and_retrains_a_corrupt_one(tmp_path):
    x, y = _toy_faces()
    settings = JudgeSettings(size=32, width=8, epochs=2, min_steps=0, batch_size=16)
    judge, reused = load_or_train_judge(tmp_path, x, y, AFFECTS, settings, progress=False)
    again, reused_again = load_or_train_judge(tmp_path, x, y, AFFECTS, settings, progress=False)
    assert not reused and reused_again and (again.predict(x) == judge.predict(x)).all()
    meta = json.loads((tmp_path / "judge.json").read_text())
    assert meta["affects"] == list(AFFECTS) and meta["train_count"] == len(y) and "training" in meta
    _flip_last_byte(tmp_path / JUDGE_WEIGHTS)
    assert load_judge(tmp_path) is None  # never read silently
    _, reused = load_or_train_judge(tmp_path, x, y, AFFECTS, settings, progress=False)
    assert not reused and load_judge(tmp_path) is not None


def test_identity_net_retrains_a_corrupt_cache_and_says_why(tmp_path):
    x, y = _toy_faces(2)
    labels = y % 2  # two identities
    settings = IdentityNetSettings(width=4, steps=3, batch=8)
    _, cost = load_or_train_identity_net(tmp_path, x, labels, settings)
    assert not cost.cached and cost.retrained == "none cached" and cost.steps == 3
    _flip_last_byte(Path(cost.file))
    _, cost = load_or_train_identity_net(tmp_path, x, labels, settings)
    assert not cost.cached and "corrupt" in cost.retrained and "corrupt" in cost.summary()
    _, cost = load_or_train_identity_net(tmp_path, x, labels, settings)
    assert cost.cached and cost.retrained is None and "from the cache" in cost.summary()
