"""Figures and report.html are written and well formed: PNGs decode, the HTML parses and embeds them all."""
from __future__ import annotations

import base64
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
import torch

from fexdata.images import write_png
from fextrain.evaluate.grids import as_uint8_images, grid_from_flat, image_grid
from fextrain.evaluate.report import embedded_png, table, write_report


class _Collector(HTMLParser):
    """Collects <img> sources, table cells and the open/close balance of the tags we emit."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self.open: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
            return
        if tag in ("meta",):
            return
        self.open.append(tag)
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


def test_grid_has_labels_cells_and_exact_size():
    imgs = [np.full((64, 64, 3), v, np.uint8) for v in (0, 100, 200)]
    grid = image_grid([imgs, imgs[:2]], col_labels=["anger", "joy", "surprise"], row_labels=["a", "b"], cell=32, gap=2)
    assert grid.dtype == np.uint8 and grid.shape == (22 + 2 * 34 + 2, 72 + 3 * 34 + 2, 3)
    # First image cell of row 0 is black, the missing last cell of row 1 stays white paper.
    assert grid[22 + 2 + 16, 72 + 2 + 16].tolist() == [0, 0, 0]
    assert grid[22 + 36 + 16, 72 + 2 * 34 + 2 + 16].tolist() == [255, 255, 255]
    # Column labels are drawn (some dark ink in the header band).
    assert (grid[:22, 72:] < 128).any()
    with pytest.raises(ValueError):
        image_grid([])


def test_generator_tensors_become_uint8_grids():
    x = torch.linspace(-1, 1, 6 * 3 * 8 * 8).reshape(6, 3, 8, 8)
    arr = as_uint8_images(x)
    assert arr.shape == (6, 8, 8, 3) and arr.min() == 0 and arr.max() == 255
    grid = grid_from_flat(x, ncols=3, cell=16)
    assert grid.shape[0] == 2 * 18 + 2


def test_png_and_report_are_well_formed(tmp_path):
    rng = np.random.default_rng(0)
    figures = []
    for name in ("samples", "identities"):
        rgb = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
        path = write_png(tmp_path / f"{name}.png", rgb)
        decoded = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(decoded, rgb)  # PNG is lossless: exactly what we drew
        figures.append((path, f"{name} <figure>"))
    blocks = [("Judge", table(["affect", "accuracy"], [["anger", 0.5], ["joy & co", None]])),
              ("Figures", "".join(embedded_png(p, caption) for p, caption in figures))]
    report = write_report(tmp_path / "report.html", "Run <x>", blocks, metrics={"judge": {"a": 1}})
    text = report.read_text()
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.open == []  # every tag we opened was closed, in order
    assert len(parser.images) == 2
    for (path, _), src in zip(figures, parser.images):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == path.read_bytes()
    assert "0.500" in parser.cells and "joy & co" in parser.cells and "–" in parser.cells
    assert "<x>" not in text and "http" not in text  # escaped, and nothing fetched from elsewhere
