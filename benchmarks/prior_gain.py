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
2. For each gain, a warp-refine run of its `prior-only` preset (0 steps: the prior fitted on the other three
   quarters, nothing learnt) evaluated on the validation people as benchmarks/edit_quality.py does (its `measure`:
   `fex eval`'s sections, one judge per manifest).
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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import edit_quality  # noqa: E402  (benchmarks/edit_quality.py)
from fexdata.manifest.io import read_manifest, write_manifest  # noqa: E402
from real_faces import DEFAULT_CACHE  # noqa: E402

HELD_OUT = 0.25  # share of each source dataset's train people held out as validation people


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


def measure(manifest: Path, gain: float, out: Path, args: argparse.Namespace) -> dict:
    """The prior alone at `gain` on `manifest`'s test people: edit_quality's headline columns and the low end of
    paired truth's 95% interval (a finished evaluation is reused)."""
    edit_quality.measure("warp-refine", 0, manifest, out, out.parent / f"judge-{manifest.stem}", args,
                         {"arch": {"prior_gain": gain}})
    return _row(json.loads((out / "eval" / "metrics.json").read_text()))


def _row(metrics: dict) -> dict:
    """The headline's columns and the lower end of paired truth's 95% interval."""
    interval = metrics.get("paired_truth", {}).get("interval_95") or [None, None]
    return {**edit_quality.headline(metrics), "paired_truth_low": interval[0]}


def choose(rows: list[tuple[str, float, dict]]) -> float:
    """The rule (module docstring): the largest gain whose paired truth's interval is above 0, else the best."""
    nearer = [g for _, g, h in rows if h["paired_truth_low"] is not None and h["paired_truth_low"] > 0]
    return max(nearer) if nearer else max(rows, key=lambda r: r[2]["paired_truth"])[1]


def table(rows: list[tuple[str, float, dict]]) -> str:
    columns = [*edit_quality.COLUMNS[:4], "paired_truth_low", *edit_quality.COLUMNS[4:8]]
    cells = ["| people | gain | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for people, gain, h in rows:
        values = [("–" if h[c] is None else f"{h[c]:.3f}") for c in columns]
        cells.append(f"| {people} | {gain:g} | " + " | ".join(values) + " |")
    return "\n".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="benchmarks/real_faces.py's cache (its manifest-identity.parquet)")
    ap.add_argument("--gains", default="0.75,1,1.25,1.5,1.75,2")
    ap.add_argument("--out", type=Path, default=Path("out/bench-prior-gain"))
    ap.add_argument("--sources", type=int, default=100, help="test faces edited into every affect")
    args = ap.parse_args()
    # edit_quality.measure's settings: the preset whole, its judge defaults (`fex eval`'s)
    args.preset, args.judge_epochs, args.judge_min_steps = "prior-only", 15, 300
    identity = args.cache / "manifest-identity.parquet"
    if not identity.is_file():
        raise SystemExit(f"error: no {identity}\nhint: build it with benchmarks/real_faces.py (REAL_FACES.md)")
    gains = [float(g) for g in args.gains.split(",")]
    validation = validation_manifest(identity)
    rows = [("validation", g, measure(validation, g, args.out / f"validation-{g:g}", args)) for g in gains]
    chosen = choose(rows)
    print(f"chosen on the validation people: gain {chosen:g}", flush=True)
    for g in sorted({1.0, chosen}):
        rows.append(("unseen", g, measure(identity, g, args.out / f"unseen-{g:g}", args)))
    (args.out / "results.json").write_text(json.dumps(
        {"chosen": chosen, "rule": "the largest gain whose validation paired truth is above 0 at its 95% low end",
         "rows": [{"people": p, "gain": g, **h} for p, g, h in rows]}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
