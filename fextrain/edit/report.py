"""A section of an HTML report (the demo's report.html) showing what `fex edit` made, placed first: per input,
the input beside each output at full resolution (for a video: one edited frame of the input and of each output
video), embedded, with links to the outputs, then the input's grid around the faces as detail."""
from __future__ import annotations

import html
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fexdata import parquet
from fexdata.errors import EditError
from fexdata.images import ImageError, read_rgb, write_png
from fexdata.ingest.video import VideoError, probe
from fexdata.paths import atomic_write_text, read_json_or_empty
from fextrain.edit.outputs import GRID_NAME
from fextrain.edit.run import EDIT_JSON
from fextrain.edit.table import DAMAGED_HINT, TABLE
from fextrain.edit.video import frame_at
from fextrain.evaluate.report import embedded_png

_BEGIN, _END = "<!-- fex edit -->", "<!-- /fex edit -->"
# Images are embedded at their own size up to this side, so report.html stays one file of a few MB; a larger one
# is downscaled to it and its caption says so.
MAX_SIDE = 1024
# Side by side, sharing the row: the browser scales them down, smoothly (the report's pixelated rendering is for
# enlarging small crops); the embedded PNGs keep every pixel.
_STYLE = ("<style>.fex-edit{display:flex;gap:.5em;align-items:flex-start}.fex-edit figure{flex:1 1 0;min-width:0;"
          "margin:0}.fex-edit img{image-rendering:auto}</style>")


def edit_section(edit_dir: Path, page_dir: Path) -> str:
    """HTML: per input of DIR/edits.parquet, the input beside each output at full resolution (a video: the middle
    edited frame of each), links to the outputs (hrefs relative to page_dir), and the input's grid."""
    edits = parquet.read_table(edit_dir / TABLE, ["input", "kind", "frame", "output"], error=EditError,
                               hint=DAMAGED_HINT).to_pandas()
    owners = read_json_or_empty(edit_dir / EDIT_JSON).get("inputs", {})
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for input_, rows in edits.groupby("input", sort=True):
            outputs = sorted(set(rows["output"]))
            key = Path(outputs[0]).parent.as_posix()
            source = Path(owners.get(key, input_))  # edit.json's absolute path; the table's is as typed
            links = ", ".join(_link(edit_dir / o, page_dir) for o in outputs)
            grid = edit_dir / key / GRID_NAME
            parts.append(f"<h3>{html.escape(str(input_))}</h3>"
                         f"<p>input: {_link(source, page_dir)}; outputs: {links}</p>"
                         + _before_after(source, edit_dir, outputs, rows, Path(tmp))
                         + (embedded_png(grid, f"{input_}: around the faces, the source, then each target")
                            if grid.is_file() else ""))
    return _STYLE + "".join(parts)


def _link(path: Path, page_dir: Path) -> str:
    return f'<a href="{html.escape(os.path.relpath(path, page_dir))}">{html.escape(path.name)}</a>'


def _before_after(source: Path, edit_dir: Path, outputs: list[str], rows: pd.DataFrame, tmp: Path) -> str:
    """One row of figures: the input, then each output, each at full resolution."""
    if (rows["kind"] == "video").any():
        frames = sorted(int(f) for f in rows["frame"].dropna().unique())
        index = frames[len(frames) // 2]  # an edited frame in the middle of the edited span
        pictures = [("before", source, _video_frame(source, index))]
        pictures += [(f"after: {Path(o).stem}", edit_dir / o, _video_frame(edit_dir / o, index)) for o in outputs]
        where = f", frame {index}"
    else:
        pictures = [("before", source, _photo(source))] + [(f"after: {Path(o).stem}", edit_dir / o,
                                                             _photo(edit_dir / o)) for o in outputs]
        where = ""
    figures = []
    for n, (label, path, image) in enumerate(pictures):
        if image is None:
            figures.append(f'<p class="note">{html.escape(f"{label}: {path} could not be read")}</p>')
            continue
        h, w = image.shape[:2]
        caption = f"{label} ({path.name}{where}, {w}x{h} px"
        scale = MAX_SIDE / max(h, w)
        if scale < 1:
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            caption += f", shown downscaled to {image.shape[1]}x{image.shape[0]}"
        figures.append(embedded_png(write_png(tmp / f"{n}.png", image), caption + ")"))
    return f'<div class="fex-edit">{"".join(figures)}</div>'


def _photo(path: Path) -> np.ndarray | None:
    try:
        return read_rgb(path)
    except ImageError:  # missing or damaged: the figure says so
        return None


def _video_frame(path: Path, index: int) -> np.ndarray | None:
    try:
        return frame_at(path, index, probe(path))
    except VideoError:
        return None


def add_to_report(report: Path, edit_dir: Path, title: str = "Edits of a photo and a clip (fex edit)") -> None:
    """Insert (or replace) the edit section as the report's first section, right after its title (<h1>)."""
    text = report.read_text()
    text = re.sub(re.escape(_BEGIN) + ".*?" + re.escape(_END), "", text, flags=re.S)
    section = f"{_BEGIN}<h2>{html.escape(title)}</h2>{edit_section(edit_dir, report.parent)}{_END}"
    head = re.search(r"</h1>", text) or re.search(r"<body[^>]*>", text)
    if head is None:
        raise EditError(f"{report} is not an HTML report (no <body>)", hint="write it with `fex eval` first")
    atomic_write_text(report, text[:head.end()] + section + text[head.end():])
