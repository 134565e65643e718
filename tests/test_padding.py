"""Padding where a crop leaves the frame: the padded share's known answers, the pad modes, --zoom,
and pad_share through ingest records and `fex build-manifest --max-pad`."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from _manifest_fixtures import write_ingest
from cli.main import main
from fexdata.errors import IngestError
from fexdata.ingest import ingest
from fexdata.ingest.align import (FADE_LENGTH, PAD_MODES, Alignment, alignment_for, bbox_alignment, crop,
                                  _soften_outside, ffhq_alignment, outside_distance, pad_share)
from fexdata.ingest.faces import FaceFinder
from fexdata.ingest.plan import IngestOptions, Source
from fexdata.manifest import ManifestError, build_manifest
from fexdata.manifest.build import BuildOptions
from fexdata.sample import sample_face
from tests._ingest_fixtures import write_png

W = H = 200


@pytest.fixture(scope="module")
def finder():
    return FaceFinder()


@pytest.fixture(scope="module")
def face(finder):
    """A real sample face (dlib landmarks), whose FFHQ quad zoomed out 0.6x is about half outside."""
    img = sample_face(2, "surprise", 256)
    al = ffhq_alignment(finder.find(img).landmarks)
    return img, al.zoomed(0.6)


def _gradient(img: np.ndarray, mask: np.ndarray) -> float:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))[mask].mean())


def test_pad_share_known_answers():
    assert pad_share(Alignment(100, 100, 40, 0), W, H) == 0.0                      # well inside
    assert pad_share(bbox_alignment((0, 0, W, H), margin=0), W, H) == 0.0          # exactly the frame
    assert pad_share(Alignment(0, 100, 30, 0), W, H) == pytest.approx(0.5)         # centre on the left edge
    assert pad_share(Alignment(0, 100, 20, 20), W, H) == pytest.approx(0.5)        # the same, turned 45 degrees
    assert pad_share(Alignment(0, 0, 30, 0), W, H) == pytest.approx(0.75)          # on a corner
    assert pad_share(Alignment(500, 500, 30, 0), W, H) == 1.0                      # nowhere near
    # the per-pixel map agrees with the exact area
    for al in (Alignment(10, 150, 60, 15), Alignment(180, 20, 50, -30)):
        dist = outside_distance(al.transform(128), W, H, 128)
        assert (dist > 0).mean() == pytest.approx(pad_share(al, W, H), abs=0.02)
    assert outside_distance(Alignment(100, 100, 40, 0).transform(64), W, H, 64) is None


def _bilinear(img: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """The exact bilinear sample of `img` at frame coordinates (fx, fy), all inside [0, w-1] x [0, h-1]."""
    h, w = img.shape[:2]
    x0, y0 = np.minimum(np.floor(fx).astype(int), w - 2), np.minimum(np.floor(fy).astype(int), h - 2)
    ax, ay = (fx - x0)[:, None], (fy - y0)[:, None]
    p = img.astype(np.float64)
    top = p[y0, x0] + ax * (p[y0, x0 + 1] - p[y0, x0])
    bottom = p[y0 + 1, x0] + ax * (p[y0 + 1, x0 + 1] - p[y0 + 1, x0])
    return top + ay * (bottom - top)


def test_pad_modes_agree_inside_the_frame_and_differ_outside(face):
    """Where bilinear sampling reads only frame pixels, every mode's crop is the frame's bilinear sample.

    The modes agree there up to the warp's rounding, not bit for bit: OpenCV 4.x warps 8-bit images in fixed
    point (1/32-pixel coordinates; up to 2.3 levels from the exact sample on this crop) and gives the same
    bytes in every border mode; OpenCV 5.1 computes in float (within 0.5 of the exact sample), and sends
    `edge` and `constant` through IPP, which rounds a near-tie (x.5) one level away from `reflect`'s kernel
    (3 of this crop's 30,337 footprint pixels). docs/install.md has the comparison.
    """
    img, al = face
    h, w = img.shape[:2]
    assert 0.4 < pad_share(al, w, h) < 0.7
    crops = {mode: crop(img, al, (256,), mode)[256] for mode in PAD_MODES}  # no pre-shrink at this scale
    m = crops["reflect"][1]
    dist = outside_distance(m, w, h, 256)
    inv = cv2.invertAffineTransform(m)
    v, u = np.mgrid[0:256, 0:256]
    fx, fy = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    footprint = (fx >= 0) & (fy >= 0) & (fx <= w - 1) & (fy <= h - 1)  # bilinear samples only frame pixels
    exact = _bilinear(img, fx[footprint], fy[footprint])
    reflect = crops["reflect"][0]
    # blur is built on reflect and touches nothing inside the frame: bit-identical there
    assert np.array_equal(crops["blur"][0][dist == 0], reflect[dist == 0])
    for mode in ("reflect", "edge", "constant"):
        error = np.abs(crops[mode][0][footprint] - exact)
        # a quarter-pixel shift of the sample, or bicubic weights, is off by 25+ levels somewhere and 1+ on average
        assert error.max() <= 3 and error.mean() < 0.5, (mode, error.max(), error.mean())
        apart = np.abs(crops[mode][0][footprint].astype(int) - reflect[footprint]).max(axis=1)
        assert apart.max() <= 1 and (apart > 0).mean() < 0.001, (mode, apart.max(), (apart > 0).sum())
    band = dist >= 2
    for mode in ("blur", "edge", "constant"):
        assert np.abs(crops[mode][0][band].astype(int) - reflect[band]).mean() > 10, mode
    # blur invents far less structure than the mirror image, and fades to the frame's mean colour
    assert _gradient(crops["blur"][0], band) < 0.5 * _gradient(reflect, band)
    far = dist > FADE_LENGTH * 256
    assert far.sum() > 100
    mean = np.array(cv2.mean(img)[:3])
    assert np.abs(crops["blur"][0][far] - mean).max() <= 1.0
    assert np.abs(crops["constant"][0][dist > 1] - mean).max() <= 1.0
    with pytest.raises(IngestError, match="padding"):
        crop(img, al, (256,), "mirror")  # type: ignore[arg-type]


def test_blur_padding_keeps_sizes_consistent_and_skips_unpadded_crops(face):
    img, al = face
    out = crop(img, al, (64, 128), "blur")
    small = cv2.resize(out[128][0], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out[64][0], small)
    inside = al.zoomed(2.5)
    assert pad_share(inside, 256, 256) == 0.0
    assert np.array_equal(crop(img, inside, (128,), "blur")[128][0], crop(img, inside, (128,), "reflect")[128][0])


def test_zoom_scales_the_quad_about_its_centre(face, finder):
    img, _ = face
    lm = finder.find(img).landmarks
    box = (60.0, 60.0, 180.0, 200.0)
    for mode in ("ffhq", "bbox"):
        base, tight = alignment_for(mode, lm, box), alignment_for(mode, lm, box, zoom=2.0)
        assert np.allclose(tight.quad().mean(0), base.quad().mean(0))
        assert math.hypot(tight.xx, tight.xy) == pytest.approx(math.hypot(base.xx, base.xy) / 2)
        assert np.allclose(tight.quad() - tight.quad().mean(0), (base.quad() - base.quad().mean(0)) / 2)
    # the zoom-2 crop is the middle of the zoom-1 crop, magnified
    base = alignment_for("ffhq", lm, box)
    wide = crop(img, base, (256,), "reflect")[256][0]
    tight = crop(img, base.zoomed(2.0), (128,), "reflect")[128][0]
    middle = cv2.resize(wide[64:192, 64:192], (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(tight.astype(int) - middle).mean() < 4
    shares = [pad_share(base.zoomed(z), 256, 256) for z in (0.5, 0.8, 1.0, 1.5)]
    assert shares == sorted(shares, reverse=True) and shares[0] > shares[-1]


def test_options_are_checked():
    with pytest.raises(IngestError, match="padding"):
        IngestOptions(pad="mirror")
    with pytest.raises(IngestError, match="zoom"):
        IngestOptions(zoom=0)


def test_ingest_records_pad_share_and_the_recipe(tmp_path, finder):
    """A tightly framed face is padded at FFHQ framing; --zoom pulls the crop in; ingest.json keeps both."""
    full = sample_face(1, "joy", 512)
    x0, y0, x1, y1 = finder.find(full).box
    side, cx, cy = 1.3 * max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
    tight = full[int(cy - side / 2):int(cy + side / 2), int(cx - side / 2):int(cx + side / 2)]
    write_png(tmp_path / "data" / "kim" / "joy" / "0.png", cv2.resize(tight, (200, 200)))
    write_png(tmp_path / "data" / "kim" / "anger" / "0.png", sample_face(1, "anger", 256))
    src = [Source((tmp_path / "data").resolve(), str(tmp_path / "data"), "folder")]
    shares = {}
    for zoom in (1.0, 1.6):
        out = tmp_path / f"out{zoom}"
        summary = ingest(src, out, IngestOptions(sizes=(64,), zoom=zoom), workers=1, progress=False,
                         log=lambda _: None)
        rec = pd.read_parquet(out / "records").set_index("affect")
        shares[zoom] = rec["pad_share"]
        options = json.loads((out / "ingest.json").read_text())["options"]
        assert options["pad"] == "blur" and options["zoom"] == zoom
        padding = summary["padding"]["folder"]
        assert padding["crops"] == 2 and padding["max"] == pytest.approx(rec["pad_share"].max(), abs=1e-4)
    assert shares[1.0]["joy"] > 0.3 and shares[1.6]["joy"] < shares[1.0]["joy"] - 0.2
    assert shares[1.0]["anger"] < shares[1.0]["joy"]


def test_max_pad_filters_and_counts(tmp_path):
    def mutate(d):
        d = d.copy()
        d.loc[d["frame"] == 1, "pad_share"] = 0.6
        d.loc[d["frame"] == 2, "pad_share"] = 0.3   # exactly the limit: kept
        d.loc[d["frame"] == 3, "pad_share"] = np.nan  # unknown: cannot be judged, kept
        return d
    src = write_ingest(tmp_path / "a", identities=3, frames=6, mutate=mutate)
    report = build_manifest([src], tmp_path / "m.parquet", BuildOptions(split="none", max_pad=0.3))
    assert report.dropped["padded share above --max-pad"] == 3 * 7
    assert report.rows_out + sum(report.dropped.values()) == report.rows_in
    df = pd.read_parquet(tmp_path / "m.parquet")
    assert set(df["frame"].astype(int)) == {0, 2, 3, 4, 5} and df["pad_share"].max() == 0.3
    studio = report.padding["studio"]
    assert studio["crops"] == 3 * 7 * 4 and studio["padded"] == 3 * 7 and studio["max"] == 0.3
    assert "padded share of the crops in the manifest" in report.to_text()
    assert report.to_dict()["padding"] == report.padding
    with pytest.raises(ManifestError, match="not a fraction"):
        build_manifest([src], tmp_path / "n.parquet", BuildOptions(split="none", max_pad=2.0))
    old = write_ingest(tmp_path / "b", identities=3, frames=2, mutate=lambda d: d.drop(columns=["pad_share"]))
    with pytest.raises(ManifestError, match="--max-pad needs"):
        build_manifest([old], tmp_path / "o.parquet", BuildOptions(split="none", max_pad=0.3))
    r = CliRunner().invoke(main, ["build-manifest", str(src), "--out", str(tmp_path / "c.parquet"),
                                  "--split", "none", "--max-pad", "0.3"])
    assert r.exit_code == 0 and "padded share above --max-pad" in r.output and "studio: 21 of 84" in r.output


def test_blur_pyramid_on_a_window_equals_the_whole_crops():
    """The blur computes its pyramid only around the padded band; the padded pixels must come out exactly as
    from the whole crop's pyramid, for bands on any side, corners, turned crops and odd sizes."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        w, h = (int(v) for v in rng.integers(120, 500, 2))
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        frame = cv2.GaussianBlur(frame, (0, 0), 3)  # structure at every scale, not only noise
        half, turn = rng.uniform(30, 300), rng.uniform(-0.6, 0.6)
        al = Alignment(rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h, half * np.cos(turn), half * np.sin(turn))
        for size in (256, 200):
            m = al.transform(size)
            reflected = cv2.warpAffine(frame, m[:2], (size, size), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT_101)
            fill = (90.0, 100.0, 110.0)
            fast = _soften_outside(reflected, m, w, h, fill)
            assert np.array_equal(fast, _soften_outside(reflected, m, w, h, fill, whole=True))
