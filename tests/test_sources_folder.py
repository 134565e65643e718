"""Generic folder layout: ROOT/<identity>/<affect>/<files>."""
from __future__ import annotations

import os

from fexdata.ingest.sources import folder
from _sources_fixtures import reasons, split, touch


def test_items_and_rejects(tmp_path):
    touch(tmp_path, "alice/joy/IMG_10.jpg", "alice/joy/IMG_9.jpg", "alice/Sad/a.PNG", "alice/joy/clip.mp4",
          "alice/joy/.DS_Store", "alice/joy/Thumbs.db", "alice/README.txt",
          "bob/HA/x.tiff", "bob/smirk/y.png", "bob/loose.png", "bob/joy/sub/z.png", "bob/joy/meta.json",
          "top.png")
    items, rejects = split(folder.scan(tmp_path))
    assert [(i.path, i.identity, i.affect, i.affect_raw, i.kind) for i in items] == [
        ("alice/joy/clip.mp4", "folder:alice", "joy", "joy", "video"),
        ("alice/joy/IMG_9.jpg", "folder:alice", "joy", "joy", "image"),
        ("alice/joy/IMG_10.jpg", "folder:alice", "joy", "joy", "image"),
        ("alice/Sad/a.PNG", "folder:alice", "sadness", "Sad", "image"),
        ("bob/HA/x.tiff", "folder:bob", "joy", "HA", "image"),
    ]
    why = reasons(rejects)
    assert set(why) == {"bob/smirk", "bob/loose.png", "bob/joy/sub", "bob/joy/meta.json", "top.png"}
    assert "unknown affect label 'smirk'" in why["bob/smirk"]
    assert "expected bob/<affect>/loose.png" in why["bob/loose.png"]
    assert "nested too deep" in why["bob/joy/sub"]
    assert "neither an image nor a video" in why["bob/joy/meta.json"]
    assert list(folder.scan(tmp_path)) == list(folder.scan(tmp_path))


def test_unreadable_affect_folder(tmp_path, monkeypatch):
    touch(tmp_path, "alice/joy/a.png", "alice/fear/b.png")
    real = os.scandir

    def scandir(path):
        if os.fspath(path).endswith(os.path.join("alice", "joy")):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items, rejects = split(folder.scan(tmp_path))
    assert [i.path for i in items] == ["alice/fear/b.png"]
    assert reasons(rejects) == {"alice/joy": "cannot read folder: Permission denied"}


def test_detect(tmp_path):
    assert folder.detect(touch(tmp_path / "a", "alice/joy/a.png"))
    assert not folder.detect(touch(tmp_path / "b", "alice/party/a.png"))
    assert not folder.detect(touch(tmp_path / "c", "alice/joy/notes.txt"))
