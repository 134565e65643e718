"""FExGAN's target condition tied to the data: `--ramp` fills the manifest's intensity from a frame's time,
the batches carry the target image's intensity, and A_t = one-hot(target) * that intensity."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from _train_fixtures import tiny_config, write_tiny_manifest

from cli.main import main as fex
from fexdata.dataset import FaceDataset, training_rows
from fexdata.manifest import ManifestError, read_manifest, write_manifest
from fexdata.manifest.ramp import item_start
from fexdata.sample import write_studio_tree
from fextrain.batches import train_intensities
from fextrain.models import one_hot
from fextrain.models.fexgan import FExGAN, FExGANLoss, sample_target_affects
from fextrain.train import train

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_data_law_uses_known_intensities_and_falls_back_per_row():
    idx = torch.tensor([0, 2, 1, 2])
    known = torch.tensor([0.5, float("nan"), 0.02, 1.0])
    a = sample_target_affects(idx, 3, "data", 0.25, torch.Generator().manual_seed(4), intensity=known, floor=0.1)
    scaled = sample_target_affects(idx, 3, "scaled", 0.25, torch.Generator().manual_seed(4))
    expected = one_hot(idx, 3) * torch.tensor([[0.5], [0.0], [0.1], [1.0]])  # 0.02 is raised to the floor
    assert torch.equal(a[[0, 2, 3]], expected[[0, 2, 3]])
    assert torch.equal(a[1], scaled[1])  # NaN: the sampled law, with the same draw
    # no intensities at all (an older manifest): exactly the sampled law
    assert torch.equal(sample_target_affects(idx, 3, "data", 0.25, torch.Generator().manual_seed(4)), scaled)
    with pytest.raises(ValueError, match="target_floor"):
        FExGANLoss(target_floor=1.5)


def _intensity(identity: int, affect: str, k: int) -> float:
    """Known for anger and joy (different per identity), unknown for neutral."""
    return {"anger": 0.3, "joy": 0.8}.get(affect, math.nan) + 0.05 * identity


def _conditions_seen(monkeypatch, manifest, run, **loss) -> list[tuple[torch.Tensor, ...]]:
    """(A_t, target affect, source identity, target intensity or None) of every step of a real tiny run."""
    seen = []
    step = FExGAN.train_step

    def spy(self, b, ctx):
        hook = self.generator.affect_in.register_forward_pre_hook(
            lambda module, args: seen.append((args[0].detach().clone(), b.target_affect.clone(), b.identity.clone(),
                                              None if b.target_intensity is None else b.target_intensity.clone())))
        try:
            return step(self, b, ctx)
        finally:
            hook.remove()

    monkeypatch.setattr(FExGAN, "train_step", spy)
    cfg = tiny_config(manifest, run, "fexgan", steps=3, batch=8, loss=loss)
    train(cfg, progress=False, log=lambda msg: None)
    assert len(seen) == 3
    return seen


def test_training_conditions_equal_the_target_images_intensity(monkeypatch, tmp_path):
    manifest = write_tiny_manifest(tmp_path / "m", identities=2, intensity=_intensity)
    names = read_manifest(manifest)[1]["affects"]
    fallback = []
    for a_t, target, identity, known in _conditions_seen(monkeypatch, manifest, tmp_path / "run"):
        expected = torch.tensor([_intensity(int(i), names[int(t)], 0) for i, t in zip(identity, target)],
                                dtype=torch.float32)
        assert torch.equal(known.isnan(), expected.isnan())
        assert torch.allclose(known.nan_to_num(-1), expected.nan_to_num(-1))  # the TARGET's, not the source's
        rows = ~expected.isnan()
        assert torch.allclose(a_t[rows], one_hot(target[rows], len(names)) * expected[rows, None])
        assert torch.equal(a_t[~rows].argmax(1), target[~rows])
        fallback.append(a_t[~rows].max(1).values)
    spread = torch.cat(fallback)
    assert len(spread) > 3 and spread.std() > 0.05  # neutral targets: lambda-scaled, not their (unknown) intensity


def test_the_papers_law_ignores_the_data(monkeypatch, tmp_path):
    manifest = write_tiny_manifest(tmp_path / "m", identities=2, intensity=_intensity)
    scales = torch.cat([a_t.max(1).values for a_t, *_ in
                        _conditions_seen(monkeypatch, manifest, tmp_path / "run", target_law="scaled")])
    known = {round(_intensity(i, a, 0), 4) for i in range(2) for a in ("anger", "joy")}
    assert not any(round(float(s), 4) in known for s in scales)


def test_a_manifest_without_intensity_gives_no_target_intensity(monkeypatch, tmp_path):
    manifest = write_tiny_manifest(tmp_path / "m", identities=2)
    assert all(known is None for *_, known in _conditions_seen(monkeypatch, manifest, tmp_path / "run"))


def _with_folds(manifest, folds: dict[str, int | None]) -> None:
    """Rewrite `manifest` with `fold` set per identity (None: no fold, as in a hand-merged manifest)."""
    df, meta = read_manifest(manifest)
    df["fold"] = pd.array([folds[i] for i in df["identity"]], dtype="Int32")
    write_manifest(df, manifest, affects=meta["affects"])


def test_holdout_rows_are_one_definition_and_their_intensities_follow_them(tmp_path):
    """Holding out fold 0 trains on fold 1 only: the row without a fold is in no cross-validation round.
    The dataset, `training_rows` (check_manifest's) and the intensities must all see the same rows."""
    manifest = write_tiny_manifest(tmp_path / "m", identities=3, intensity=_intensity)
    _with_folds(manifest, {"test:id0": 0, "test:id1": None, "test:id2": 1})
    df, meta = read_manifest(manifest)
    ds = FaceDataset(manifest, "all", 64, exclude_fold=0, progress=False)
    assert len(ds) == int(training_rows(df, 0).sum()) == (df["identity"] == "test:id2").sum()
    assert set(ds.frame["identity"]) == {"test:id2"}
    known = train_intensities(ds)
    expected = [_intensity(2, a, int(item[-1])) for a, item in zip(ds.frame["affect"], df["item"].iloc[ds.rows])]
    assert np.array_equal(known, np.array(expected, np.float32), equal_nan=True)
    # and without a held-out fold, the train split in file order
    train_ds = FaceDataset(manifest, "train", 64, progress=False)
    assert np.array_equal(train_intensities(train_ds), df["intensity"].to_numpy(np.float32), equal_nan=True)


def test_a_damaged_intensity_column_is_an_error_not_a_manifest_without_intensities(tmp_path):
    manifest = write_tiny_manifest(tmp_path / "m", identities=2, intensity=_intensity)
    ds = FaceDataset(manifest, "train", 64, progress=False)
    assert np.isfinite(train_intensities(ds)).any()
    # damage the intensity column's pages only (the footer, which says the column is there, is intact)
    md = pq.ParquetFile(manifest).metadata
    chunk = md.row_group(0).column(md.schema.names.index("intensity"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(manifest.read_bytes())
    data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    manifest.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="manifest.parquet") as err:
        train_intensities(ds)
    assert "build-manifest" in err.value.hint


def test_item_start_reads_a_segments_start():
    items = pd.Series(["ada/joy.mp4", "ada.mp4@0.4-0.8", "b.mov@12-14.5", "c.mp4@1e-05-2", "odd@name.png"])
    assert item_start(items).tolist() == [0.0, 0.4, 12.0, 1e-05, 0.0]


def test_ramp_fills_intensity_from_time_on_ingested_clips_and_segments(tmp_path):
    """Real ffmpeg clips through real dlib ingest: a clip's frames ramp from its start, a take's
    segments from theirs; neutral frames and --ramp off keep NaN."""
    fps, seconds = 10.0, 0.5
    clips = write_studio_tree(tmp_path / "clips", identities=1, affects=("joy", "neutral"), seconds=seconds, fps=fps)
    takes = write_studio_tree(tmp_path / "takes", identities=1, affects=("neutral", "anger"), seconds=seconds,
                              fps=fps, layout="takes")
    data = tmp_path / "data"
    for src in (clips, takes):
        res = CliRunner().invoke(fex, ["ingest", str(src), "--out", str(data / src.name), "--size", "128", "-j", "1",
                                       "-q"])
        assert res.exit_code == 0, res.output
    common = ["build-manifest", str(data / "clips"), str(data / "takes"), "--split", "none", "-q"]
    res = CliRunner().invoke(fex, [*common, "--ramp", "0.2", "--out", str(data / "ramp.parquet")])
    assert res.exit_code == 0, res.output
    df, meta = read_manifest(data / "ramp.parquet")
    assert meta["options"]["ramp"] == 0.2
    start = np.where(df["item"].str.contains("@"), seconds, 0.0)  # the take's anger segment starts at 0.5 s
    expected = np.minimum(1.0, (df["time"] - start) / 0.2)
    moving = df["affect"] != "neutral"
    assert set(df.loc[moving, "affect"]) == {"joy", "anger"} and moving.sum() >= 6
    assert np.allclose(df.loc[moving, "intensity"], expected[moving])
    assert df.loc[moving, "intensity"].min() == 0.0 and df.loc[moving, "intensity"].max() == 1.0
    assert df.loc[~moving, "intensity"].isna().all() and (~moving).sum() >= 6
    res = CliRunner().invoke(fex, [*common, "--out", str(data / "plain.parquet")])
    assert res.exit_code == 0 and read_manifest(data / "plain.parquet")[0]["intensity"].isna().all()
    res = CliRunner().invoke(fex, [*common, "--ramp", "0", "--out", str(data / "bad.parquet")])
    assert res.exit_code == 2 and "--ramp" in res.output
