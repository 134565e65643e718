"""fexdata.parquet: damage anywhere in a file fex wrote is an error naming the file, never other data."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from _manifest_fixtures import write_ingest
from cli.main import main
from fexdata import parquet
from fexdata.errors import FexError, IngestError, ManifestError
from fexdata.ingest import records as R
from fexdata.manifest import build_manifest, read_manifest, read_meta
from fexdata.manifest.build import BuildOptions


def record_rows(n: int = 6) -> list[dict]:
    """Crops as the worker writes them: tracked video frames and one whole-frame still."""
    rows = []
    for i in range(n):
        still = i == n - 1
        rows.append({"image": f"crops/64/studio/ada/joy-0000_f{i:06d}.png", "crop_size": 64, "source": "studio",
                     "source_root": "caps", "source_path": "ada/joy.mp4", "item": "ada/joy.mp4",
                     "frame": None if still else i, "time": float("nan") if still else i / 30,
                     "identity": "studio:ada", "affect": "joy", "affect_raw": "Joy", "intensity": float("nan"),
                     "bbox": [10.5, 20.25, 110.0 + i, 120.0], "det_score": 0.9 if i % 3 == 0 else float("nan"),
                     "face_count": 1, "landmarks": [float("nan")] * 136 if still else [v / 7 + i for v in range(136)],
                     "transform": [1.1, 0.01, -3.0 - i, -0.01, 1.1, 2.0], "sharpness": 100.0 + i,
                     "pad_share": 0.125 * i, "align": "frame" if still else "ffhq",
                     "detector": "frame" if still else ("hog" if i % 3 == 0 else "track"),
                     "frame_width": 640, "frame_height": 480, "extra": "{}"})
    return rows


def content(table: pa.Table) -> str:
    """Schema, metadata and every value (NaN equal to NaN), for 'exactly the original data'."""
    meta = {k.decode(): v.decode() for k, v in sorted((table.schema.metadata or {}).items())}
    return json.dumps({"schema": [str(f) for f in table.schema], "meta": meta, "columns": table.to_pydict()},
                      sort_keys=True, default=str)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    data = tmp_path_factory.mktemp("pq") / "data"
    build_manifest([write_ingest(data / "studio", identities=4, frames=6)], data / "manifest.parquet",
                   BuildOptions(seed=1))
    R.write_part(data / "part-records.parquet", record_rows(), R.RECORDS)
    return {"manifest": data / "manifest.parquet", "records": data / "part-records.parquet"}


def damaged_copies(data: bytes, seed: int):
    """Every 97th byte inverted, then 200-byte runs of random bytes at seeded random offsets (the file's
    last 8 bytes - footer length and magic - are hit by neither, as in the issue's reproduction)."""
    for offset in range(0, len(data) - 8, 97):
        copy = bytearray(data)
        copy[offset] ^= 0xFF
        yield offset, bytes(copy)
    rng = random.Random(seed)
    for _ in range(40):
        offset = rng.randrange(0, len(data) - 208)
        copy = bytearray(data)
        copy[offset:offset + 200] = rng.randbytes(200)
        yield offset, bytes(copy)


@pytest.mark.parametrize("name", ["manifest", "records"])
def test_damage_anywhere_is_an_error_never_other_data(files, tmp_path, name):
    original = files[name].read_bytes()
    expected = content(parquet.read_table(files[name]))
    outcomes = {"same": 0, "error": 0}
    damaged = tmp_path / files[name].name
    for offset, data in damaged_copies(original, seed=len(original)):
        damaged.write_bytes(data)
        try:
            table = parquet.read_table(damaged, error=IngestError if name == "records" else ManifestError)
        except FexError as exc:
            assert str(damaged) in str(exc), offset
            outcomes["error"] += 1
            continue
        assert content(table) == expected, f"damage at byte {offset} read as other data"
        outcomes["same"] += 1
    assert outcomes["error"] > 100, outcomes  # the test did damage the files


def test_page_checksums_alone_miss_damage_to_the_footer(files, tmp_path):
    """What the file's SHA-256 adds: one flipped bit in the footer's schema renames a column, and pyarrow
    (page checksums on) reads it without a word; fex refuses the file."""
    data = bytearray(files["manifest"].read_bytes())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    at = data.index(b"\x08identity", footer) + 1
    data[at] ^= 0x01  # identity -> hdentity
    damaged = tmp_path / "manifest.parquet"
    damaged.write_bytes(bytes(data))
    names = pq.ParquetFile(damaged, page_checksum_verification=True).read().column_names
    assert "hdentity" in names and "identity" not in names
    with pytest.raises(ManifestError, match="damaged") as err:
        read_manifest(damaged)
    assert str(damaged) in str(err.value) and "fex build-manifest" in err.value.hint
    with pytest.raises(ManifestError, match="damaged"):
        read_meta(damaged)


def test_a_damaged_manifest_is_one_error_line_in_the_cli(files, tmp_path):
    """The issue's reproduction: 200 bytes inside the landmarks' pages, the file's end intact."""
    data = bytearray(files["manifest"].read_bytes())
    landmarks = pq.ParquetFile(files["manifest"]).metadata.row_group(0).column(
        pq.ParquetFile(files["manifest"]).schema_arrow.names.index("landmarks"))
    start = landmarks.data_page_offset + 40
    data[start:start + 200] = random.Random(0).randbytes(200)
    damaged = tmp_path / "manifest.parquet"
    damaged.write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["manifest-info", str(damaged)], catch_exceptions=False)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert r.output.startswith(f"error: {damaged}: ") and "hint: rebuild it with `fex build-manifest`" in r.output


def test_files_are_plain_parquet_to_other_readers(files):
    """External users keep `pandas.read_parquet`; the footer names the checksum, every page carries a CRC."""
    rec = pd.read_parquet(files["records"])
    assert len(rec) == 6 and str(rec["frame"].dtype) == "Int64"
    assert parquet.DIGEST_KEY in pq.read_schema(files["manifest"]).metadata
    assert len(pd.read_parquet(files["manifest"])) == len(read_manifest(files["manifest"])[0])


def test_same_table_same_bytes_and_the_digest_is_not_content(files, tmp_path):
    rows = record_rows()
    for name in ("a.parquet", "b.parquet"):
        R.write_part(tmp_path / name, rows, R.RECORDS)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes() == files["records"].read_bytes()
    table = parquet.read_table(files["records"])
    assert parquet.DIGEST_KEY not in table.schema.metadata  # readers return what the writer was given
    assert b"pandas" in table.schema.metadata


def test_files_without_the_checksum(tmp_path):
    """A file fex did not write (or an older fex wrote) is refused where fex must have written it, and read
    as it is where records may come from elsewhere (an ingest folder without ingest.json)."""
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    with pytest.raises(ManifestError, match="no fex checksum"):
        parquet.read_table(plain)
    assert parquet.read_table(plain, require_digest=False).column("a").to_pylist() == [1, 2]
    assert parquet.problem(plain) is not None and parquet.problem(plain, require_digest=False) is None
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(plain.read_bytes()[:-20])
    with pytest.raises(ManifestError, match="not a whole Parquet file"):
        parquet.read_table(truncated, require_digest=False)


def test_edit_tables_are_verified(tmp_path):
    """fex edit's parts and edits.parquet go through the same writer and reader: a damaged part is an
    EditError naming it."""
    from fexdata.errors import EditError
    from fextrain.edit.table import PARTS_DIR, TABLE, gather, write_part

    def row(name: str, frame: int | None) -> dict:
        return {"input": name, "kind": "image" if frame is None else "video", "frame": frame, "time": 0.5,
                "face": 0, "box": [1.0, 2.0, 3.0, 4.0], "transform": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                "detector": "hog", "source_affect": "neutral", "source_confidence": 0.9, "source_by": "judge",
                "target": "joy", "target_vector": [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], "output": f"{name}/joy.png"}

    parts = [tmp_path / PARTS_DIR / f"{k}.parquet" for k in ("a", "b")]
    write_part(parts[0], [row("a.png", None)])
    write_part(parts[1], [row("b.mp4", k) for k in range(40)])
    assert gather(tmp_path) == 41
    assert parquet.read_table(tmp_path / TABLE).column("input").to_pylist()[:2] == ["a.png", "b.mp4"]
    data = bytearray(parts[1].read_bytes())
    data[len(data) // 3:len(data) // 3 + 200] = bytes(200)
    parts[1].write_bytes(bytes(data))
    with pytest.raises(EditError, match="damaged") as err:
        gather(tmp_path)
    assert str(parts[1]) in str(err.value) and "fex edit" in err.value.hint
