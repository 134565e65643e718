"""Byte identity of what fex writes across code changes: checked-in digests of small outputs from fixed inputs.

`test_same_inputs_and_seed_give_identical_bytes` (test_manifest_build.py) shows one version of fex is
deterministic; these show a refactor changed nothing either. The digests were computed on b78240a, before
the column tables were made declarative (fexdata/schema.py), and held after it; they changed once since, on
purpose: the `pad_share` column (records, manifests) and the `max_pad` build option (`fex.options`); and
the byte digests alone, when every file gained page checksums and the `fex-file-sha256` footer key
(fexdata/parquet.py, issue 19), with the content digests unchanged.

Outputs: two manifests (`build_manifest` on the fabricated ingest folders of _manifest_fixtures) and one
ingest records part and one rejects part (`write_part` on hand-written rows like the worker's). Two
digests each:
* `content`: the decoded table (schema, `fex.*` metadata, every value), independent of library versions -
  checked always;
* `bytes`: the file itself - checked when pyarrow and pandas are the versions the digests were taken with
  (the footer names the Parquet writer's version, and ingest parts carry pandas metadata with its version).
A deliberate change of an output (schema version, fex version in `fex.created_by`, a new column)
updates its digests here, and its commit says why.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas
import pyarrow
import pyarrow.parquet as pq
import pytest

from _manifest_fixtures import write_ingest
from fexdata.ingest import records as R
from fexdata.manifest import build_manifest
from fexdata.manifest.build import BuildOptions

VERSIONS = {"pyarrow": "26.0.1", "pandas": "3.1.1"}  # of the byte digests
DIGESTS = {
    "manifest-identity": {"bytes": "e2939770b2243898099cd38fba7fbcb57676c54f9661996de8b357c8b7d191cd",
                          "content": "6dcd44ff3b0408de7ed3fff17b67a3edffc1323cc9711f055298d736da7f7ad7"},
    "manifest-frame": {"bytes": "bc4a2b286ce5f0e73da8c7515911b5ab11075eb8394aa8947821bd982fbad496",
                       "content": "4e253650cea55db3c5994b0956af3a2ebf86050bcb11078d01dd0a7f39d7d842"},
    "records": {"bytes": "ad5b441856a531c701c68025be671cbfb6170ad061eacefe67ffcf2fa8ff500a",
                "content": "8a037f5e742b1eea59a6df6646703a97e1af6a0396831376bd7ec5191e90324f"},
    "rejects": {"bytes": "a27ff77ce9f1a7d5dd1b7681d0fbea076a0d6661399da66f7f13834b1a590188",
                "content": "5bc96dfdbb0855be7394d96ae26184b4630db0e677c99f7b268cd2574d49300e"},
}


def content_digest(path: Path) -> str:
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in sorted((table.schema.metadata or {}).items()) if k.startswith(b"fex.")}
    doc = {"schema": [str(f) for f in table.schema], "meta": meta,
           "columns": {n: table.column(n).to_pylist() for n in table.column_names}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def record_rows() -> list[dict]:
    """Three crops as the worker writes them: two tracked video frames and a whole-frame still."""
    base = {"source": "studio", "source_root": "caps", "source_path": "ada/joy.mp4", "item": "ada/joy.mp4",
            "identity": "studio:ada", "affect": "joy", "affect_raw": "Joy", "intensity": float("nan"),
            "bbox": [10.5, 20.25, 110.0, 120.0], "face_count": 1, "landmarks": [v / 7 for v in range(136)],
            "transform": [1.1, 0.01, -3.0, -0.01, 1.1, 2.0], "sharpness": 123.4, "pad_share": 0.125, "align": "ffhq",
            "frame_width": 640, "frame_height": 480, "extra": "{}"}
    return [
        {**base, "image": "crops/256/studio/ada/joy-0000_f000001.png", "crop_size": 256, "frame": 1,
         "time": 1 / 30, "det_score": 0.9, "detector": "hog"},
        {**base, "image": "crops/256/studio/ada/joy-0000_f000002.png", "crop_size": 256, "frame": 2,
         "time": 2 / 30, "det_score": float("nan"), "detector": "track"},
        {**base, "image": "crops/256/studio/ada/still.png", "crop_size": 256, "frame": None,
         "source_path": "ada/still.png", "item": "ada/still.png", "time": float("nan"), "det_score": float("nan"),
         "detector": "frame", "align": "frame", "landmarks": [float("nan")] * 136, "pad_share": 0.0,
         "extra": '{"pose": "front"}'},
    ]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """Manifests: identity split with folds and --min-gap over a video and a stills ingest; frame split
    with guard gaps and cell caps over two clips per cell. Relative paths only, so the tmp folder's
    name never reaches a file."""
    data = tmp_path_factory.mktemp("digest") / "data"
    studio = write_ingest(data / "studio", identities=4, frames=6)
    jaffe = write_ingest(data / "jaffe", identities=3, kind="still", stills=2, source="jaffe")
    build_manifest([studio, jaffe], data / "manifest-identity.parquet",
                   BuildOptions(split="identity", folds=2, seed=1, min_gap="2f"))
    clips = write_ingest(data / "clips", identities=3, frames=10, items_per_cell=2)
    build_manifest([clips], data / "manifest-frame.parquet",
                   BuildOptions(split="frame", blocks=3, guard="1f", balance="cap", seed=2))
    R.write_part(data / "records.parquet", record_rows(), R.RECORDS)
    R.write_part(data / "rejects.parquet", [R.reject_row("studio", "caps", "ada/bad.mp4", "ada/bad.mp4",
                                                         R.BAD_VIDEO, "file is empty (0 bytes)")], R.REJECTS)
    return {name: data / f"{name}.parquet" for name in DIGESTS}


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_content_is_unchanged(outputs, name):
    assert content_digest(outputs[name]) == DIGESTS[name]["content"]


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_bytes_are_unchanged(outputs, name):
    found = {"pyarrow": pyarrow.__version__, "pandas": pandas.__version__}
    if found != VERSIONS:
        pytest.skip(f"byte digests were taken with {VERSIONS}, this is {found}")
    assert hashlib.sha256(outputs[name].read_bytes()).hexdigest() == DIGESTS[name]["bytes"]
