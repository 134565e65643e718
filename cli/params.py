"""Option parsers shared by several commands."""
from __future__ import annotations

import click


def comma_floats(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    """click callback: '0,0.5,1,1.5' -> (0.0, 0.5, 1.0, 1.5); at least one number."""
    try:
        weights = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: write comma-separated numbers, e.g. 0,0.5,1,1.5") from None
    if not weights:
        raise click.BadParameter("give at least one weight")
    return weights
