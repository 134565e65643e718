"""report.html: one self-contained page (figures embedded as base64 PNG) with every metric as a table.

Self-contained so it can be mailed, attached to an issue or opened from a copied folder; nothing is
fetched when it is opened (no scripts, no external styles).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Sequence

from fexdata.paths import atomic_write_text

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}img{max-width:100%;image-rendering:pixelated}
.note{color:#555;font-size:.9em}.flag{color:#b00;font-weight:bold}
"""


def fmt(value: Any) -> str:
    """Numbers for people: shares and distances to 3 decimals, counts as integers, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def embedded_png(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def write_report(path: str | Path, title: str, blocks: Sequence[tuple[str, str]], metrics: dict | None = None) -> Path:
    """Write report.html: `blocks` are (heading, HTML body) pairs in reading order (bodies built with
    `table()`, `embedded_png()`, ...); `metrics`, when given, is appended verbatim as JSON for reference."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts.extend(f"<h2>{html.escape(heading)}</h2>{body}" for heading, body in blocks)
    if metrics is not None:
        dump = html.escape(json.dumps(metrics, indent=2))
        parts.append(f"<h2>metrics.json</h2><details><summary>show</summary><pre>{dump}</pre></details>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return Path(path)
