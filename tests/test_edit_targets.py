"""`fex edit --to`: what a target may be (docs/edit.md, "Targets"), and that everything else is refused with
one `error:` line, a `hint:` and exit 2, before the output folder is touched."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fexdata.affects import AFFECTS
from fexdata.errors import EditError
from fextrain.edit.targets import MAX_WEIGHT, parse_targets

ACCEPTED = {   # spec -> (output name, weights in AFFECTS order)
    "joy": ("joy", (0, 0, 0, 1, 0, 0, 0)),
    "0.5*joy": ("0.5xjoy", (0, 0, 0, 0.5, 0, 0, 0)),
    "anger+sadness": ("anger+sadness", (1, 0, 0, 0, 0, 1, 0)),
    "0.6*happy + 0.3*surprised": ("0.6xjoy+0.3xsurprise", (0, 0, 0, 0.6, 0, 0, 0.3)),
    "2*joy": ("2xjoy", (0, 0, 0, 2, 0, 0, 0)),
    "joy+joy": ("2xjoy", (0, 0, 0, 2, 0, 0, 0)),
}
REFUSED = {   # spec -> a piece of the message
    "2*joy+-1*anger": "weight -1 of '-1*anger'",
    "1e9*joy": "weight 1e+09",
    "joy+": "a '+' without a term",
    "+joy": "a '+' without a term",
    "joy++anger": "a '+' without a term",
    "0*joy": "weight 0",
    "-0.5*joy": "weight -0.5",
    "1.5*joy+anger": "add up to 2.5",
    "3*joy": "weight 3",
    "joy*2": "cannot read affect term",
    "grumpy": "unknown affect label 'grumpy'",
    "nan*joy": "cannot read affect term",
}


@pytest.mark.parametrize("spec", ACCEPTED)
def test_valid_specs(spec):
    (target,) = parse_targets([spec], [1.0], AFFECTS)
    assert (target.name, target.vector) == ACCEPTED[spec]


@pytest.mark.parametrize("spec", REFUSED)
def test_invalid_specs_are_refused(spec):
    with pytest.raises(EditError) as err:
        parse_targets([spec], [1.0], AFFECTS)
    assert REFUSED[spec] in str(err.value) and err.value.hint


def test_intensity_range_and_the_total_after_it():
    names = [t.name for t in parse_targets(["joy"], [0, 0.5, MAX_WEIGHT], AFFECTS)]
    assert names == ["joy@0", "joy@0.5", "joy@2"]
    for k in (-0.5, 2.5, float("nan")):
        with pytest.raises(EditError, match="--intensity"):
            parse_targets(["joy"], [k], AFFECTS)
    with pytest.raises(EditError, match=r"at --intensity 1.5: the weights add up to 3"):
        parse_targets(["anger+sadness"], [1, 1.5], AFFECTS)


def test_schedule_intensity_range(tmp_path):
    sheet = tmp_path / "plan.csv"
    sheet.write_text("affect,start,end,intensity\njoy,0,1,1\nanger,1,2,-0.5\n")
    with pytest.raises(EditError, match=r"intensity -0.5 of the anger segment at 1s is outside 0..2"):
        parse_targets([str(sheet)], [1.0], AFFECTS)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from _edit_fixtures import build_run

    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("option", [("--to", "2*joy+-1*anger"), ("--to", "1e9*joy"), ("--to", "joy+"),
                                    ("--from", "joy+"), ("--intensity", "-1")])
def test_the_cli_refuses_them_before_writing(run, tmp_path, option):
    from _edit_fixtures import canvas_photo

    from cli.main import main as fex
    from fexdata.images import write_png

    photo = write_png(tmp_path / "me.png", canvas_photo())
    args = ["edit", str(run), str(photo), "--to", "joy", *option, "--out", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(fex, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: ") and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
