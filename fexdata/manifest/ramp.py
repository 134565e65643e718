"""`fex build-manifest --ramp SECONDS`: intensity for video frames of clips that ramp up from neutral.

Studio and lab clips (the demo's, CK+-style sequences) often start neutral and reach the full
expression after a known time. A frame `t` seconds after its clip starts then shows the expression at
about min(1, t / SECONDS); a model trained on that number (FExGAN's target condition) learns what a
weight between 0 and 1 means instead of treating every frame of the clip as the full expression.

The clock starts at the item's own start: 0 for a clip file, the segment's start for a segment of a
long take (its item is named `take.mp4@START-END`, `fexdata.ingest.sources.base.Item.key`). Stills,
records that already carry an intensity (a studio segment sheet's column, JAFFE's ratings) and
`neutral` frames (there is no expression to ramp up) keep theirs.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

_NUMBER = r"\d+(?:\.\d*)?(?:e[+-]?\d+)?"
_SEGMENT = re.compile(rf"@({_NUMBER})-{_NUMBER}$")


def item_start(items: pd.Series) -> np.ndarray:
    """Seconds at which each record's item starts in its file: a segment's START, else 0."""
    start = items.str.extract(_SEGMENT, expand=False)
    return pd.to_numeric(start, errors="coerce").fillna(0.0).to_numpy(np.float64)


def ramp_intensity(df: pd.DataFrame, seconds: float) -> tuple[pd.Series, int]:
    """(the `intensity` column with video frames that had none filled by min(1, t / seconds), rows filled).

    `df` needs `frame`, `time`, `item`, `affect` and `intensity`; t is `time` less the item's start, floored at 0.
    """
    intensity = df["intensity"].astype(np.float64)
    fill = (df["frame"].notna() & df["time"].notna() & intensity.isna() & (df["affect"] != "neutral")).to_numpy(bool)
    if not fill.any():
        return intensity, 0
    since = df["time"].to_numpy(np.float64)[fill] - item_start(df.loc[fill, "item"])
    filled = intensity.to_numpy(np.float64, copy=True)
    filled[fill] = np.clip(since / seconds, 0.0, 1.0)
    return pd.Series(filled, index=df.index, name="intensity"), int(fill.sum())
