"""Colour: does the edit keep the source's colours? Grayscale in must come out gray.

A model trained on colour faces may paint colour into a gray source (tinted lips on gray faces were seen
on real manifests), which neither the judge nor dlib notices. Sources are split by whether they are
grayscale (every pixel's max(R, G, B) - min(R, G, B) at most GRAY_SPREAD levels):

* gray sources: the chroma the edit adds, the mean over the face of max(R,G,B) - min(R,G,B) in 0-255
  levels on the edit minus on its source; flagged TINTED above ADDED_CHROMA_LIMIT ("gray in, gray out");
* colour sources: the colour cast, the shift of the face's mean Cb and Cr (BT.601, 0-255 levels) from
  source to edit, |dCb| and |dCr| and their Euclidean length. Mean colours move little with an
  expression (teeth, a blush are small areas) and fully with a tint. Reported, not flagged: no target
  has been measured for it.

A copy adds 0 and casts 0; a generator that adds 10 to R of a gray face adds 10 levels of chroma.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fextrain.evaluate.context import EvalContext
from fextrain.evaluate.report import fmt, table
from fextrain.evaluate.section import HeadlineItem, SECTIONS, Section, note

GRAY_SPREAD = 2  # levels of channel spread a grayscale image may have (rounding, a PNG's or JPEG's noise)
ADDED_CHROMA_LIMIT = 2.0  # levels of chroma an edit of a gray source may add: "gray in, gray out"
TINTED = "TINTED"
# BT.601 full-range chroma rows, as JPEG and OpenCV's RGB2YCrCb (without the 128 offset, which cancels)
_CB = np.array([-0.168736, -0.331264, 0.5])
_CR = np.array([0.5, -0.418688, -0.081312])


def channel_spread(images: np.ndarray) -> np.ndarray:
    """Per pixel max(R, G, B) - min(R, G, B) in levels: [N, H, W] int16."""
    x = np.asarray(images, np.int16)
    return x.max(axis=-1) - x.min(axis=-1)


def is_gray(images: np.ndarray) -> np.ndarray:
    """[N] bool: no pixel's channels spread more than GRAY_SPREAD levels."""
    return channel_spread(images).reshape(len(images), -1).max(axis=1) <= GRAY_SPREAD


def added_chroma(sources: np.ndarray, edits: np.ndarray) -> np.ndarray:
    """[N] mean channel spread of each edit minus that of its source (levels)."""
    mean = lambda imgs: channel_spread(imgs).reshape(len(imgs), -1).mean(axis=1)  # noqa: E731
    return mean(edits) - mean(sources)


def colour_cast(sources: np.ndarray, edits: np.ndarray) -> np.ndarray:
    """[N, 2]: each edit's mean (Cb, Cr) minus its source's, in levels."""
    mean_rgb = lambda imgs: np.asarray(imgs, np.float64).reshape(len(imgs), -1, 3).mean(axis=1)  # noqa: E731
    shift = mean_rgb(edits) - mean_rgb(sources)
    return np.stack([shift @ _CB, shift @ _CR], axis=1)


@SECTIONS.register("colour")
class ColourSection(Section):
    title = "Colour"

    def compute(self, ctx: EvalContext) -> dict[str, Any]:
        edits, k = ctx.edits, ctx.k
        sources = np.repeat(edits.sources, k, axis=0)  # aligned with the edits, source-major
        gray_source = is_gray(edits.sources)
        gray = np.repeat(gray_source, k)
        added = added_chroma(sources[gray], edits.images[gray]) if gray.any() else np.zeros(0)
        cast = colour_cast(sources[~gray], edits.images[~gray]) if (~gray).any() else np.zeros((0, 2))
        gray_mean = float(added.mean()) if len(added) else None
        return {
            "split": "test", "sources": int(len(edits.sources)),
            "gray": {"sources": int(gray_source.sum()), "edits": int(gray.sum()), "gray_spread": GRAY_SPREAD,
                     "added_chroma": gray_mean, "added_chroma_max": float(added.max()) if len(added) else None,
                     "per_affect": {a: (float(added[edits.targets[gray] == i].mean()) if len(added) else None)
                                    for i, a in enumerate(ctx.affects)},
                     "limit": ADDED_CHROMA_LIMIT,
                     "tinted": gray_mean is not None and gray_mean > ADDED_CHROMA_LIMIT},
            "colour": {"sources": int((~gray_source).sum()), "edits": int((~gray).sum()),
                       "cb_shift": float(np.abs(cast[:, 0]).mean()) if len(cast) else None,
                       "cr_shift": float(np.abs(cast[:, 1]).mean()) if len(cast) else None,
                       "cast": float(np.hypot(cast[:, 0], cast[:, 1]).mean()) if len(cast) else None},
        }

    def headline(self, r: dict[str, Any]) -> list[HeadlineItem]:
        g, c = r["gray"], r["colour"]
        parts = []
        if g["sources"]:
            parts.append(f"{'TINTED: ' if g['tinted'] else ''}gray sources +{fmt(g['added_chroma'])} levels of "
                         f"chroma (limit {g['limit']:g}, {g['sources']} sources)")
        if c["sources"]:
            parts.append(f"colour sources cast {fmt(c['cast'])} levels ({c['sources']} sources)")
        value = g["added_chroma"] if g["sources"] else c["cast"]
        return [HeadlineItem("colour", "colour", value, "; ".join(parts) or "no sources",
                             TINTED if g["tinted"] else None)]

    def summary(self, r: dict[str, Any]) -> list[str]:
        g, c = r["gray"], r["colour"]
        flag = "  TINTED: colour added to gray faces" if g["tinted"] else ""
        return [f"colour          gray sources {g['sources']}: added chroma {fmt(g['added_chroma'])} levels (limit "
                f"{g['limit']:g}){flag}   colour sources {c['sources']}: |dCb| {fmt(c['cb_shift'])} |dCr| "
                f"{fmt(c['cr_shift'])} levels"]

    def html(self, r: dict[str, Any], out_dir: Path) -> str:
        g, c = r["gray"], r["colour"]
        body = table(["sources", "count", "edits", "measure", "value (levels)"],
                     [["grayscale", g["sources"], g["edits"], "chroma added (mean max-min of RGB)", g["added_chroma"]],
                      ["grayscale", g["sources"], g["edits"], "largest chroma added to one edit",
                       g["added_chroma_max"]],
                      ["colour", c["sources"], c["edits"], "mean |dCb|", c["cb_shift"]],
                      ["colour", c["sources"], c["edits"], "mean |dCr|", c["cr_shift"]],
                      ["colour", c["sources"], c["edits"], "colour cast (length of dCb, dCr)", c["cast"]]])
        if g["sources"]:
            body += table(["target affect", "chroma added to gray sources"], list(g["per_affect"].items()))
        body += note(f"A source is grayscale when no pixel's channels spread more than {g['gray_spread']} levels; "
                     f"an edit of one that adds more than {g['limit']:g} levels of chroma on average is flagged "
                     "TINTED. Colour sources: the shift of the face's mean BT.601 chroma from source to edit (a tint "
                     "moves it, an expression barely). A copy scores 0 on every row.")
        return body
