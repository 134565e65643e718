"""`fex eval` and `fex edit` show the judge defaults of the settings dataclasses (one place to change them), and
reading them for --help imports no torch."""
from __future__ import annotations

import subprocess
import sys

from cli.edit import edit
from cli.eval import eval_run
from fextrain.edit.source import JudgeOptions
from fextrain.evaluate.options import EvalOptions


def _defaults(command) -> dict:
    return {p.name: p.default for p in command.params}


def test_eval_and_edit_show_the_dataclass_defaults():
    o, j, shown_eval, shown_edit = EvalOptions(), JudgeOptions(), _defaults(eval_run), _defaults(edit)
    for name in ("judge_epochs", "judge_min_steps", "judge_size", "judge_holdout", "judge_patience"):
        assert shown_eval[name] == getattr(o, name)
    for name in ("epochs", "min_steps", "holdout", "patience"):
        assert shown_edit[f"judge_{name}"] == getattr(j, name) == getattr(o, f"judge_{name}")  # one shared judge


def test_help_defaults_load_without_torch():
    code = "import sys, cli.eval, cli.edit; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
