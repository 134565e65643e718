"""A section of an HTML report (the demo's report.html) showing what `fex edit` made: each input's grid,
embedded, with links to its outputs."""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

from fexdata import parquet
from fexdata.errors import EditError
from fexdata.paths import atomic_write_text
from fextrain.edit.outputs import GRID_NAME
from fextrain.edit.table import DAMAGED_HINT, TABLE
from fextrain.evaluate.report import embedded_png

_BEGIN, _END = "<!-- fex edit -->", "<!-- /fex edit -->"


def edit_section(edit_dir: Path, page_dir: Path) -> str:
    """HTML: per input of DIR/edits.parquet its grid and links to its outputs (hrefs relative to page_dir)."""
    edits = parquet.read_table(edit_dir / TABLE, ["input", "output"], error=EditError, hint=DAMAGED_HINT).to_pandas()
    parts = []
    for input_, rows in edits.groupby("input", sort=True):
        outputs = sorted(set(rows["output"]))
        grid = (edit_dir / outputs[0]).parent / GRID_NAME
        links = ", ".join(f'<a href="{html.escape(os.path.relpath(edit_dir / o, page_dir))}">'
                          f"{html.escape(Path(o).name)}</a>" for o in outputs)
        parts.append(f"<h3>{html.escape(str(input_))}</h3><p>outputs: {links}</p>"
                     + (embedded_png(grid, f"{input_}: the source, then each target") if grid.is_file() else ""))
    return "".join(parts)


def add_to_report(report: Path, edit_dir: Path, title: str = "Edits of a photo and a clip (fex edit)") -> None:
    """Insert (or replace) the edit section at the end of an existing report.html."""
    text = report.read_text()
    text = re.sub(re.escape(_BEGIN) + ".*?" + re.escape(_END), "", text, flags=re.S)
    section = f"{_BEGIN}<h2>{html.escape(title)}</h2>{edit_section(edit_dir, report.parent)}{_END}"
    atomic_write_text(report, text.replace("</body>", section + "</body>", 1))
