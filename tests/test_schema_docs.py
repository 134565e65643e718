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


def test_a_drifted_doc_or_schema_is_caught_and_mended(tmp_path, monkeypatch):
    tables = all_tables()
    for p in DOCS.glob("*.md"):
        (tmp_path / p.name).write_text(p.read_text())
    monkeypatch.setattr("fexdata.schema.DOCS", tmp_path)
    page = tmp_path / MANIFEST.doc_page
    text = page.read_text()
    assert "| `sharpness` | float64 | yes |" in text
    page.write_text(text.replace("| `sharpness` | float64 |", "| `sharpness` | float32 |"))  # docs drift
    assert doc_problems(tables) == [f"{page}: column tables differ from the schema; run `make docs`"]
    page.write_text(text.replace("<!-- columns: manifest -->", "<!-- columns: manifests -->"))  # a typo
    assert len(doc_problems(tables)) == 2
    page.write_text(text)
    wider = {**tables, "manifest": Table("manifest", "manifest.md",
                                         MANIFEST.columns + (Column("extra", pa.string(), True, "x"),))}
    assert doc_problems(wider) != []  # the schema grew a column the docs lack
    assert doc_problems(wider, write=True) == []  # `make docs`
    assert "| `extra` | string | yes | x |\n<!-- /columns -->" in page.read_text() and doc_problems(wider) == []


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
