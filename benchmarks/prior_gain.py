"""Choose warp-refine's prior gain on held-out train people, then measure it on unseen ones (issue 23).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prior_gain.py [--cache ~/.cache/fex/real-faces]
        [--gains 0.75,1,1.25,1.5,1.75,2] [--out out/bench-prior-gain] [--sources 100]

The expression prior (`fextrain.expression_prior`, warp-refine `arch.prior`) is the train people's mean change per
affect pair. `arch.prior_gain` scales it ("1.25*joy" for every target). Stronger edits read better to the judges
and come further from the people's real faces at some point (benchmarks/REAL_FACES.md), so the gain is a setting
to choose on data the final measurement never sees:

1. **Validation people**: benchmarks/real_faces.py's identity manifest with its train people only; a seeded
   quarter of each source dataset's train people become this manifest's test split. The real test people are not
   read.
2. For each gain, a 0-step warp-refine run (`--steps 0 --set arch.prior=true --set arch.residual=false`: the prior
   fitted on the other three quarters, nothing learnt) evaluated on the validation people with `fex eval`'s
   sections (benchmarks/edit_quality.py's headline columns).
3. **The rule**: the strongest gain whose paired truth on the validation people is above zero at the lower end of
   its 95% interval, i.e. the strongest edits still measurably nearer those people's own faces at the target than
   the source is (none: the gain of the highest paired truth). The highest paired truth alone, the rule first
   written here, favours weak edits by construction: when a person's own change is uncertain, a shrunken one
   scores nearer on average (it was replaced after gain 0.75 alone had been measured; benchmarks/REAL_FACES.md).
4. Gain 1 and the chosen gain on the unseen people of the identity manifest (the prior fitted on every train
   person).

Each (manifest, gain) keeps its metrics.json, so a rerun resumes. Results: OUT/results.json and a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edit_quality import COLUMNS, SECTIONS, headline  # noqa: E402  (benchmarks/edit_quality.py)
from fexdata.manifest.io import read_manifest, write_manifest  # noqa: E402
from fextrain.config import from_dict  # noqa: E402
from fextrain.evaluate import evaluate_run  # noqa: E402
from fextrain.train import train  # noqa: E402

HELD_OUT = 0.25  # share of each source dataset's train people held out as validation people
PRIOR_ALONE = {"prior": True, "residual": False}


def validation_manifest(identity_manifest: Path, seed: int = 0) -> Path:
    """The identity manifest's train rows, a seeded HELD_OUT of each source's people as the test split, written
    beside it (image paths stay relative to the same folder)."""
    out = identity_manifest.with_name("manifest-validation.parquet")
    if out.is_file():
        return out
    df, meta = read_manifest(identity_manifest)
    train_rows = df[df["split"] == "train"].copy()
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for _, rows in train_rows.groupby("source", sort=True):
        people = np.sort(rows["identity"].unique())
        held += rng.choice(people, size=max(1, round(HELD_OUT * len(people))), replace=False).tolist()
    train_rows["split"] = np.where(train_rows["identity"].isin(held), "test", "train")
    extra = {k: v for k, v in meta.items() if k not in ("schema_version", "affects", "identities")}
    extra["validation"] = {"from": identity_manifest.name, "held_out": HELD_OUT, "seed": seed,
                           "people": sorted(held)}
    write_manifest(train_rows.reset_index(drop=True), out, affects=meta["affects"], meta=extra)
    return out


def measure(manifest: Path, gain: float, out: Path, sources: int) -> dict:
    """Headline of the prior alone at `gain` on `manifest`'s test people (reuses a finished evaluation)."""
    run, evaluation = out / "run", out / "eval"
    if (evaluation / "metrics.json").is_file():
        return _row(json.loads((evaluation / "metrics.json").read_text()))
    shutil.rmtree(out, ignore_errors=True)
    cfg = from_dict({"model": "warp-refine", "preset": "cpu-64", "manifest": str(manifest), "out": str(run),
                     "steps": 0, "device": "cpu", "amp": "off", "sample_every": 0,
                     "arch": {**PRIOR_ALONE, "prior_gain": gain}})
    train(cfg, progress=False, log=lambda msg: None)
    judge = out.parent / f"judge-{manifest.stem}"  # one judge per manifest, shared by its gains
    if judge.is_dir():
        shutil.copytree(judge, evaluation / "judge")
    started = time.perf_counter()
    result = evaluate_run(run, manifest, evaluation, sections=SECTIONS, device="cpu", max_sources=sources,
                          progress=False)
    if not judge.is_dir():
        shutil.copytree(evaluation / "judge", judge)
    print(f"   {manifest.stem}, gain {gain}: evaluated in {time.perf_counter() - started:.0f} s", flush=True)
    return _row(result.metrics)


def _row(metrics: dict) -> dict:
    """The headline's columns and the lower end of paired truth's 95% interval."""
    interval = metrics.get("paired_truth", {}).get("interval_95") or [None, None]
    return {**headline(metrics), "paired_truth_low": interval[0]}


def choose(rows: list[tuple[str, float, dict]]) -> float:
    """The rule (module docstring): the largest gain whose paired truth's interval is above 0, else the best."""
    nearer = [g for _, g, h in rows if h["paired_truth_low"] is not None and h["paired_truth_low"] > 0]
    return max(nearer) if nearer else max(rows, key=lambda r: r[2]["paired_truth"])[1]


def table(rows: list[tuple[str, float, dict]]) -> str:
    columns = [*COLUMNS[:4], "paired_truth_low", *COLUMNS[4:8]]
    cells = ["| people | gain | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for people, gain, h in rows:
        values = [("–" if h[c] is None else f"{h[c]:.3f}") for c in columns]
        cells.append(f"| {people} | {gain:g} | " + " | ".join(values) + " |")
    return "\n".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/fex/real-faces",
                    help="benchmarks/real_faces.py's cache (its manifest-identity.parquet)")
    ap.add_argument("--gains", default="0.75,1,1.25,1.5,1.75,2")
    ap.add_argument("--out", type=Path, default=Path("out/bench-prior-gain"))
    ap.add_argument("--sources", type=int, default=100, help="test faces edited into every affect")
    args = ap.parse_args()
    identity = args.cache / "manifest-identity.parquet"
    if not identity.is_file():
        raise SystemExit(f"error: no {identity}\nhint: build it with benchmarks/real_faces.py (REAL_FACES.md)")
    gains = [float(g) for g in args.gains.split(",")]
    validation = validation_manifest(identity)
    rows = [("validation", g, measure(validation, g, args.out / f"validation-{g:g}", args.sources)) for g in gains]
    chosen = choose(rows)
    print(f"chosen on the validation people: gain {chosen:g}", flush=True)
    for g in sorted({1.0, chosen}):
        rows.append(("unseen", g, measure(identity, g, args.out / f"unseen-{g:g}", args.sources)))
    (args.out / "results.json").write_text(json.dumps(
        {"chosen": chosen, "rule": "the largest gain whose validation paired truth is above 0 at its 95% low end",
         "rows": [{"people": p, "gain": g, **h} for p, g, h in rows]}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
