"""Byte identity of the manifest across code changes: two small builds from fixed inputs, checked-in digests.

`test_same_inputs_and_seed_give_identical_bytes` (test_manifest_build.py) shows one version of fex is
deterministic; this shows a refactor changed nothing either. The digests were computed on b78240a, before
the data layer's column tables were made declarative (fexdata/schema.py), and still hold after it.

Two digests per build:
* `content`: the decoded table (schema, `fex.*` metadata, every value), independent of the Parquet
  writer's version - checked always;
* `bytes`: the file itself - checked when pyarrow is the version the digests were taken with (the
  footer names the writer's version, so another pyarrow writes other bytes for the same table).
A deliberate change of the output (schema version, fex version in `fex.created_by`, a new column)
updates both digests here, and its commit says why.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow
import pyarrow.parquet as pq
import pytest

from _manifest_fixtures import write_ingest
from fexdata.manifest import build_manifest

DIGEST_PYARROW = "26.0.1"
DIGESTS = {
    "identity": {"bytes": "5f6d1b5a10e80e997f3080743f4dfc4d1796f9051fd75efb42f58d93fc9730e2",
                 "content": "c5ea8f378ddf09eaf27971ede90a600e3cdc35c051079bad84bb520bbe2efd6e"},
    "frame": {"bytes": "12f7edabdeec0f11090c33509ab05c0aaad2bca8423f1c185d673c976fa353ca",
              "content": "823e817efaaf32cfa5b24b6783726d7ca71b8858e748fc50f82de22df0bbd9be"},
}


def _content_digest(path: Path) -> str:
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in sorted((table.schema.metadata or {}).items()) if k.startswith(b"fex.")}
    doc = {"schema": [str(f) for f in table.schema], "meta": meta,
           "columns": {n: table.column(n).to_pylist() for n in table.column_names}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """Identity split with folds and --min-gap over a video and a stills ingest; frame split with
    guard gaps and cell caps over two clips per cell. Relative paths only, so the tmp folder's name
    never reaches the file."""
    data = tmp_path_factory.mktemp("digest") / "data"
    studio = write_ingest(data / "studio", identities=4, frames=6)
    jaffe = write_ingest(data / "jaffe", identities=3, kind="still", stills=2, source="jaffe")
    build_manifest([studio, jaffe], data / "identity.parquet", split="identity", folds=2, seed=1, min_gap="2f")
    clips = write_ingest(data / "clips", identities=3, frames=10, items_per_cell=2)
    build_manifest([clips], data / "frame.parquet", split="frame", blocks=3, guard="1f", balance="cap", seed=2)
    return {name: data / f"{name}.parquet" for name in DIGESTS}


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_manifest_content_is_unchanged(builds, name):
    assert _content_digest(builds[name]) == DIGESTS[name]["content"]


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_manifest_bytes_are_unchanged(builds, name):
    if pyarrow.__version__ != DIGEST_PYARROW:
        pytest.skip(f"byte digests were taken with pyarrow {DIGEST_PYARROW}, this is {pyarrow.__version__}")
    assert hashlib.sha256(builds[name].read_bytes()).hexdigest() == DIGESTS[name]["bytes"]
