"""The layout registry and `--layout auto`: every published tree is recognised as its own layout."""
from __future__ import annotations

import pytest

from fexdata.ingest import sources
from fexdata.ingest.sources import Item, LayoutError, Reject
from _sources_fixtures import touch, write

TREES: dict[str, tuple[str, ...]] = {
    "studio": ("ada/joy.mp4", "ada/anger.mov"),
    "jaffe": ("jaffe/KA.AN1.39.tiff", "jaffe/KA.NE1.26.tiff", "jaffe/README"),
    "ckplus": ("cohn-kanade-images/S005/001/S005_001_00000001.png",
               "cohn-kanade-images/S005/001/S005_001_00000002.png"),
    "kdef": ("KDEF/AF01/AF01ANS.JPG", "KDEF/AF01/AF01HAS.JPG"),
    "rafd": ("Rafd090_01_Caucasian_female_angry_frontal.jpg",),
    "oulu": ("OriginalImg/VL/Strong/P001/Anger/000.jpeg", "OriginalImg/VL/Strong/P001/Anger/001.jpeg"),
    "ferg": ("FERG_DB_256/aia/aia_anger/aia_anger_1.png",),
    "mug": ("subjects3/001/anger/take000/img_0000.jpg", "subjects3/001/anger/take000/img_0001.jpg"),
    "folder": ("alice/joy/IMG_0001.jpg", "alice/sad/beach.png"),
}


@pytest.mark.parametrize("layout", list(TREES))
def test_detect_layout_picks_each_published_tree(tmp_path, layout):
    touch(tmp_path, *TREES[layout])
    assert sources.detect_layout(tmp_path) == layout
    assert sources.get(layout).NAME == layout


def test_detect_ck48_and_studio_variants(tmp_path):
    assert sources.detect_layout(touch(tmp_path / "a", "CK+48/anger/S010_004_00000017.png")) == "ckplus"
    assert sources.detect_layout(touch(tmp_path / "b", "bo.mp4", "bo.csv")) == "studio"
    assert sources.detect_layout(touch(tmp_path / "c", "bo/joy/frame.0001.png", "bo/joy/frame.0002.png")) == "studio"


def test_detect_csv_file_and_folder(tmp_path):
    touch(tmp_path, "a.png")
    table = write(tmp_path, "labels.csv", "path,identity,affect\na.png,x,joy\n")
    assert sources.detect_layout(table) == "csv"
    assert sources.detect_layout(tmp_path) == "csv"


def test_real_sample_trees(tmp_path):
    """Trees written with real pixels and a real ffmpeg take, as the demo makes them."""
    from fexdata.sample import write_image_tree, write_studio_tree

    takes = write_studio_tree(tmp_path / "takes", identities=1, affects=("joy", "anger"), seconds=0.2, fps=10,
                              size=64, layout="takes")
    seqs = write_studio_tree(tmp_path / "seqs", identities=1, affects=("joy",), seconds=0.2, fps=10, size=64,
                             layout="sequences")
    stills = write_image_tree(tmp_path / "stills", identities=2, affects=("joy", "fear"), per_affect=2, size=64)
    assert [sources.detect_layout(p) for p in (takes, seqs, stills)] == ["studio", "studio", "folder"]
    take_items = [r for r in sources.get("studio").scan(takes) if isinstance(r, Item)]
    assert [(i.affect, i.start, i.end) for i in take_items] == [("joy", 0.0, 0.2), ("anger", 0.2, 0.4)]
    seq = next(r for r in sources.get("studio").scan(seqs))
    assert seq.kind == "sequence" and len(seq.frames) == 2
    assert all((seqs / f).is_file() for f in seq.frames)
    still_items = list(sources.get("folder").scan(stills))
    assert len(still_items) == 8 and all(isinstance(i, Item) and (stills / i.path).is_file() for i in still_items)


def test_unrecognised_tree_lists_every_layout(tmp_path):
    touch(tmp_path, "random/stuff.bin", "notes.txt")
    with pytest.raises(LayoutError, match="could not recognise") as err:
        sources.detect_layout(tmp_path)
    for name in sources.LAYOUTS:
        assert f"  {name} " in err.value.hint
    with pytest.raises(LayoutError, match="no such file"):
        sources.detect_layout(tmp_path / "nope")


def test_get_unknown_layout():
    with pytest.raises(LayoutError, match="unknown layout 'mmi'") as err:
        sources.get("mmi")
    assert "studio, jaffe" in err.value.hint


def test_every_adapter_follows_the_contract(tmp_path):
    """NAME/EXPECTS/detect/scan exist, scans are deterministic and yield only Items and Rejects."""
    for layout, files in TREES.items():
        root = touch(tmp_path / layout, *files)
        if layout == "ckplus":
            write(root, "Emotion/S005/001/S005_001_00000002_emotion.txt", "   5.0000000e+00\n")
        module = sources.get(layout)
        assert module.NAME == layout and module.EXPECTS
        first, second = list(module.scan(root)), list(module.scan(root))
        assert first == second
        assert all(isinstance(r, (Item, Reject)) for r in first)
        items = [r for r in first if isinstance(r, Item)]
        assert items, layout
        for item in items:
            assert item.source == layout
            assert item.identity.startswith(f"{layout}:")
            assert not item.path.startswith("/") and ".." not in item.path.split("/")
        assert len({i.key for i in items}) == len(items)


def test_missing_root_raises(tmp_path):
    for layout in ("studio", "folder", "jaffe"):
        with pytest.raises(LayoutError, match="no such folder"):
            list(sources.get(layout).scan(tmp_path / "missing"))


def test_a_label_table_beats_folder_names(tmp_path):
    touch(tmp_path, "alice/joy/a.png")
    write(tmp_path, "labels.csv", "path,identity,affect\nalice/joy/a.png,alice,surprise\n")
    assert sources.detect_layout(tmp_path) == "csv"
