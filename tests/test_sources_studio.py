"""Studio layout: clips, render sequences, long takes with segment sheets, and their bad inputs."""
from __future__ import annotations

import os

import pytest

from fexdata.ingest.sources import studio
from _sources_fixtures import reasons, split, touch, write


@pytest.fixture
def tree(tmp_path):
    touch(tmp_path, "ada/joy.mp4", "ada/anger_02.mov", "ada/Surprised.webm",
          "ada/sadness/frame.0010.png", "ada/sadness/frame.0002.png", "ada/sadness/frame.0001.png",
          "bo/fear/Shot_0001.jpg", "bo/fear/Shot_0002.jpg", "bo/.DS_Store", "Thumbs.db", "README.md",
          "cy.mp4")
    write(tmp_path, "ada/sadness/fps.txt", "59.94\n")
    write(tmp_path, "cy.csv", "affect,start,end,intensity\nNE,0,2,\nhappy,2,4.5,0.8\n\nSU,4.5,6,\n")
    return tmp_path


def test_items_labels_and_kinds(tree):
    items, rejects = split(studio.scan(tree))
    assert rejects == []
    got = [(i.path, i.identity, i.affect, i.affect_raw, i.kind) for i in items]
    assert got == [
        ("ada/anger_02.mov", "studio:ada", "anger", "anger", "video"),
        ("ada/joy.mp4", "studio:ada", "joy", "joy", "video"),
        ("ada/sadness", "studio:ada", "sadness", "sadness", "sequence"),
        ("ada/Surprised.webm", "studio:ada", "surprise", "Surprised", "video"),
        ("bo/fear", "studio:bo", "fear", "fear", "sequence"),
        ("cy.mp4", "studio:cy", "neutral", "NE", "video"),
        ("cy.mp4", "studio:cy", "joy", "happy", "video"),
        ("cy.mp4", "studio:cy", "surprise", "SU", "video"),
    ]


def test_sequence_frames_natural_order_and_fps(tree):
    items, _ = split(studio.scan(tree))
    seq = {i.path: i for i in items if i.kind == "sequence"}
    assert seq["ada/sadness"].frames == ("ada/sadness/frame.0001.png", "ada/sadness/frame.0002.png",
                                        "ada/sadness/frame.0010.png")
    assert seq["ada/sadness"].fps == pytest.approx(59.94)
    assert seq["bo/fear"].fps is None


def test_take_segments(tree):
    items, _ = split(studio.scan(tree))
    segs = [i for i in items if i.path == "cy.mp4"]
    assert [(s.start, s.end, s.intensity) for s in segs] == [(0, 2, None), (2, 4.5, 0.8), (4.5, 6, None)]
    assert segs[1].key == "cy.mp4@2-4.5"
    assert dict(segs[1].extra) == {"sheet": "cy.csv", "line": "3"}
    assert len({s.key for s in items}) == len(items)


def test_scan_is_deterministic(tree):
    assert list(studio.scan(tree)) == list(studio.scan(tree))


def test_bad_sheet_rows_are_rejected_by_line(tmp_path):
    touch(tmp_path, "ada.mp4")
    write(tmp_path, "ada.csv", "Affect, Start ,End\njoy,0,1\nsad,2,1\nfear,-1,0.5\nsmirk,3,4\n"
                               "anger,x,5\ndisgust,5,7\nsurprise,6,8\nneutral,8,9\n")
    items, rejects = split(studio.scan(tmp_path))
    assert [(i.affect, i.start, i.end) for i in items] == [("joy", 0, 1), ("neutral", 8, 9)]
    text = [r.reason for r in rejects]
    assert all(r.source_path == "ada.csv" for r in rejects)
    assert any("line 3" in t and "end 1 is not after start 2" in t for t in text)
    assert any("line 4" in t and "negative" in t for t in text)
    assert any("line 5" in t and "unknown affect label 'smirk'" in t for t in text)
    assert any("line 6" in t and "'x' is not a number" in t for t in text)
    assert any(t.startswith("segment sheet line 7") and "overlaps line 8" in t for t in text)
    assert any(t.startswith("segment sheet line 8") and "overlaps line 7" in t for t in text)
    assert len(rejects) == 6


def test_sheet_missing_columns_and_orphans(tmp_path):
    touch(tmp_path, "ada.mp4", "bo.mp4", "cy.csv")
    write(tmp_path, "ada.csv", "label,begin,end\njoy,0,1\n")
    write(tmp_path, "cy.csv", "affect,start,end\njoy,0,1\n")
    items, rejects = split(studio.scan(tmp_path))
    assert items == []
    why = reasons(rejects)
    assert "lacks column(s) affect, start" in why["ada.csv"]
    assert "without a segment sheet" in why["bo.mp4"] and "bo.csv" in why["bo.mp4"]
    assert "sheet without a take" in why["cy.csv"]


def test_bad_names_in_identity_and_sequence_folders(tmp_path):
    touch(tmp_path, "ada/smirk.mp4", "ada/still.png", "ada/notes.json", "ada/blink/frame.0001.png",
          "ada/joy/frame.0001.png", "ada/joy/cover.png", "ada/joy/deeper/frame.0001.png",
          "ada/fear/beauty.0001.png", "ada/fear/depth.0001.png", "ada/anger/fps.txt")
    write(tmp_path, "ada/anger/fps.txt", "fast")
    touch(tmp_path, "ada/anger/0001.png")
    items, rejects = split(studio.scan(tmp_path))
    assert [(i.path, i.frames) for i in items] == [("ada/joy", ("ada/joy/frame.0001.png",))]
    why = reasons(rejects)
    assert "not an affect" in why["ada/smirk.mp4"]
    assert "loose image" in why["ada/still.png"]
    assert "unexpected file" in why["ada/notes.json"]
    assert "not an affect" in why["ada/blink"]
    assert "not a numbered frame" in why["ada/joy/cover.png"]
    assert "not a numbered frame" in why["ada/joy/deeper"]
    assert "different name prefixes" in why["ada/fear"]
    assert "positive number" in why["ada/anger"]


def test_unreadable_folder_is_rejected_and_scan_goes_on(tmp_path, monkeypatch):
    touch(tmp_path, "ada/joy.mp4", "bo/joy.mp4")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("ada"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items, rejects = split(studio.scan(tmp_path))
    assert [i.path for i in items] == ["bo/joy.mp4"]
    assert reasons(rejects) == {"ada": "cannot read folder: Permission denied"}


def test_symlink_out_of_root_is_rejected(tmp_path):
    outside = touch(tmp_path / "outside", "joy.mp4")
    root = tmp_path / "root"
    touch(root, "ada/fear.mp4")
    (root / "ada" / "joy.mp4").symlink_to(outside / "joy.mp4")
    (root / "ada" / "anger.mp4").symlink_to(root / "ada" / "fear.mp4")  # inside: fine
    (root / "bo").symlink_to(outside)
    items, rejects = split(studio.scan(root))
    assert [i.path for i in items] == ["ada/anger.mp4", "ada/fear.mp4"]
    why = reasons(rejects)
    assert "outside the dataset root" in why["ada/joy.mp4"]
    assert "outside the dataset root" in why["bo"]


def test_detect(tmp_path):
    assert not studio.detect(touch(tmp_path / "empty", "x.txt"))
    assert studio.detect(touch(tmp_path / "clips", "ada/joy.mp4"))
    assert studio.detect(touch(tmp_path / "take", "ada.mov", "ada.csv"))
    assert studio.detect(touch(tmp_path / "seq", "ada/happy/frame.0001.png", "ada/happy/frame.0002.png"))
    # stills with free names under affect folders are the generic folder layout, not a render
    assert not studio.detect(touch(tmp_path / "stills", "ada/happy/me.png", "ada/happy/beach.jpg"))


def test_broken_and_looping_symlinks_are_rejected(tmp_path):
    touch(tmp_path, "ada/anger.mp4")
    (tmp_path / "ada" / "joy.mp4").symlink_to("sad.mp4")
    (tmp_path / "ada" / "sad.mp4").symlink_to("joy.mp4")
    (tmp_path / "ada" / "fear.mp4").symlink_to(tmp_path / "ada" / "gone.mp4")
    items, rejects = split(studio.scan(tmp_path))
    assert [i.path for i in items] == ["ada/anger.mp4"]
    why = reasons(rejects)
    assert "broken symlink" in why["ada/fear.mp4"]
    assert "loop" in why["ada/joy.mp4"] and "loop" in why["ada/sad.mp4"]
