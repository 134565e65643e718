"""The ingest pipeline on the real dlib + ffmpeg path: records contract, bad inputs, studio forms, resume."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from fexdata.ingest import RECORDS, REJECTS, IngestError, IngestOptions, Source, ingest, resolve_sources
from fexdata.sample import write_studio_tree
from _ingest_fixtures import bad_input_corpus, crop_pixels, write_png



def _run(root, out, items=None, **kw):
    src = [Source(root.resolve(), str(root), "folder")]
    scan = (lambda s: iter(items)) if items is not None else None
    options = kw.pop("options", IngestOptions())
    return ingest(src, out, options, workers=1, progress=False, log=lambda _: None, scan=scan, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    items, expected = bad_input_corpus(base / "data")
    out = base / "out"
    summary = _run(base / "data", out, items)
    return base, items, expected, out, summary


def test_bad_inputs_each_get_one_reject_and_good_inputs_land(corpus):
    _, _, expected, out, summary = corpus
    rej = pd.read_parquet(out / "rejects")
    assert set(rej.columns) >= {"source", "source_path", "reason"}
    for path, (category, phrase) in expected.items():
        rows = rej[rej.source_path == path]
        assert len(rows) == 1, (path, rows.to_dict("records"))
        assert rows.category.iloc[0] == category and phrase in rows.reason.iloc[0], rows.reason.iloc[0]
    assert len(rej) == len(expected)
    rec = pd.read_parquet(out / "records")
    assert {"good/a.png", "good/b.jpg", "good/clip.mkv", "bad/cut.mkv"} <= set(rec.source_path)
    assert (rec[rec.source_path == "good/clip.mkv"].frame.tolist() == list(range(24)))
    assert summary["rejects"] == len(expected) and summary["rejects_by_category"]["unreadable image"] == 5


def test_records_follow_the_contract(corpus):
    _, _, _, out, _ = corpus
    rec = pd.read_parquet(out / "records")
    assert tuple(rec.columns) == RECORDS.names
    assert tuple(pd.read_parquet(out / "rejects").columns) == REJECTS.names
    still = rec[rec.source_path == "good/a.png"].iloc[0]
    assert pd.isna(still.frame) and np.isnan(still.time) and still["item"] == "good/a.png"
    assert still.identity == "folder:test" and still.affect == "joy" and still.crop_size == 256
    assert len(still.bbox) == 4 and len(still.landmarks) == 136 and len(still["transform"]) == 6
    assert still.detector == "hog" and still.face_count == 1 and still.det_score > 0
    assert (still.frame_width, still.frame_height) == (256, 256) and still.sharpness > 0
    assert str(rec.frame.dtype) == "Int64"
    clip = rec[rec.source_path == "good/clip.mkv"]
    assert clip.time.tolist() == pytest.approx([i / 30 for i in range(24)])
    assert (clip.detector == "track").sum() >= 18  # tracked, not detected from scratch each frame
    for row in rec.itertuples():
        img = cv2.imread(str(out / row.image))
        assert img is not None and img.shape == (row.crop_size, row.crop_size, 3)
        assert not row.image.startswith("/") and ".." not in row.image
    # the landmarks of a crop map into the crop through its transform (eyes level, ffhq)
    lm = np.asarray(still.landmarks).reshape(68, 2)
    m = np.asarray(still["transform"]).reshape(2, 3)
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)]) @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2 and 100 < eyes[0, 1] < 135


def test_studio_clips_takes_and_sequences(tmp_path):
    aff = ("joy", "anger")
    roots = [write_studio_tree(tmp_path / layout, identities=1, affects=aff, seconds=0.5, fps=30, size=256,
                               layout=layout) for layout in ("clips", "takes", "sequences")]
    sources = resolve_sources([str(r) for r in roots], "studio", log=lambda _: None)
    out = tmp_path / "out"
    summary = ingest(sources, out, IngestOptions(sizes=(128, 256)), workers=1, progress=False,
                     log=lambda _: None)
    rec = pd.read_parquet(out / "records")
    assert summary["rejects"] == 0 and set(rec.crop_size) == {128, 256}
    big = rec[rec.crop_size == 256]
    assert len(big) == 3 * 2 * 15 and set(big.affect) == set(aff)
    take = big[big.source_root == str(roots[1])]
    for affect, k in zip(aff, range(2)):  # each segment's frames lie inside [start, end) of its sheet row
        seg = take[take.affect == affect]
        assert seg.frame.tolist() == list(range(15 * k, 15 * k + 15))
        assert ((seg.time >= 0.5 * k - 1e-9) & (seg.time < 0.5 * (k + 1))).all()
        assert seg["item"].nunique() == 1 and "@" in seg["item"].iloc[0]
    seq = big[big.source_root == str(roots[2])]
    assert seq.source_path.str.endswith(".png").all() and seq["item"].nunique() == 2
    assert (big.detector == "track").mean() > 0.6
    # several sizes come from one alignment
    pair = rec[(rec["item"] == seq["item"].iloc[0]) & (rec.frame == 3)].set_index("crop_size")
    t128, t256 = (np.asarray(pair.loc[s, "transform"]).reshape(2, 3) for s in (128, 256))
    assert np.allclose(t128[:, :2], t256[:, :2] / 2)


def test_cropping_tracked_frames_in_batches_changes_nothing(tmp_path, monkeypatch):
    """The worker tracks a run of frames before cropping them (fexdata.ingest.worker.emit_batch): batches
    of 1 (crop each frame as it is tracked) and of 4 (batches end inside and at the end of each item)
    give the same records, in the same order, and the same crops."""
    from fexdata.ingest import worker

    roots = [write_studio_tree(tmp_path / layout, identities=1, affects=("joy",), seconds=0.5, fps=30, size=256,
                               layout=layout) for layout in ("clips", "sequences")]
    sources = resolve_sources([str(r) for r in roots], "studio", log=lambda _: None)
    runs = {}
    for frames in (1, 4):
        monkeypatch.setattr(worker, "EMIT_BATCH_FRAMES", frames)
        out = tmp_path / f"out{frames}"
        ingest(sources, out, IngestOptions(), workers=1, progress=False, log=lambda _: None)
        runs[frames] = (pd.read_parquet(out / "records"), crop_pixels(out))
    (rec1, px1), (rec4, px4) = runs[1], runs[4]
    assert len(rec1) == 2 * 15
    pd.testing.assert_frame_equal(rec1, rec4)
    assert px1 == px4


def test_resume_skips_done_work_and_redoes_changed_inputs(tmp_path):
    root = tmp_path / "data"
    from fexdata.sample import sample_face
    for ident in ("a", "b"):
        for affect in ("joy", "sadness"):
            write_png(root / ident / affect / "0.png", sample_face(0 if ident == "a" else 1, affect, 200))
    out = tmp_path / "out"
    sources = resolve_sources([str(root)], "folder", log=lambda _: None)

    def run(**kw):
        return ingest(sources, out, IngestOptions(still_chunk=2), workers=1, progress=False, log=lambda _: None, **kw)
    s1 = run()
    rec1 = pd.read_parquet(out / "records").sort_values("image").reset_index(drop=True)
    assert s1["run"]["units_processed"] == 2 and len(rec1) == 4
    s2 = run()
    assert s2["run"]["units_processed"] == 0 and s2["run"]["units_resumed"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(out / "records").sort_values("image").reset_index(drop=True), rec1)
    # replace one input: only its unit runs again, and nothing is duplicated
    write_png(root / "b" / "joy" / "0.png", sample_face(2, "joy", 200))
    s3 = run()
    assert s3["run"]["units_processed"] == 1
    rec3 = pd.read_parquet(out / "records")
    assert len(rec3) == 4 and rec3.image.is_unique
    assert len(list((out / "records").glob("part-*.parquet"))) == 2
    # other options would mix two ingests in one folder: refused unless --overwrite
    with pytest.raises(IngestError, match="different options sizes"):
        ingest(sources, out, IngestOptions(sizes=(512,)), workers=1, progress=False, log=lambda _: None)
    s4 = ingest(sources, out, IngestOptions(sizes=(128,)), workers=1, progress=False, log=lambda _: None,
                overwrite=True)
    assert s4["crops_by_size"] == {128: 4}
    assert not (out / "crops" / "256").exists()
    meta = json.loads((out / "ingest.json").read_text())
    assert meta["status"] == "finished" and meta["options"]["sizes"] == [128]


def test_layout_rejects_and_duplicates_across_sources(tmp_path):
    from fexdata.sample import sample_face
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        write_png(root / "kim" / "joy" / "0.png", sample_face(0, "joy", 200))
    write_png(a / "kim" / "smirk" / "0.png", sample_face(0, "joy", 200))  # an affect nobody knows
    sources = resolve_sources([str(a), str(b)], "folder", log=lambda _: None)
    out = tmp_path / "out"
    summary = ingest(sources, out, IngestOptions(), workers=1, progress=False, log=lambda _: None)
    rej = pd.read_parquet(out / "rejects")
    assert summary["records"] == 1
    assert set(rej.category) == {"layout", "duplicate item"} and len(rej) == 2
    assert "smirk" in rej[rej.category == "layout"].reason.iloc[0] + rej[rej.category == "layout"].source_path.iloc[0]
    assert rej[rej.category == "duplicate item"].source_root.iloc[0] == str(b)
    again = ingest(sources, out, IngestOptions(), workers=1, progress=False, log=lambda _: None)
    assert len(pd.read_parquet(out / "rejects")) == 2 and again["run"]["units_processed"] == 0


def test_datasets_of_face_crops_fall_back_to_the_whole_image(tmp_path):
    """FERG's cartoon faces defeat dlib; the dataset ships crops, so `auto` takes the whole image,
    while the same picture in a generic folder is rejected with a hint."""
    from _ingest_fixtures import no_face_image

    ferg = tmp_path / "FERG_DB_256" / "aia" / "aia_joy"
    write_png(ferg / "aia_joy_1.png", no_face_image(256))
    src = [Source(tmp_path.resolve(), str(tmp_path), "ferg")]
    ingest(src, tmp_path / "out", IngestOptions(), workers=1, progress=False, log=lambda _: None)
    records = pd.read_parquet(tmp_path / "out" / "records")
    assert list(records["detector"]) == ["frame"] and list(records["identity"]) == ["ferg:aia"]

    folder = tmp_path / "plain"
    write_png(folder / "kim" / "joy" / "0.png", no_face_image(256))
    _run(folder, tmp_path / "out2")
    reasons = list(pd.read_parquet(tmp_path / "out2" / "rejects")["reason"])
    assert len(reasons) == 1 and "no face found" in reasons[0] and "--fallback frame" in reasons[0]


def test_a_unit_flushes_its_own_crops_not_the_whole_machine(tmp_path, monkeypatch):
    """os.sync() per unit flushed every write on the machine, other users' too (issue 19): a unit now
    fsyncs its crops and their folders, before the records part that lists them."""
    import os

    from fexdata.sample import sample_face

    for affect in ("joy", "sadness"):
        write_png(tmp_path / "data" / "kim" / affect / "0.png", sample_face(0, affect, 200))

    def no_sync():
        raise AssertionError("os.sync flushes the whole machine")

    synced = []
    real_fsync = os.fsync

    def fsync(fd):  # the real fsync, and which file it flushed
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "sync", no_sync)
    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out"
    _run(tmp_path / "data", out)
    crops = [str((out / p).resolve()) for p in pd.read_parquet(out / "records")["image"]]
    part = next(i for i, p in enumerate(synced) if "/records/.part-" in p)
    assert len(crops) == 2 and set(crops) <= set(synced[:part])
    assert {os.path.dirname(c) for c in crops} <= set(synced[:part])


def test_sequence_holes_and_odd_items_each_become_one_reject_in_order(tmp_path):
    """One unit of sequences and odd items (the worker's shared tracking loop): an unreadable or escaping
    frame is one reject and a hole that tracking restarts after; a sequence with no frames, one with no
    face in any frame and an item of an unknown kind are each one reject; rejects keep the input order."""
    from _ingest_fixtures import face_sequence, no_face_image
    from fexdata.ingest.plan import Unit
    from fexdata.ingest.sources.base import Item
    from fexdata.ingest.worker import UnitProcessor

    root = tmp_path / "data"
    names = [f"seq/{n}" for n in face_sequence(root / "seq", frames=6)]
    (root / names[2]).write_bytes(b"not a png")
    write_png(root / "blank" / "0.png", no_face_image())
    seq = Item("folder", "seq", "folder:s", "sadness", "sad", kind="sequence", fps=30,
               frames=(*names[:4], "../outside.png", *names[4:]))
    items = (seq, Item("folder", "empty", "folder:e", "joy", "joy", kind="sequence"),
             Item("folder", "blank", "folder:b", "joy", "joy", kind="sequence", frames=("blank/0.png",)),
             Item("folder", "odd", "folder:o", "joy", "joy", kind="hologram"))  # type: ignore[arg-type]
    processor = UnitProcessor(tmp_path / "out", IngestOptions())
    try:
        result = processor.run(Unit("u", Source(root.resolve(), "data", "folder"), items))
    finally:
        processor.close()
    rej = pd.read_parquet(tmp_path / "out" / "rejects")
    assert list(zip(rej.source_path, rej.category)) == [
        (names[2], "unreadable image"), ("../outside.png", "path outside dataset"), ("empty", "unreadable image"),
        ("blank", "no face"), ("odd", "unexpected error")]
    assert "no frames" in rej.reason.iloc[2] and "any of 1 frames" in rej.reason.iloc[3]
    rec = pd.read_parquet(tmp_path / "out" / "records").set_index("frame")
    assert rec.index.tolist() == [0, 1, 3, 5, 6] and rec.source_path.tolist() == [names[i] for i in (0, 1, 3, 4, 5)]
    assert rec.loc[3, "detector"] != "track" and rec.loc[5, "detector"] != "track"  # found afresh after each hole
    assert (result.records, result.frames, result.no_face_frames) == (5, 5, 1)
    assert result.rejects == {"unreadable image": 2, "path outside dataset": 1, "no face": 1, "unexpected error": 1}
