"""Crash anywhere (issue 19): `fex ingest`, `fex train` and `fex edit` SIGKILLed at seeded moments of their
work, then run again (`--resume` for train), must end exactly like an uninterrupted run, with no temp file left.

Per command: one uninterrupted reference run, watched, gives the moments its outputs appeared; each case
picks one of those intervals (start-up included) and a random delay inside it, kills the command's process
group there (tests/_crash_harness.py), finishes the work and compares: ingest records, rejects and crop
pixels; the train checkpoint (weights, optimiser and random states), the exported generator, the logged
scalars and the sample grids, bit for bit; the edits' rows and pixels (photos and every video frame); the
same file names as the reference everywhere. Every case runs before the test asserts, so the outcome table
(printed, and written to crash_anywhere.json under FEX_CRASH_REPORT or pytest's temp folder) has them all.

    pytest tests/test_crash_anywhere.py -m slow -s -p no:cacheprovider     # FEX_CRASH_KILLS=3 for a quick look
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from _crash_harness import (Outcome, Watched, children_cpu, count_outputs, fex, files, is_temp, leftovers, run_watched,
                            save, table)
from _ingest_fixtures import crop_pixels

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("FEX_CRASH_KILLS", "20"))  # per command
SEED = 19  # the number; case k of a command uses random.Random(f"{command}:{SEED * 100 + k}")
TRAIN_STEPS, CKPT_EVERY, SAMPLE_EVERY = 30, 3, 10  # kills between checkpoints must replay to the same result
TIMING_KEYS = {"img_per_s", "data_frac"}  # logged scalars that measure the machine, not the training


class Results:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.references: dict[str, Watched] = {}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    everything = Results()
    yield everything
    found = everything.outcomes
    folder = Path(os.environ.get("FEX_CRASH_REPORT") or tmp_path_factory.getbasetemp())
    folder.mkdir(parents=True, exist_ok=True)
    save(found, everything.references, folder / "crash_anywhere.json")
    (folder / "crash_anywhere.txt").write_text(table(found) + "\n")
    print(f"\n{table(found)}\n(written to {folder / 'crash_anywhere.json'})")


# -- the kill, the finish and the verdict, common to the three commands --------------------------------------

def kill_moment(ref: Watched, rng: random.Random) -> tuple[int, float]:
    """(progress to wait for, delay after it): a uniformly chosen interval between two output changes of the
    reference run (the first is the start-up, the last ends at its exit), and a uniform point inside it."""
    times = [t for t, _ in ref.trace] + [ref.seconds]
    i = rng.randrange(len(ref.trace))
    return ref.trace[i][1], rng.uniform(0.0, max(times[i + 1] - times[i], 0.0))


def crash_case(command: str, k: int, ref: Watched, cmd: list[str], progress: Callable[[], int],
               finish: Callable[[], tuple[str, Watched]], compare: Callable[[], list[str]],
               temp_dirs: list[Path]) -> Outcome:
    seed = SEED * 100 + k
    target, delay = kill_moment(ref, random.Random(f"{command}:{seed}"))
    cpu = children_cpu()
    killed = run_watched(cmd, progress, target, delay)
    how, done = finish()
    differences = [] if killed.rc in (None, 0) else [f"exited {killed.rc} by itself: {killed.stderr.strip()[-300:]}"]
    if done.rc != 0:
        differences.append(f"{how} exited {done.rc}: {done.stderr.strip()[-400:]}")
    else:
        differences += [f"{how} printed a traceback"] if "Traceback" in done.stderr else []
        try:
            differences += compare()
        except Exception as exc:  # a missing or unreadable output is a finding, not a crash of the test
            differences.append(f"outputs unreadable: {type(exc).__name__}: {exc}"[:300])
    return Outcome(command, k, seed, target, round(delay, 4), round(killed.seconds, 3), killed.progress,
                   killed.rc is not None, how, not differences, differences, leftovers(*temp_dirs),
                   round(killed.seconds + done.seconds, 2), round(children_cpu() - cpu, 2))


def same_files(ref: Path, got: Path, skip: Callable[[str], bool] = lambda f: False) -> list[str]:
    """The file names of two output folders (temp files are counted as leftovers, not here)."""
    a = {f for f in files(ref) if not skip(f)}
    b = {f for f in files(got) if not skip(f) and not is_temp(f.rsplit("/", 1)[-1])}
    return [f"missing {sorted(a - b)[:5]}"] * bool(a - b) + [f"extra {sorted(b - a)[:5]}"] * bool(b - a)


def same_frame(what: str, a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    try:
        pd.testing.assert_frame_equal(a, b)
        return []
    except AssertionError as exc:
        return [f"{what}: {' '.join(str(exc).split())[:300]}"]


def same_pixels(what: str, a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    if a == b:
        return []
    differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    return [f"{what}: {len(differ)} differ {differ[:3]}, {len(a.keys() - b.keys())} missing, "
            f"{len(b.keys() - a.keys())} extra"]


def report(command: str, found: list[Outcome]) -> None:
    print(f"\n{table(found)}")
    failed = [o for o in found if not o.passed]
    assert not failed, f"{len(failed)} of {len(found)} killed {command} runs did not end like the uninterrupted " \
                       f"run:\n{table(failed)}"


def finish_once(cmd: list[str], progress: Callable[[], int], how: str) -> Callable[[], tuple[str, Watched]]:
    return lambda: (how, run_watched(cmd, progress))


# -- fex ingest -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ingest_inputs(tmp_path_factory) -> list[Path]:
    from fexdata.sample import write_image_tree, write_studio_tree

    root = tmp_path_factory.mktemp("crash-ingest-in")
    studio = write_studio_tree(root / "studio", identities=2, affects=("joy", "anger"), seconds=0.3, fps=30,
                               size=256)
    (studio / "ada" / "fear.mp4").write_bytes(b"")  # one reject, so rejects are compared too
    stills = write_image_tree(root / "stills", identities=1, affects=("joy", "sadness", "surprise"), per_affect=2)
    return [studio, stills]


def ingest_outputs(out: Path) -> dict:
    records = pd.read_parquet(out / "records").sort_values("image").reset_index(drop=True)
    rejects = pd.read_parquet(out / "rejects").sort_values("source_path").reset_index(drop=True)
    status = json.loads((out / "ingest.json").read_text())
    status["summary"].pop("run", None)  # this run's own counts and timings
    return {"records": records, "rejects": rejects, "crops": crop_pixels(out), "status": status}


def compare_ingest(ref_out: Path, ref: dict, out: Path) -> list[str]:
    got = ingest_outputs(out)
    return (same_frame("records", ref["records"], got["records"])
            + same_frame("rejects", ref["rejects"], got["rejects"])
            + same_pixels("crops", ref["crops"], got["crops"]) + same_files(ref_out, out)
            + (["ingest.json differs"] if got["status"] != ref["status"] else []))


def test_ingest_killed_anywhere_then_rerun_equals_an_uninterrupted_run(ingest_inputs, results, tmp_path):
    def cmd(out: Path, workers: int) -> list[str]:
        return fex("ingest", *ingest_inputs, "--out", out, "--size", "128", "-j", workers, "-q")

    ref_out = tmp_path / "reference"
    ref = run_watched(cmd(ref_out, 1), lambda: count_outputs(ref_out))
    assert ref.rc == 0, ref.stderr
    results.references["ingest"] = ref
    expected = ingest_outputs(ref_out)
    assert len(expected["records"]) == 42 and len(expected["rejects"]) == 1
    found = []
    for k in range(KILLS):
        out = tmp_path / f"case{k}"
        c = cmd(out, 1 + k % 2)  # every other case on two worker processes (the pool and its fork server)
        progress = lambda: count_outputs(out)  # noqa: E731
        found.append(crash_case("ingest", k, ref, c, progress, finish_once(c, progress, f"rerun -j{1 + k % 2}"),
                                lambda: compare_ingest(ref_out, expected, out), [out]))
        if found[-1].passed:
            shutil.rmtree(out)
    results.outcomes.extend(found)
    report("ingest", found)


# -- fex train --resume ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_manifest(tmp_path_factory) -> Path:
    from _train_fixtures import write_tiny_manifest

    return write_tiny_manifest(tmp_path_factory.mktemp("crash-train-in"))


def train_cmd(manifest: Path, run: Path, *extra: str) -> list[str]:
    from _train_fixtures import TINY_ARCH

    return fex("train", "--manifest", manifest, "--out", run, "--size", "64", "--steps", TRAIN_STEPS, "--batch", "4",
               "--device", "cpu", "--amp", "off", "--log-every", "1", "--ckpt-every", CKPT_EVERY,
               "--sample-every", SAMPLE_EVERY, "--no-progress", "--threads", "1",
               f"--set=cache_dir={run.parent / (run.name + '-cache')}", "--set=num_samples=2",
               *[f"--set=arch.{k}={json.dumps(v)}" for k, v in TINY_ARCH.items()], *extra)


def train_progress(run: Path) -> Callable[[], int]:
    """Files made in the run and its cache, plus the steps logged so far."""
    metrics, cache = run / "metrics.jsonl", run.parent / (run.name + "-cache")

    def progress() -> int:
        try:
            lines = metrics.read_bytes().count(b"\n")
        except FileNotFoundError:
            lines = 0
        return count_outputs(run) + count_outputs(cache) + lines
    return progress


def _tensors_equal(a, b, path: str) -> list[str]:
    """Differences between two nested checkpoint values (dicts, lists, tensors, numbers), bit for bit."""
    import torch

    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(map(str, a.keys() ^ b.keys()))[:4]}"]
        return [d for key in a for d in _tensors_equal(a[key], b[key], f"{path}.{key}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _tensors_equal(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{path}: {tuple(a.shape)} {a.dtype} != {tuple(b.shape)} {b.dtype}"]
        if torch.equal(a, b):
            return []
        diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else "-"
        return [f"{path}: max |diff| {diff}"]
    return [] if a == b else [f"{path}: {str(a)[:60]} != {str(b)[:60]}"]


def train_outputs(run: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    from fextrain.checkpoint import CHECKPOINT

    state = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=True)
    meta = json.loads((run / "generator.json").read_text())
    for config in (state["config"], meta["config"]):
        config.pop("out"), config.pop("cache_dir")  # the case's own folders
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    samples = {p.name: cv2_pixels(p) for p in sorted((run / "samples").glob("*.png"))}
    return {"checkpoint": state, "generator": load_file(str(run / "generator.safetensors")), "meta": meta,
            "metrics": [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows], "samples": samples}


def cv2_pixels(path: Path) -> bytes:
    from fexdata.images import read_rgb

    image = read_rgb(path)
    return repr(image.shape).encode() + image.tobytes()


def compare_train(ref_run: Path, ref: dict, run: Path) -> list[str]:
    got = train_outputs(run)
    steps = [r["step"] for r in got["metrics"]]
    out = [] if steps == list(range(1, TRAIN_STEPS + 1)) else [f"metrics.jsonl steps {steps}"]
    out += _tensors_equal(ref["checkpoint"], got["checkpoint"], "last.pt")[:5]
    out += _tensors_equal(ref["generator"], got["generator"], "generator.safetensors")[:3]
    out += _tensors_equal(ref["meta"], got["meta"], "generator.json")[:3]
    if not out and got["metrics"] != ref["metrics"]:
        out.append("metrics.jsonl scalars differ")
    out += same_pixels("samples", ref["samples"], got["samples"])
    return out + same_files(ref_run, run, skip=lambda f: f.startswith("tb/"))  # event files are named by time


def test_train_killed_anywhere_then_resumed_equals_an_uninterrupted_run(train_manifest, results, tmp_path):
    ref_run = tmp_path / "reference"
    ref = run_watched(train_cmd(train_manifest, ref_run), train_progress(ref_run))
    assert ref.rc == 0, ref.stderr
    results.references["train"] = ref
    expected = train_outputs(ref_run)
    assert expected["checkpoint"]["step"] == TRAIN_STEPS
    found = []
    for k in range(KILLS):
        run = tmp_path / f"case{k}"
        progress = train_progress(run)

        def finish() -> tuple[str, Watched]:
            done = run_watched(train_cmd(train_manifest, run, "--resume"), progress)
            if done.rc == 2 and "no checkpoint" in done.stderr:  # killed before the first: start it again, as told
                again = run_watched(train_cmd(train_manifest, run), progress)
                again.seconds += done.seconds
                return "--resume refused; rerun", again
            return "--resume", done

        found.append(crash_case("train", k, ref, train_cmd(train_manifest, run), progress, finish,
                                lambda: compare_train(ref_run, expected, run), [run, run.parent / f"{run.name}-cache"]))
        if found[-1].passed:
            shutil.rmtree(run)
            shutil.rmtree(run.parent / f"{run.name}-cache", ignore_errors=True)
    results.outcomes.extend(found)
    report("train", found)


# -- fex edit ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def edit_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny trained run, a folder with a photo and a short clip with audio). StarGAN, whose generator takes
    the target as input channels: a few steps already give each target its own pixels (a 4-step FExGAN gives
    joy and anger identical outputs, so a mix-up of targets would go unseen)."""
    import torch

    from _edit_fixtures import build_run, canvas_photo, clip_with_audio
    from fexdata.images import write_png

    root = tmp_path_factory.mktemp("crash-edit-in")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = build_run(root, model="stargan")
    finally:
        torch.set_num_threads(threads)
    write_png(root / "in" / "photo.png", canvas_photo())
    clip_with_audio(root / "in" / "clip.mp4", frames=12, fps=12.0)
    return run, root / "in"


def edit_outputs(out: Path) -> dict:
    from fexdata.ingest.video import iter_frames

    rows = pd.read_parquet(out / "edits.parquet")
    rows = rows.sort_values(["input", "target", "frame", "face"]).reset_index(drop=True)
    pixels = {}
    for rel in files(out):
        if rel.endswith(".png") and not is_temp(rel.rsplit("/", 1)[-1]):
            pixels[rel] = cv2_pixels(out / rel)
        elif rel.endswith(".mp4") and not is_temp(rel.rsplit("/", 1)[-1]):
            frames = [f.image for f in iter_frames(out / rel)]
            pixels[rel] = repr(np.shape(frames)).encode() + b"".join(f.tobytes() for f in frames)
    status = json.loads((out / "edit.json").read_text())
    return {"rows": rows, "pixels": pixels, "status": status["status"], "rows_n": status["summary"]["rows"]}


def compare_edit(ref_out: Path, ref: dict, out: Path) -> list[str]:
    got = edit_outputs(out)
    return (same_frame("edits.parquet", ref["rows"], got["rows"]) + same_pixels("outputs", ref["pixels"], got["pixels"])
            + same_files(ref_out, out)
            + ([f"edit.json: {got['status']}, {got['rows_n']} rows"] if (got["status"], got["rows_n"])
               != (ref["status"], ref["rows_n"]) else []))


def test_edit_killed_anywhere_then_rerun_equals_an_uninterrupted_run(edit_inputs, results, tmp_path):
    run, inputs = edit_inputs

    def cmd(out: Path) -> list[str]:
        return fex("edit", run, inputs, "--to", "joy,anger", "--out", out, "--quiet", "--threads", "1")

    ref_out = tmp_path / "reference"
    ref = run_watched(cmd(ref_out), lambda: count_outputs(ref_out))
    assert ref.rc == 0, ref.stderr
    results.references["edit"] = ref
    expected = edit_outputs(ref_out)
    assert len(expected["pixels"]) == 6 and expected["rows_n"] == 26  # 2 photos + grid, 2 videos + grid
    found = []
    for k in range(KILLS):
        out = tmp_path / f"case{k}"
        progress = lambda: count_outputs(out)  # noqa: E731
        found.append(crash_case("edit", k, ref, cmd(out), progress, finish_once(cmd(out), progress, "rerun"),
                                lambda: compare_edit(ref_out, expected, out), [out]))
        if found[-1].passed:
            shutil.rmtree(out)
    results.outcomes.extend(found)
    report("edit", found)
