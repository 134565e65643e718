"""Every error a user can fix is a FexError with a hint; the family itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fexdata.errors import EditError, EvalError, FexError, IngestError, LayoutError, ManifestError, TrainingError

ROOT = Path(__file__).resolve().parents[1]
# Errors about one input, whose message becomes that input's reject reason (docs/ingest.md "Rejects").
PER_INPUT = {"ImageError", "VideoError"}


def _family(trees: list[ast.Module]) -> set[str]:
    """Names of FexError and every class that derives from it in the parsed modules."""
    family, grew = {"FexError"}, True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if (isinstance(node, ast.ClassDef) and node.name not in family
                        and any(isinstance(b, ast.Name) and b.id in family for b in node.bases)):
                    family.add(node.name)
                    grew = True
    return family


@pytest.mark.parametrize("package", ["fexdata", "cli"])
def test_every_user_error_carries_a_hint(package):
    files = sorted((ROOT / package).rglob("*.py"))
    trees = {f: ast.parse(f.read_text()) for f in files}
    family = _family(list(trees.values()) + [ast.parse(p.read_text()) for p in (ROOT / "fexdata").rglob("*.py")])
    assert {"LayoutError", "ManifestError", "CacheError", "UnsafePath"} <= family
    bare = [f"{f.relative_to(ROOT)}:{node.lineno} {node.exc.func.id}" for f, tree in trees.items()
            for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name)
            and node.exc.func.id in family - PER_INPUT and not any(k.arg == "hint" for k in node.exc.keywords)]
    assert not bare, "FexErrors without hint=: " + ", ".join(bare)


def test_one_subclass_per_area():
    for cls in (LayoutError, IngestError, ManifestError, TrainingError, EvalError, EditError):
        assert issubclass(cls, FexError) and not issubclass(cls, (ValueError, RuntimeError))
    err = LayoutError("no such folder", hint="check the path")
    assert str(err) == "no such folder" and err.hint == "check the path" and FexError("x").hint == ""
