"""`build_manifest`: ingest outputs -> one filtered, balanced, split, checked manifest file.

Order: read and merge records -> choose the crop size -> intensity from --ramp -> filters (counted)
-> missing files -> balance cap -> split (+ guard) -> folds -> weights -> indices, crop-space landmarks
-> checks -> atomic write. Any error raises ManifestError before anything is written, so a failed
build never leaves a partial manifest (and never replaces a good one).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fexdata import __version__
from fexdata.affects import KNOWN_AFFECTS
from fexdata.errors import FexError, ManifestError
from fexdata.ingest import outdir
from fexdata.ingest import records as R
from fexdata.ingest.recipe import ingest_recipe, merge_recipes
from fexdata.manifest.balance import BALANCE_MODES, balance_weights, cap_cells, cell_table
from fexdata.manifest.checks import CheckResult, check_manifest, codes
from fexdata.manifest.filters import FilterOptions, Gap, apply_filters, parse_gap
from fexdata.manifest.io import Records, manifest_image_prefix, read_records, write_manifest
from fexdata.manifest.ramp import ramp_intensity
from fexdata.padding import format_pad_summary, pad_summary
from fexdata.manifest.splits import (SPLIT_MODES, assign_folds, parse_fractions, split_by_frame,
                                     split_by_identity)
from fexdata.paths import existing_files, unsafe_paths

R_DUPLICATE = "duplicate record of the same crop"
R_MISSING = "crop file missing (--drop-missing)"
R_CAP = "over the cell cap (--balance cap)"
R_GUARD = "inside a split guard gap (--guard)"
ROW_ORDER = ["image"]  # unique per crop, so the file's row order depends on content only


@dataclass
class BuildReport:
    out: Path
    rows_in: int
    rows_out: int
    crop_size: int
    affects: tuple[str, ...]
    dropped: dict[str, int]
    other_sizes: int
    table_before: pd.DataFrame
    table_after: pd.DataFrame
    cap: int | None
    checks: CheckResult
    options: BuildOptions
    padding: dict[str, dict[str, float | int]] = field(default_factory=dict)  # per source, manifest rows
    ramped: int = 0  # video frames whose intensity --ramp filled (before filtering)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "rows_in": self.rows_in, "rows_out": self.rows_out,
                "crop_size": self.crop_size, "affects": list(self.affects), "dropped": self.dropped,
                "other_crop_sizes": self.other_sizes, "cap": self.cap, "options": self.options.asdict(),
                "warnings": self.warnings, "seconds": round(self.seconds, 3),
                "table_before": _table_dict(self.table_before), "checks": self.checks.to_dict(),
                "padding": self.padding, "ramped": self.ramped}

    def to_text(self) -> str:
        lines = [f"manifest {self.out}: {self.rows_out} rows of {self.rows_in} records "
                 f"({self.crop_size}px crops, {len(self.affects)} affects) in {self.seconds:.1f}s"]
        if self.other_sizes:
            lines.append(f"  {self.other_sizes} records of other crop sizes not used")
        if self.options.ramp:
            lines.append(f"  intensity from --ramp {self.options.ramp:g}s for {self.ramped} video frames")
        lines.append("dropped:")
        lines += [f"  {n:>9}  {reason}" for reason, n in self.dropped.items()]
        balance = self.options.balance
        title = f"identity x affect before balancing (--balance {balance}" + (
            f", cap {self.cap})" if self.cap else ")")
        lines += [title, _indent(self.table_before.to_string()), "identity x affect in the manifest",
                  _indent(self.table_after.to_string()), "split x affect", _indent(self.checks.split_affect.to_string())]
        if self.padding:
            lines += ["padded share of the crops in the manifest, per source", *format_pad_summary(self.padding)]
        if self.checks.fold_sizes:
            lines.append("folds: " + ", ".join(f"{k}: {v}" for k, v in self.checks.fold_sizes.items()))
        lines += [f"warning: {w}" for w in self.warnings + self.checks.warnings]
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _table_dict(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {str(i): {str(k): int(v) for k, v in row.items()} for i, row in table.iterrows()}


def _merge(ingest_dirs: list[Path], manifest_dir: Path) -> Records:
    resolved = [d.resolve() for d in ingest_dirs]
    dupes = sorted({str(d) for d in resolved if resolved.count(d) > 1})
    if dupes:
        raise ManifestError(f"ingest folder given more than once: {', '.join(dupes)}", hint="name each folder once")
    frames, arrays = [], {}
    offset = 0
    for d in ingest_dirs:
        prefix = manifest_image_prefix(d, manifest_dir)
        rec = read_records(d)
        df = rec.frame
        bad = unsafe_paths(df["image"])
        if bad.any():
            raise ManifestError(f"{d}: {int(bad.sum())} record image paths leave the ingest folder "
                                f"(e.g. {df.loc[bad, 'image'].iloc[0]!r})", hint="re-run `fex ingest`")
        if prefix:
            df["image"] = prefix + "/" + df["image"]
        df["ingest"] = prefix or "."
        df["_row"] += offset
        offset += len(df)
        frames.append(df)
        for k, v in rec.arrays.items():
            arrays.setdefault(k, []).append(v)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return Records(frame, {k: np.concatenate(v) if len(v) > 1 else v[0] for k, v in arrays.items()})


def _unfinished(ingest_dirs: list[Path], partial: bool) -> list[str]:
    """Refuse ingest folders whose `fex ingest` is running, was stopped or left shards undone (a manifest of
    them would silently miss their other units); with `partial`, the same sentences come back as warnings."""
    found = [f"{d}: {why}" for d in ingest_dirs if (why := outdir.unfinished(d))]
    if found and not partial:
        raise ManifestError("unfinished ingest: " + "; ".join(found),
                            hint="re-run the same `fex ingest` command (every shard of it) to finish, or pass "
                                 "--partial to build from the records there now")
    return [f"{w}: built from the records there now (--partial)" for w in found]


def _no_records(ingest_dirs: list[Path]) -> ManifestError:
    """Every ingest folder is empty: say what their inputs became instead."""
    said = []
    for d in ingest_dirs:
        text = "no records"
        if (d / outdir.INGEST_JSON).is_file():  # rejects fex ingest wrote: summarised by category
            try:
                rejects = R.reject_summary(d / R.REJECTS_DIR)
            except FexError:
                rejects = None  # the build fails anyway; a damaged rejects part is ingest's to report
            if rejects and rejects["rejects"]:
                text += f", {rejects['rejects']} inputs rejected (" + ", ".join(
                    f"{n} {cat}, e.g. {rejects['reject_examples'][cat][0]}"
                    for cat, n in rejects["rejects_by_category"].items()) + ")"
        said.append(f"{d}: {text}")
    return ManifestError("the ingest output holds no face crops: " + "; ".join(said),
                         hint="see why in pandas.read_parquet('OUT/rejects'), then re-run `fex ingest` on other "
                              "inputs or with other options (e.g. --fallback frame for datasets of face crops)")


def _choose_size(df: pd.DataFrame, size: int | None) -> int:
    sizes = sorted(int(s) for s in df["crop_size"].dropna().unique())
    if size is None:
        if len(sizes) != 1:
            raise ManifestError(f"the records hold crops of several sizes ({', '.join(map(str, sizes))})",
                                hint="choose one with --size")
        return sizes[0]
    if size not in sizes:
        raise ManifestError(f"no records of crop size {size}; the records hold {', '.join(map(str, sizes))}",
                            hint=f"pass one of those to --size or re-run `fex ingest --size {size}`")
    return size


def _crop_landmarks(landmarks: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Frame-pixel landmarks mapped through each row's 2x3 frame->crop affine."""
    x, y = landmarks[:, 0::2], landmarks[:, 1::2]
    a = [transform[:, k:k + 1] for k in range(6)]
    out = np.empty(landmarks.shape, np.float32)
    out[:, 0::2] = a[0] * x + a[1] * y + a[2]
    out[:, 1::2] = a[3] * x + a[4] * y + a[5]
    return out


@dataclass(frozen=True, kw_only=True)
class BuildOptions(FilterOptions):
    """Every choice of a manifest build, checked and resolved on construction (ManifestError on a bad one).

    Fields hold what the build uses: `affects` the canonical tuple, `fractions` three numbers, `min_gap` and
    `guard` a Gap or None (`guard` only under --split frame). `asdict()` is what the manifest records.
    `dataclasses.replace` keeps the resolved defaults: for another split, build a new BuildOptions.
    """
    size: int | None = None
    balance: str = "weight"
    cap: int | None = None
    split: str = "identity"
    fractions: tuple[float, ...] | str | None = None
    blocks: int = 10
    guard: Gap | str | float | None = "0.5s"
    folds: int = 0
    seed: int = 0
    drop_missing: bool = False
    ramp: float | None = None
    partial: bool = False
    check_files: bool = True  # off: crop files are not looked for (benchmarks time the build alone)

    def __post_init__(self) -> None:
        if self.balance not in BALANCE_MODES:
            raise ManifestError(f"--balance {self.balance!r} is not a balance mode",
                                hint=f"use one of {', '.join(BALANCE_MODES)}")
        if self.split not in SPLIT_MODES:
            raise ManifestError(f"--split {self.split!r} is not a split mode",
                                hint=f"use one of {', '.join(SPLIT_MODES)}")
        if self.cap is not None and (self.balance != "cap" or self.cap < 1):
            raise ManifestError(f"--cap {self.cap} with --balance {self.balance}",
                                hint="--cap needs --balance cap and a value of at least 1")
        super().__post_init__()
        object.__setattr__(self, "fractions", parse_fractions(self.fractions, self.split))
        object.__setattr__(self, "guard", parse_gap(self.guard, "--guard") if self.split == "frame" else None)
        if self.ramp is not None and not self.ramp > 0:
            raise ManifestError(f"--ramp {self.ramp:g}: a clip cannot reach its full expression in no time",
                                hint="give the seconds a clip takes from neutral to full expression, e.g. --ramp 0.8")

    def asdict(self) -> dict[str, Any]:
        """The options as the manifest's `fex.options` records them (JSON values)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "check_files"}
        out.update(affects=list(self.affects), fractions=list(self.fractions),
                   min_gap=str(self.min_gap) if self.min_gap else None, guard=str(self.guard) if self.guard else None)
        if self.ramp is None:  # recorded only when used, so manifests built without it keep their bytes
            del out["ramp"]
        if not self.partial:  # likewise
            del out["partial"]
        return out


def build_manifest(ingest_dirs: list[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike,
                   options: BuildOptions = BuildOptions()) -> BuildReport:
    """Build and write the manifest `out` from ingest output folders; returns the report.

    Raises ManifestError (nothing written) on bad input, an unfinished ingest (unless `options.partial`), an
    empty result or failed checks.
    """
    t0 = time.perf_counter()
    dirs, out = _targets(ingest_dirs, out)
    manifest_dir = out.parent.resolve()
    warnings = _unfinished(dirs, options.partial)
    rec = _read(dirs, manifest_dir)
    crop_size = _choose_size(rec.frame, options.size)
    df, other_sizes, n_dup = _one_size_in_content_order(rec.frame, crop_size)
    ramped = 0
    if options.ramp is not None:
        df["intensity"], ramped = ramp_intensity(df, options.ramp)

    df, by_filter = apply_filters(df, rec.arrays["landmarks"], options)
    df, n_missing = _drop_missing(df, options, manifest_dir)
    dropped = {R_DUPLICATE: n_dup, **by_filter, R_MISSING: n_missing}
    if not len(df):
        reasons = ", ".join(f"{r}: {n}" for r, n in dropped.items() if n)
        raise ManifestError(f"no records left after filtering ({reasons or 'nothing matched'})",
                            hint="relax the filters (--min-score, --min-sharpness, --max-faces, --max-pad, --min-gap, "
                                 "--no-landmark-check) or choose other --affects")
    table_before = cell_table(df, options.affects)
    used_cap = None
    if options.balance == "cap":
        before = len(df)
        df, used_cap = cap_cells(df, options.cap)
        dropped[R_CAP] = before - len(df)
    df, n_guard, split_warnings = _split(df, options)
    warnings += split_warnings
    if options.split == "frame":
        dropped[R_GUARD] = n_guard

    df, arrays, identities = _index(df, rec.arrays, options.affects)
    meta = _meta(df, dirs, options, crop_size, used_cap)
    checks = check_manifest(df, {"affects": list(options.affects), "identities": identities, **meta},
                            manifest_dir, check_files=False)
    if not checks.ok:
        raise ManifestError("manifest checks failed, nothing written: " + "; ".join(checks.problems),
                            hint="this is likely a bug in fex; please report it with the command you ran")
    write_manifest(df, out, affects=options.affects, meta=meta, arrays=arrays)
    return BuildReport(out=out, rows_in=len(rec.frame), rows_out=len(df), crop_size=crop_size,
                       affects=options.affects, dropped=dropped, other_sizes=other_sizes, table_before=table_before,
                       table_after=cell_table(df, options.affects), cap=used_cap, checks=checks, options=options,
                       padding=pad_summary(df), ramped=ramped, warnings=warnings, seconds=time.perf_counter() - t0)


def _targets(ingest_dirs: list[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike
             ) -> tuple[list[Path], Path]:
    """The ingest folders as a list and the manifest's path, checked."""
    if isinstance(ingest_dirs, (str, os.PathLike)):
        ingest_dirs = [ingest_dirs]
    if not ingest_dirs:
        raise ManifestError("no ingest folders given", hint="pass the --out folder(s) of `fex ingest`")
    out = Path(out)
    if out.suffix != ".parquet":
        raise ManifestError(f"--out {out}: a manifest is a .parquet file",
                            hint=f"e.g. --out {out / 'manifest.parquet'}")
    return [Path(d) for d in ingest_dirs], out


def _read(dirs: list[Path], manifest_dir: Path) -> Records:
    """The ingest folders' records merged, checked for canonical affects, identities namespaced by source."""
    rec = _merge(dirs, manifest_dir)
    df = rec.frame
    if not len(df):
        raise _no_records(dirs)
    unknown = sorted(set(df["affect"].dropna().unique().tolist()) - set(KNOWN_AFFECTS))
    if unknown or df["affect"].isna().any():
        raise ManifestError(f"records hold non-canonical affects {unknown or ['<null>']}; they come from an "
                            f"incompatible `fex ingest`", hint="re-run `fex ingest` with this version of fex")
    bare = ~df["identity"].str.contains(":", regex=False)
    if bare.any():  # the contract namespaces identities; keep two datasets' 'S01' apart regardless
        df.loc[bare, "identity"] = df.loc[bare, "source"] + ":" + df.loc[bare, "identity"]
    return rec


def _one_size_in_content_order(df: pd.DataFrame, crop_size: int) -> tuple[pd.DataFrame, int, int]:
    """The rows of crop size `crop_size`, each crop once, sorted by image -> (rows, other sizes, duplicates).

    Content order from here on: every later step, seeded draws included, then sees the same rows in the
    same order whatever the order of ingest folders and record parts.
    """
    same = (df["crop_size"] == crop_size).to_numpy(bool)
    df = df[same].sort_values("image", kind="stable")
    dup = df["image"].duplicated().to_numpy()
    return df[~dup], int((~same).sum()), int(dup.sum())


def _drop_missing(df: pd.DataFrame, options: BuildOptions, manifest_dir: Path) -> tuple[pd.DataFrame, int]:
    """Rows whose crop file is missing fail the build, or are left out with --drop-missing -> (rows, left out)."""
    if not options.check_files or not len(df):
        return df, 0
    present = existing_files(df["image"], manifest_dir)
    if present.all():
        return df, 0
    missing = df.loc[~present, "image"].tolist()
    if not options.drop_missing:
        raise ManifestError(f"{len(missing)} crop files are missing (e.g. {missing[0]})",
                            hint="re-run `fex ingest` to restore them, or pass --drop-missing to leave them out")
    return df[present], len(missing)


def _split(df: pd.DataFrame, options: BuildOptions) -> tuple[pd.DataFrame, int, list[str]]:
    """Split, block, fold and weight columns added -> (rows, rows dropped in guard gaps, warnings)."""
    fr, seed, warnings, n_guard = options.fractions, options.seed, [], 0
    block = np.full(len(df), -1, np.int64)
    if options.split == "identity":
        split_names, warnings = split_by_identity(df, fr, seed, options.affects)
    elif options.split == "frame":
        split_names, block, keep, warnings = split_by_frame(df, fr, seed, options.blocks, options.guard)
        n_guard = int((~keep).sum())
        df, split_names, block = df[keep], split_names[keep], block[keep]
    else:
        split_names = np.full(len(df), "train", dtype=object)
    df = df.assign(split=split_names, block=pd.arrays.IntegerArray(
        np.where(block >= 0, block, 0).astype(np.int32), mask=block < 0))
    for s, f in zip(("train", "val", "test"), fr):
        if f > 0 and not (df["split"] == s).any():
            raise ManifestError(f"split {s} came out empty (fractions {','.join(f'{x:g}' for x in fr)}): "
                                f"the data has too few identities or frames for it",
                                hint=f"lower the fractions or use --split "
                                     f"{'frame' if options.split == 'identity' else 'identity'}")
    folds = options.folds
    fold = assign_folds(df, folds, seed) if folds else np.zeros(len(df), np.int32)
    df["fold"] = pd.arrays.IntegerArray(fold.astype(np.int32), mask=np.full(len(df), not folds))
    df["weight"] = balance_weights(df) if options.balance == "weight" else 1.0
    return df, n_guard, warnings


def _index(df: pd.DataFrame, arrays: dict[str, np.ndarray], affects: tuple[str, ...]
           ) -> tuple[pd.DataFrame, dict[str, np.ndarray], list[str]]:
    """Identity and affect indices, the file's row order, and the rows' crop-space landmarks and transforms
    -> (rows, list arrays by row, sorted identities)."""
    identities = sorted(df["identity"].unique())
    df["identity_index"] = codes(df["identity"], identities).astype(np.int32)
    df["affect_index"] = codes(df["affect"], affects).astype(np.int32)
    df = df.sort_values(ROW_ORDER, kind="stable").reset_index(drop=True)
    rows = df["_row"].to_numpy()
    out = {"landmarks": _crop_landmarks(arrays["landmarks"][rows], arrays["transform"][rows]),
           "transform": arrays["transform"][rows]}
    df["_row"] = np.arange(len(df))
    return df, out, identities


def _meta(df: pd.DataFrame, dirs: list[Path], options: BuildOptions, crop_size: int, used_cap: int | None
          ) -> dict[str, Any]:
    """The manifest's `fex.*` metadata beyond its affects and identities."""
    recorded = options.asdict()
    meta = {"crop_size": crop_size,
            "split": {"mode": options.split, "fractions": recorded["fractions"], "seed": options.seed,
                      "blocks": options.blocks if options.split == "frame" else None, "guard": recorded["guard"]},
            "folds": options.folds, "balance": {"mode": options.balance, "cap": used_cap},
            "options": recorded, "inputs": sorted(df["ingest"].unique().tolist()),
            "created_by": f"fex {__version__}"}
    recipe = merge_recipes([ingest_recipe(d) for d in dirs], crop_size)
    if recipe is not None:  # absent: an ingest did not record how it cropped (the fex.recipe docs)
        meta["recipe"] = recipe
    return meta
