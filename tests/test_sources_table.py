"""The csv layout: a table of path,identity,affect[,intensity][,start,end]."""
from __future__ import annotations

import pytest

from fexdata.ingest.sources import LayoutError, item_root, table
from _sources_fixtures import reasons, split, touch, write


def test_rows_become_items_and_rejects(tmp_path):
    touch(tmp_path, "shots/a10.png", "shots/a2.png", "clips/b.mp4", "notes.doc")
    (tmp_path / "elsewhere").mkdir()
    touch(tmp_path.parent, "secret.png")
    csv_path = write(tmp_path, "labels.csv",
                     "path,identity,affect,intensity,start,end\n"
                     "shots/a10.png,alice,happy,0.8,,\n"
                     "shots/a2.png,jaffe:KA,NE,,,\n"
                     "clips/b.mp4,bob,surprise,,1,2.5\n"
                     "\n"
                     ",bob,joy,,,\n"
                     "shots/missing.png,bob,joy,,,\n"
                     "../secret.png,bob,joy,,,\n"
                     "/etc/passwd,bob,joy,,,\n"
                     "shots/a2.png,bob,smirk,,,\n"
                     "shots/a10.png,alice,joy,,,\n"
                     "notes.doc,alice,joy,,,\n"
                     "shots/a2.png,,joy,,,\n"
                     "clips/b.mp4,bob,joy,x,,\n"
                     "clips/b.mp4,bob,joy,,3,\n")
    assert table.detect(csv_path) and table.detect(tmp_path)
    assert item_root(csv_path) == tmp_path and item_root(tmp_path) == tmp_path
    items, rejects = split(table.scan(csv_path))
    assert [(i.path, i.identity, i.affect, i.affect_raw, i.kind, i.intensity, i.start, i.end) for i in items] == [
        ("clips/b.mp4", "csv:bob", "surprise", "surprise", "video", None, 1.0, 2.5),
        ("shots/a2.png", "jaffe:KA", "neutral", "NE", "image", None, None, None),
        ("shots/a10.png", "csv:alice", "joy", "happy", "image", 0.8, None, None),
    ]
    text = sorted(r.reason for r in rejects)
    assert len(rejects) == 10
    for expected in ("line 6: empty path", "line 7: file not found", "line 8: path '../secret.png' is outside",
                     "line 9: absolute path", "line 10: unknown affect label 'smirk'", "line 11: duplicate of line 2",
                     "line 12: not an image or a video", "line 13: empty identity", "line 14: intensity 'x'",
                     "line 15: give both start and end"):
        assert any(expected in t for t in text), expected
    assert list(table.scan(tmp_path)) == list(table.scan(csv_path))


def test_missing_columns_is_a_layout_error(tmp_path):
    bad = write(tmp_path, "labels.csv", "file,person,emotion\na.png,x,joy\n")
    assert not table.detect(bad)
    with pytest.raises(LayoutError, match="missing column") as err:
        list(table.scan(bad))
    assert "path,identity,affect" in err.value.hint


def test_folder_needs_exactly_one_table(tmp_path):
    write(tmp_path, "a.csv", "path,identity,affect\n")
    write(tmp_path, "b.csv", "path,identity,affect\n")
    write(tmp_path, "sheet.csv", "affect,start,end\n")
    assert not table.detect(tmp_path)
    with pytest.raises(LayoutError, match="exactly one CSV.*a.csv, b.csv"):
        list(table.scan(tmp_path))


def test_symlink_escaping_folder_is_rejected(tmp_path):
    outside = touch(tmp_path / "out", "x.png")
    root = tmp_path / "root"
    root.mkdir()
    (root / "x.png").symlink_to(outside / "x.png")
    write(root, "t.csv", "path,identity,affect\nx.png,a,joy\n")
    items, rejects = split(table.scan(root / "t.csv"))
    assert items == [] and "is outside" in reasons(rejects)["x.png"]
