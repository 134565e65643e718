import pytest

from fexdata.affects import AFFECTS, UnknownAffect, affect_index, canonical_affect, parse_affects
from fexdata.paths import UnsafePath, atomic_write_text, relative_inside, resolve_inside


@pytest.mark.parametrize(
    "label,expected",
    [("AN", "anger"), ("angry", "anger"), ("HA", "joy"), ("Happiness", "joy"), ("AF", "fear"),
     ("surprised", "surprise"), ("SA", "sadness"), ("NE", "neutral"), ("contemptuous", "contempt"),
     ("DI", "disgust"), (" Sad ", "sadness")],
)
def test_aliases_map_to_canonical(label, expected):
    assert canonical_affect(label) == expected


def test_unknown_label_is_rejected_not_guessed():
    with pytest.raises(UnknownAffect, match="unknown affect label 'smirk'"):
        canonical_affect("smirk")


def test_order_and_parse():
    assert AFFECTS == ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    assert affect_index("happy") == 3
    assert parse_affects("surprise,AN") == ("anger", "surprise")
    assert parse_affects(None) == AFFECTS
    assert "contempt" in parse_affects("all")


def test_paths_stay_inside(tmp_path):
    (tmp_path / "a").mkdir()
    assert relative_inside(tmp_path / "a" / "x.png", tmp_path) == "a/x.png"
    with pytest.raises(UnsafePath):
        relative_inside(tmp_path / ".." / "x.png", tmp_path)
    with pytest.raises(UnsafePath):
        resolve_inside("/etc/passwd", tmp_path)
    with pytest.raises(UnsafePath):
        resolve_inside("../../x", tmp_path)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(UnsafePath):
        relative_inside(tmp_path / "link" / "passwd", tmp_path)


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "hello")
    assert (tmp_path / "f.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
