"""Where `fex edit` writes: an output folder belongs to one input file across every run into the same DIR,
so a different file with the same name never overwrites it, and DIR inside an input folder is not read
back as input. Real dlib, ffmpeg and a real tiny run (tests/_edit_fixtures.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from _edit_fixtures import build_run, canvas_photo, clip_with_audio, fex_edit

from cli.main import main as fex
from fexdata.images import read_rgb, write_png

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")


def files(out: Path) -> dict[str, int]:
    """Every output file under DIR (not its bookkeeping) with its modification time."""
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.suffix in (".png", ".mp4")}


def test_same_file_name_in_two_runs_never_shares_an_output(run, tmp_path):
    """The issue's reproduction: in/a/face.png then in/b/face.png (and caps/ada/joy.mp4 then
    caps/ben/joy.mp4), each in its own `fex edit` into the same DIR."""
    a = write_png(tmp_path / "in" / "a" / "face.png", canvas_photo(affect="joy"))
    b = write_png(tmp_path / "in" / "b" / "face.png", canvas_photo(2, affect="anger", border=60))
    ada = clip_with_audio(tmp_path / "caps" / "ada" / "joy.mp4", frames=6, identity=1, size=160)
    ben = clip_with_audio(tmp_path / "caps" / "ben" / "joy.mp4", frames=6, identity=2, size=160)
    out = tmp_path / "ed"
    fex_edit(str(run), str(a), str(ada), "--to", "joy", "--from", "neutral", "--out", str(out))
    first = files(out)
    assert set(first) >= {"face/joy.png", "joy/joy.mp4"}              # readable names for the first owner
    fex_edit(str(run), str(b), str(ben), "--to", "joy", "--from", "neutral", "--out", str(out))
    after = files(out)
    assert {k: after[k] for k in first} == first                        # nothing of the first run was touched
    edits = pd.read_parquet(out / "edits.parquet")
    by_input = edits.groupby("input")["output"].agg(set).to_dict()
    assert set(by_input) == {str(a), str(ada), str(b), str(ben)}        # every input keeps its rows
    outputs = [o for s in by_input.values() for o in s]
    assert len(outputs) == len(set(outputs)) == 4                       # and its own output file
    (b_out,) = by_input[str(b)]
    assert b_out.startswith("face-") and b_out.endswith("/joy.png")    # the second gets a hash beside the name
    assert read_rgb(out / b_out).shape == read_rgb(b).shape
    # Each input still owns its folder: re-running either command skips everything, in either order.
    for cmd in ((b, ben), (a, ada)):
        result = fex_edit(str(run), *map(str, cmd), "--to", "joy", "--from", "neutral", "--out", str(out))
        assert "(2 inputs already done)" in result.output
    assert files(out) == after
    assert len(pd.read_parquet(out / "edits.parquet")) == len(edits)
    owners = json.loads((out / "edit.json").read_text())["inputs"]
    assert owners["face"] == str(a.resolve()) and sorted(owners.values()) == sorted(
        str(p.resolve()) for p in (a, b, ada, ben))


def test_a_file_already_in_dir_is_not_overwritten_by_an_unknown_input(run, tmp_path):
    """An output folder that fex did not record (DIR made before inputs were recorded, or by hand) is
    never written into: the input gets a folder of its own."""
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    theirs = write_png(out / "me" / "joy.png", canvas_photo(2, affect="anger"))
    before = theirs.read_bytes()
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out))
    assert theirs.read_bytes() == before
    (output,) = pd.read_parquet(out / "edits.parquet")["output"]
    assert output.startswith("me-") and output.endswith("/joy.png")


def test_out_inside_the_input_folder_is_not_edited_again(run, tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "me.png", canvas_photo())
    out = photos / "edited"
    fex_edit(str(run), str(photos), "--to", "joy", "--out", str(out))
    before = files(out)
    assert set(before) == {"photos/me/joy.png", "photos/me/grid.png"}
    result = fex_edit(str(run), str(photos), "--to", "joy", "--out", str(out))
    assert "edited 0 photos" in result.output and "(1 inputs already done)" in result.output
    assert files(out) == before
    assert pd.read_parquet(out / "edits.parquet")["output"].tolist() == ["photos/me/joy.png"]


def test_a_folder_inside_out_is_refused(run, tmp_path):
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out))
    result = CliRunner().invoke(fex, ["edit", str(run), str(out / "me"), "--to", "joy", "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "is inside the output folder" in result.output and "hint: " in result.output


def test_an_input_stopped_before_its_grid_is_edited_again(run, tmp_path):
    """The parts, each output's done mark, come last: an input whose grid could not be written (here a
    folder is in its way; a killed run alike) is not taken as done."""
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    (out / "me" / "grid.png").mkdir(parents=True)
    result = fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out))
    assert "rejected 1 inputs" in result.output and not (out / "me" / "grid.png").is_file()
    (out / "me" / "grid.png").rmdir()
    result = fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out))
    assert "edited 1 photos" in result.output and "nothing rejected" in result.output
    assert read_rgb(out / "me" / "grid.png").size
    assert pd.read_parquet(out / "edits.parquet")["output"].tolist() == ["me/joy.png"]
    assert not list(out.rglob("*.tmp"))


def test_a_dir_without_recorded_owners_is_refused_until_overwritten(run, tmp_path):
    """A DIR from before edit.json recorded each folder's input (format 1) cannot say whose outputs it holds."""
    photo = write_png(tmp_path / "me.png", canvas_photo())
    out = tmp_path / "out"
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out))
    meta = json.loads((out / "edit.json").read_text())
    del meta["inputs"]
    (out / "edit.json").write_text(json.dumps({**meta, "format": 1}))
    result = CliRunner().invoke(fex, ["edit", str(run), str(photo), "--to", "joy", "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "made with other format" in result.output and "--overwrite" in result.output
    fex_edit(str(run), str(photo), "--to", "joy", "--out", str(out), "--overwrite")
    assert json.loads((out / "edit.json").read_text())["inputs"] == {"me": str(photo.resolve())}
    assert pd.read_parquet(out / "edits.parquet")["output"].tolist() == ["me/joy.png"]


def test_a_videos_grid_is_the_same_whichever_run_made_its_targets(run, tmp_path):
    """A run that finds joy done (a killed or earlier run) and edits anger must draw the grid an uninterrupted
    run draws: it read done targets back from H.264 but took new ones from memory (found by the crash test)."""
    clip = clip_with_audio(tmp_path / "take.mp4", frames=12, fps=12.0)
    fex_edit(str(run), str(clip), "--to", "joy,anger", "--out", str(tmp_path / "once"))
    fex_edit(str(run), str(clip), "--to", "joy", "--out", str(tmp_path / "twice"))
    fex_edit(str(run), str(clip), "--to", "joy,anger", "--out", str(tmp_path / "twice"))
    once, twice = (read_rgb(tmp_path / d / "take" / "grid.png") for d in ("once", "twice"))
    assert (once == twice).all()
