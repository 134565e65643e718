"""The locks (requirements.lock, requirements-torch.lock, requirements-judge.lock, requirements-ui.lock,
requirements-onnx.lock) against pyproject.toml, the Makefile and the installed packages.

CI installs from the locks (`make setup`), so a dependency added to, dropped from or narrowed in
pyproject.toml without `make lock` fails here instead of being silently left out; and the environment the
tests run in is checked to be the locked one (docs/install.md).
"""
from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK, TORCH_LOCK = ROOT / "requirements.lock", ROOT / "requirements-torch.lock"
JUDGE_LOCK = ROOT / "requirements-judge.lock"   # the outside judge of `fex eval`, installed --no-deps
UI_LOCK = ROOT / "requirements-ui.lock"         # `fex explore` (gradio), installed --no-deps
ONNX_LOCK = ROOT / "requirements-onnx.lock"     # `fex export`, `fex edit MODEL.onnx`, installed --no-deps
DIRECT = "-r -"   # `make lock` feeds pyproject's requirements to pip-compile on stdin


def read_lock(text: str) -> dict[str, dict]:
    """{name: {version, hashes, via}} from pip-compile's output (pins, --hash lines, `# via` annotations)."""
    pins: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            current = pins[canonicalize_name(m[1])] = {"version": m[2], "hashes": 0, "via": []}
        elif current is None or not line.startswith(" "):
            current = None   # a comment block or blank line ends the entry
        elif "--hash=sha256:" in line:
            current["hashes"] += 1
        elif m := re.match(r"\s+# via (\S.*)$", line) or re.match(r"\s+#   (\S.*)$", line):
            current["via"].append(m[1].strip())
    return pins


def pyproject_requirements(text: str) -> list[Requirement]:
    """What the main lock is compiled from: the dependencies and dev tools, torch left to the user."""
    project = tomllib.loads(text)["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return [r for r in reqs if canonicalize_name(r.name) != "torch"]


def lock_problems(pyproject: str, lock: str) -> list[str]:
    """Why the lock does not match pyproject.toml (empty when it does)."""
    pins = read_lock(lock)
    problems = []
    wanted = {canonicalize_name(r.name): r for r in pyproject_requirements(pyproject)}
    direct = {name for name, pin in pins.items() if DIRECT in pin["via"]}
    for name in sorted(wanted.keys() - direct):
        problems.append(f"{name} is in pyproject.toml but not locked")
    for name in sorted(direct - wanted.keys()):
        problems.append(f"{name} is locked as a dependency but no longer in pyproject.toml")
    for name in sorted(wanted.keys() & direct):
        if not wanted[name].specifier.contains(pins[name]["version"], prereleases=True):
            problems.append(f"{name}=={pins[name]['version']} does not satisfy pyproject's {wanted[name]}")
    for name, pin in pins.items():
        if not pin["hashes"]:
            problems.append(f"{name} has no hash")
        for parent in pin["via"]:
            if not parent.startswith("-") and canonicalize_name(parent) not in pins:
                problems.append(f"{name} is locked for {parent}, which is not locked")
    return problems


def test_lock_matches_pyproject():
    problems = lock_problems((ROOT / "pyproject.toml").read_text(), LOCK.read_text())
    assert not problems, "requirements.lock is stale; run `make lock` (docs/install.md):\n" + "\n".join(problems)


def test_the_check_sees_a_changed_pyproject():
    pyproject, lock = (ROOT / "pyproject.toml").read_text(), LOCK.read_text()
    added = pyproject.replace('"numpy>=1.24",', '"numpy>=1.24", "rich>=13",')
    dropped = pyproject.replace('"isal>=1.6",', "")
    pinned = read_lock(lock)["pandas"]["version"]
    narrowed = pyproject.replace('"pandas>=2.0"', f'"pandas>{pinned}"')
    assert len({pyproject, added, dropped, narrowed}) == 4   # each edit took
    assert lock_problems(added, lock) == ["rich is in pyproject.toml but not locked"]
    assert lock_problems(dropped, lock) == ["isal is locked as a dependency but no longer in pyproject.toml"]
    assert lock_problems(narrowed, lock) == [f"pandas=={pinned} does not satisfy pyproject's pandas>{pinned}"]
    unhashed = re.sub(r"(?m)^(tqdm==\S+) \\\n(\s+--hash=\S+ \\\n)*\s+--hash=\S+\n", r"\1\n", lock)
    assert lock_problems(pyproject, unhashed) == ["tqdm has no hash"]


def test_torch_lock_agrees_with_the_main_lock():
    main, torch = read_lock(LOCK.read_text()), read_lock(TORCH_LOCK.read_text())
    assert {"sympy", "networkx", "filelock"} <= torch.keys() and "torch" not in torch | main
    assert {n: p["version"] for n, p in torch.items() if n in main} == \
        {n: main[n]["version"] for n in torch.keys() & main.keys()}
    assert all(p["hashes"] for p in torch.values())


def _makefile_pin(variable: str) -> Requirement:
    return Requirement(re.search(rf"^{variable}\s*:?= (\S+)", (ROOT / "Makefile").read_text(), re.M)[1])


def test_judge_lock_holds_the_makefiles_judge_and_agrees_with_the_main_lock():
    main, judge = read_lock(LOCK.read_text()), read_lock(JUDGE_LOCK.read_text())
    direct = {name: pin["version"] for name, pin in judge.items() if DIRECT in pin["via"]}
    wanted = {canonicalize_name(r.name): str(next(iter(r.specifier)).version)
              for r in (_makefile_pin("JUDGE_RUNTIME"), _makefile_pin("JUDGE_MODEL"))}
    assert direct == wanted == {"ai-edge-litert": "2.3.0", "fer": "25.10.3"}
    # fer's declared dependencies (TensorFlow, facenet-pytorch, which needs torchvision) stay out
    assert not {"tensorflow", "facenet-pytorch", "torchvision", "torch"} & judge.keys()
    assert {n: p["version"] for n, p in judge.items() if n in main} == \
        {n: main[n]["version"] for n in judge.keys() & main.keys()}
    assert all(p["hashes"] for p in judge.values())


def test_ui_lock_holds_the_ui_extra_without_pillow_and_agrees_with_the_other_locks():
    ui = read_lock(UI_LOCK.read_text())
    extra = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
             ["optional-dependencies"]["ui"]] + [_makefile_pin("UI_TEST")]
    direct = {name for name, pin in ui.items() if DIRECT in pin["via"]}
    assert direct == {canonicalize_name(r.name) for r in extra} >= {"gradio", "websocket-client"}
    assert all(r.specifier.contains(ui[canonicalize_name(r.name)]["version"]) for r in extra)
    # gradio declares pillow<13; the main lock's pillow 13 is the one installed (docs/install.md)
    assert "pillow" not in ui and "torch" not in ui
    for other in (LOCK, TORCH_LOCK):
        pins = read_lock(other.read_text())
        assert {n: p["version"] for n, p in ui.items() if n in pins} == \
            {n: pins[n]["version"] for n in ui.keys() & pins.keys()}, other.name
    assert all(p["hashes"] for p in ui.values())


def test_onnx_lock_holds_the_onnx_extra_and_agrees_with_every_other_lock():
    onnx = read_lock(ONNX_LOCK.read_text())
    extra = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
             ["optional-dependencies"]["onnx"]]
    direct = {name for name, pin in onnx.items() if DIRECT in pin["via"]}
    assert direct == {canonicalize_name(r.name) for r in extra} == {"onnx", "onnxruntime", "onnxscript"}
    assert all(r.specifier.contains(onnx[canonicalize_name(r.name)]["version"]) for r in extra)
    # torch brings sympy and mpmath: a user's own torch keeps the ones it came with (docs/install.md)
    assert not {"torch", "sympy", "mpmath"} & onnx.keys()
    for other in sorted(ROOT.glob("requirements*.lock")):   # make setup installs them all into one venv
        pins = read_lock(other.read_text())
        assert {n: p["version"] for n, p in onnx.items() if n in pins} == \
            {n: pins[n]["version"] for n in onnx.keys() & pins.keys()}, other.name
    assert all(p["hashes"] for p in onnx.values())


def _installed(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_from_setup() -> bool:
    """Whether `make setup` installed torch: TORCH_SPEC's version, in the venv (a user's own torch is outside)."""
    torch = _installed("torch")
    if torch is None:
        return False
    spec = Requirement(re.search(r"^TORCH_SPEC \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)[1])
    where = Path(importlib.metadata.distribution("torch").locate_file("")).resolve()
    return Version(torch.base_version) in spec.specifier and where.is_relative_to(Path(sys.prefix).resolve())


def test_installed_versions_match_the_locks():
    """What the tests import is what the locks hold (a venv made by `make setup`); the torch lock counts only
    when `make setup` installed torch: it leaves a user's own torch and the helpers that came with it."""
    pins = {**(read_lock(TORCH_LOCK.read_text()) if _torch_from_setup() else {}), **read_lock(JUDGE_LOCK.read_text()),
            **read_lock(UI_LOCK.read_text()), **read_lock(ONNX_LOCK.read_text()), **read_lock(LOCK.read_text())}
    wrong = {name: f"{_installed(name)} installed, {pin['version']} locked" for name, pin in sorted(pins.items())
             if _installed(name) != Version(pin["version"])}
    assert not wrong, f"not the locked environment; run `make setup` (docs/install.md): {wrong}"


def test_read_lock_reads_pip_compile_entries():
    text = ("a==1 \\\n    --hash=sha256:00\n    # via -r -\n# comment\nb==2.0 \\\n    --hash=sha256:11 \\\n"
            "    --hash=sha256:22\n    # via\n    #   -c requirements.lock\n    #   a\n")
    assert read_lock(text) == {"a": {"version": "1", "hashes": 1, "via": ["-r -"]},
                               "b": {"version": "2.0", "hashes": 2, "via": ["-c requirements.lock", "a"]}}
