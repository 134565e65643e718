"""Column tables: one declarative `Table` per file fex writes, and the docs derived from it.

A `Table` lists its columns in file order with their Arrow type, whether they may be null, whether a
reader needs them, and one line of meaning. Writers take their Arrow schema from it, readers their
casts, and the column tables in docs/ are rendered from it between markers

    <!-- columns: records -->
    ...
    <!-- /columns -->

so `make docs` (`write_docs()`) rewrites them and tests/test_schema_docs.py fails
when they drift. A module that defines a Table adds itself to `TABLE_MODULES`.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

# Modules that define a Table at module level (each table's doc page says where it is rendered).
TABLE_MODULES: tuple[str, ...] = ("fexdata.ingest.records", "fexdata.manifest.schema", "fexdata.edits")
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool           # may hold nulls (NaN in a float column is a value, not a null)
    doc: str                 # one line of meaning, rendered into the docs
    required: bool = True    # readers refuse a file without it; optional columns are read when present


@dataclass(frozen=True)
class Table:
    """The columns of one kind of file, in file order.

    `strict`: non-nullable columns are non-nullable Arrow fields. Ingest parts keep every field
    nullable, so parts already on disk from a resumed run still concatenate with new ones.
    """
    name: str
    doc_page: str            # file under docs/ that renders this table
    columns: tuple[Column, ...]
    strict: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, c.nullable or not self.strict) for c in self.columns])

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def list_widths(self) -> dict[str, int]:
        """Fixed-size list columns (landmarks, transform, ...) -> their width."""
        return {c.name: c.type.list_size for c in self.columns if pa.types.is_fixed_size_list(c.type)}

    def list_dtypes(self) -> dict[str, np.dtype]:
        """Fixed-size list columns -> the numpy dtype of their values (float32 landmarks stay float32)."""
        return {c.name: np.dtype(c.type.value_type.to_pandas_dtype()) for c in self.columns
                if pa.types.is_fixed_size_list(c.type)}

    def nullable_ints(self) -> tuple[str, ...]:
        """Integer columns that may be null: pandas reads them as nullable Int64/Int32, not float."""
        return tuple(c.name for c in self.columns if c.nullable and pa.types.is_integer(c.type))


def type_name(t: pa.DataType) -> str:
    """The type as docs spell it: `float32`, not Arrow's `float`; `fixed_size_list<float32>[136]`."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{type_name(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t):
        return f"list<{type_name(t.value_type)}>"
    return {"float": "float32", "double": "float64", "halffloat": "float16"}.get(str(t), str(t))


def to_markdown(table: Table) -> str:
    """The docs' column table; a `required` column only for tables with optional columns."""
    optional = any(not c.required for c in table.columns)
    head = ["column", "type", "null", *(["required"] if optional else []), "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in table.columns:
        cells = [f"`{c.name}`", type_name(c.type), "yes" if c.nullable else "no",
                 *(["yes" if c.required else "no"] if optional else []), c.doc]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def all_tables() -> dict[str, Table]:
    """Every Table defined at module level in TABLE_MODULES, by name."""
    tables: dict[str, Table] = {}
    for module in TABLE_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Table):
                tables[value.name] = value
    return tables


_BLOCK = re.compile(r"(<!-- columns: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /columns -->)", re.S)


def render_docs(text: str, tables: dict[str, Table]) -> str:
    """`text` with every marked column block replaced by its table's current rendering."""
    def fill(m: re.Match) -> str:
        return m.group(1) + to_markdown(tables[m.group("name")]) + "\n" + m.group(4)
    return _BLOCK.sub(fill, text)


def documented_tables(text: str) -> list[str]:
    return [m.group("name") for m in _BLOCK.finditer(text)]


def write_docs() -> int:
    """`make docs`: re-render every stale column table; status 1 when a page lacks a block (a person adds it)."""
    problems = doc_problems(all_tables(), write=True)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def doc_problems(tables: dict[str, Table], write: bool = False) -> list[str]:
    """What is out of step between `tables` and their doc pages (with `write`, stale blocks are rewritten)."""
    problems = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        found = documented_tables(text)
        problems += [f"{page}: no <!-- columns: {t.name} --> block" for t in tables.values()
                     if t.doc_page == page.name and t.name not in found]
        problems += [f"{page}: a <!-- columns: {name} --> block, but no Table {name!r} (or it renders on "
                     f"another page)" for name in found if name not in tables or tables[name].doc_page != page.name]
        if any(name not in tables for name in found):
            continue
        new = render_docs(text, tables)
        if new != text:
            if write:
                page.write_text(new)
            else:
                problems.append(f"{page}: column tables differ from the schema; run `make docs`")
    return problems

