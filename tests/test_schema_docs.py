"""The column tables fex writes (fexdata.schema.Table) and the docs that render them stay in step."""
from __future__ import annotations

import pyarrow as pa
import pytest

from fexdata.ingest import RECORDS, REJECTS
from fexdata.manifest import MANIFEST
from fexdata.schema import DOCS, Column, Table, all_tables, doc_problems, render_docs, to_markdown, type_name


def test_every_table_is_found_and_rendered_in_its_docs():
    tables = all_tables()
    assert {"records", "rejects", "manifest"} <= set(tables)
    assert doc_problems(tables) == []


def test_a_drifted_doc_or_schema_is_caught(tmp_path, monkeypatch):
    tables = all_tables()
    page = DOCS / MANIFEST.doc_page
    text = page.read_text()
    assert "| `sharpness` | float64 | yes |" in text
    monkeypatch.setattr("fexdata.schema.DOCS", tmp_path)
    for p in DOCS.glob("*.md"):
        (tmp_path / p.name).write_text(p.read_text())
    (tmp_path / page.name).write_text(text.replace("| `sharpness` | float64 |", "| `sharpness` | float32 |"))
    assert any("differ from the schema" in p for p in doc_problems(tables))
    (tmp_path / page.name).write_text(text)
    wider = Table(MANIFEST.name, MANIFEST.doc_page, MANIFEST.columns + (Column("extra", pa.string(), True, "x"),))
    assert any("differ from the schema" in p for p in doc_problems({**tables, "manifest": wider}))
    (tmp_path / page.name).write_text(text.replace("<!-- columns: manifest -->", "<!-- columns: manifests -->"))
    problems = doc_problems(tables)
    assert any("no <!-- columns: manifest -->" in p for p in problems)
    assert any("no Table 'manifests'" in p for p in problems)
    doc_problems({**tables, "manifest": wider}, write=True)  # `make docs` mends a stale block
    (tmp_path / page.name).write_text(text)
    doc_problems({**tables, "manifest": wider}, write=True)
    assert "| `extra` | string | yes | x |" in (tmp_path / page.name).read_text()


def test_rendering():
    assert type_name(pa.list_(pa.float32(), 136)) == "fixed_size_list<float32>[136]"
    assert type_name(pa.float64()) == "float64" and type_name(pa.int32()) == "int32"
    t = Table("t", "x.md", (Column("a", pa.int64(), True, "an int"), Column("b", pa.string(), False, "b", required=False)))
    assert to_markdown(t).splitlines() == ["| column | type | null | required | meaning |", "|---|---|---|---|---|",
                                           "| `a` | int64 | yes | yes | an int |", "| `b` | string | no | no | b |"]
    doc = "x\n<!-- columns: t -->\nold\n<!-- /columns -->\ny"
    assert render_docs(doc, {"t": t}) == "x\n<!-- columns: t -->\n" + to_markdown(t) + "\n<!-- /columns -->\ny"
    assert render_docs(doc.replace("old\n", ""), {"t": t}) == render_docs(doc, {"t": t})


def test_tables_derive_writer_and_reader_types():
    # landmarks are float32 from the records through the manifest; nullable ints read as pandas Int64/Int32
    assert RECORDS["landmarks"].type == pa.list_(pa.float32(), 136) == MANIFEST["landmarks"].type
    assert RECORDS.list_dtypes()["landmarks"] == "float32" and RECORDS.list_dtypes()["transform"] == "float64"
    assert RECORDS["frame_width"].type == pa.int32()
    assert RECORDS.nullable_ints() == ("frame",) and MANIFEST.nullable_ints() == ("fold", "block", "frame", "face_count")
    assert all(f.nullable for f in RECORDS.arrow) and not MANIFEST.arrow.field("image").nullable
    assert RECORDS.required == ("image", "crop_size", "source", "source_path", "item", "frame", "time", "identity",
                                "affect", "affect_raw")
    assert REJECTS.required == ("source_path", "reason")
    with pytest.raises(KeyError, match="no column 'nope'"):
        RECORDS["nope"]
