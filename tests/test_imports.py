"""The import graph of fexdata, fextrain and cli: no cycle, and data flows one way (cli -> fextrain -> fexdata).

Every module is parsed (not imported) and every `import` statement counts, at module level and inside
functions alike: a lazy import only hides a cycle until the day someone hoists it. `from pkg import x`
is an edge to `pkg.x` when that is a module and to `pkg` (its `__init__`) otherwise, which is what
Python runs. Cycles are the strongly connected components of more than one module (Tarjan), or a
module importing itself.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fexdata", "fextrain", "cli")
# Which packages each package may import; cli sits on top, fexdata at the bottom.
ALLOWED = {"fexdata": {"fexdata"}, "fextrain": {"fextrain", "fexdata"}, "cli": {"cli", "fextrain", "fexdata"}}


def module_files() -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages (a package is its `__init__`)."""
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _resolve(module: str, level: int, importer: str, is_package: bool) -> str:
    if not level:
        return module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # `import a.b.c` runs a, a.b and a.b.c; keep the deepest known module, which imports its parents' names
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, name, is_package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member, plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # recursive: the graph is a few hundred modules deep at most
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_cycles_and_relative_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]] and cycles({"a": {"b"}, "b": set()}) == []
    assert _resolve("x", 1, "p.q.m", False) == "p.q.x" and _resolve("", 2, "p.q", True) == "p"


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (strongly connected modules): " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package):
    wrong = sorted(f"{mod} imports {dep}" for mod, deps in import_graph().items() if mod.split(".")[0] == package
                   for dep in deps if dep.split(".")[0] not in ALLOWED[package])
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: " + "; ".join(wrong)


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "fexdata.ingest.sources" in graph["fexdata.ingest.run"]  # imported inside resolve_sources
    assert "cli.main" in graph["cli.demo"]                            # imported inside demo()
