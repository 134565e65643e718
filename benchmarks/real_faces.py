"""A real-face development benchmark of unseen people (issue 23): public expression images -> two manifests.

    .venv/bin/python benchmarks/real_faces.py                       # mirrors under /work/.mirror, cache ~/.cache/fex/real-faces
    .venv/bin/python benchmarks/real_faces.py --mirrors DIR --cache DIR --per-cell 4 --workers 1

fex's editors were measured only on its synthetic demo characters. This script gathers real photographs
of posed expressions from four public GitHub repositories (benchmarks/REAL_FACES.md lists them, with the
commit, paths, counts and licence notes) and turns them into manifests with the real `fex ingest` and
`fex build-manifest`:

* cache/raw/<source>/      the selected files, in a layout fex ingests (jaffe, ckplus, kdef, or a csv table)
* cache/ingest/<source>/   `fex ingest --size 128` of each source
* cache/manifest-identity.parquet   `--split identity --fractions 0.67,0.33`: test people are never trained on
* cache/manifest-frame.parquet      `--split frame`: other photos of the people the model trained on
* cache/manifest-*.json   their build reports (rows dropped and why, warnings)
* cache/selection.csv      one row per selected file: source, repository, commit, path, identity, affect, gray

It reads git objects only, from local clones: it never touches the network. Clone each repository
(`git clone --bare https://github.com/OWNER/NAME MIRRORS/OWNER+NAME`) or, in a fex session, run the search
tool's `fetch github:OWNER/NAME` for each, which leaves MIRRORS/OWNER+NAME/repo. Files are read one by one
from the pinned commit (`git cat-file --batch`), because some snapshots miss objects; a missing one is
reported and skipped. Images are never copied into the repository. Reruns reuse the cache: extracted files
are kept, ingest resumes, and the manifests are rebuilt byte-identically.

Selection (deterministic, by name): CK+48 keeps the last (peak) frame of each sequence, since its three
frames per sequence are near-duplicates that a frame split would put on both sides; then at most
--per-cell images per identity x affect of a source, evenly spaced in name order (the Taiwanese corpus has
up to 10 per cell). Gray sets: JAFFE and CK+48; colour: KDEF and the Taiwanese corpus.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fexdata.paths import atomic_write_bytes, atomic_write_text  # noqa: E402

DEFAULT_CACHE = Path("~/.cache/fex/real-faces").expanduser()
DEFAULT_MIRRORS = Path("/work/.mirror")
# The benchmark's two splits (benchmarks/edit_quality.py --real uses them): train,test by people, and
# train,test within each identity x affect cell (stills are assigned one by one; blocks apply to videos only).
# No landmark check: CK+48's 48 px crops end at the chin, so it dropped 180 of its 327 faces (80 of 83
# surprise, whose open jaw leaves the frame) and one face elsewhere.
SPLITS = {
    "identity": ["--split", "identity", "--fractions", "0.67,0.33", "--no-landmark-check"],
    "frame": ["--split", "frame", "--fractions", "0.7,0.3", "--no-landmark-check"],
}


@dataclass(frozen=True)
class Pick:
    """One file chosen from a repository: where it lands in the cache and what it shows."""
    repo_path: str
    dest: str  # relative to cache/raw/<source>
    identity: str
    affect: str  # the dataset's own label
    order: str = ""  # sort key inside its cell (name order unless a parser says otherwise)


# Each parser maps a repository path to a Pick, or to a string: why the file is not taken.
Parser = Callable[[str], "Pick | str | None"]


def _jaffe(path: str) -> Pick | str | None:
    name = path.rsplit("/", 1)[-1]
    m = re.fullmatch(r"([A-Z]{2})\.([A-Z]{2})\d+\.\d+\.tiff", name)
    if not m:
        return None if name.startswith(".") else "name is not <subject>.<expression><n>.<id>.tiff"
    return Pick(path, f"jaffedbase/{name}", m[1], m[2])


def _ck48(path: str) -> Pick | str | None:
    folder, name = path.split("/")[-2:]
    m = re.fullmatch(r"(S\d{3})_(\d{3})_(\d{8})\.png", name)
    if not m:
        return None if name.startswith(".") else "name is not S###_###_########.png"
    # order: sequence, then frame number; select() keeps the last frame of each sequence
    return Pick(path, f"CK+48/{folder}/{name}", m[1], folder, order=f"{m[2]}_{m[3]}")


def _kdef(path: str) -> Pick | str | None:
    name = path.rsplit("/", 1)[-1]
    m = re.fullmatch(r"([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(S|HL|HR|FL|FR)\.jpe?g", name, re.IGNORECASE)
    if not m:
        return None  # the repository is a general image host: other files are not KDEF
    if m[5].upper() != "S":
        return "not a straight (frontal) view"
    return Pick(path, f"KDEF/{m[1]}{m[2]}{m[3]}/{name}".upper().replace(".JPEG", ".JPG"),
                f"{m[2]}{m[3]}".upper(), m[4].upper())


# Taiwanese corpus file names (its Readme.txt): performer, performance type, view, expression letter, serial.
TAIWAN_AFFECTS = {"a": "neutral", "b": "happy", "c": "sad", "d": "angry", "e": "disgusted", "f": "fearful",
                  "g": "surprised"}


def _taiwan(path: str) -> Pick | str | None:
    name = path.rsplit("/", 1)[-1]
    m = re.fullmatch(r"(\d{2})\d(\d)([a-g])\d{2}\.jpg", name)
    if not m:
        return None if name.startswith(".") else "name has no expression letter a-g (<performer><type><view><a-g><n>.jpg)"
    if m[2] != "1":
        return "not a front view"
    return Pick(path, f"faces/{name}", m[1], TAIWAN_AFFECTS[m[3]])


@dataclass(frozen=True)
class Source:
    name: str
    repo: str  # owner/name on GitHub
    commit: str  # pinned: a newer snapshot may add, drop or rename files
    folder: str  # inside the repository ("" = the root)
    layout: str  # `fex ingest --layout`
    parse: Parser
    colour: str  # what the set is: "gray" or "colour" (measured per file too)


SOURCES = (
    Source("jaffe", "fitoplankton/facial-expression-classification-prediction",
           "0235641ef7178718b9035b9f0664f3b7225e4485", "jaffe_db", "jaffe", _jaffe, "gray"),
    Source("ckplus", "WuJie1010/Facial-Expression-Recognition.Pytorch",
           "fefe6653f3e09912693a73c54e6a8247adca3090", "CK+48", "ckplus", _ck48, "gray"),
    Source("kdef", "zihaosino/tuchuang", "0d374bd20ad9fb781b4b3debf9ff3a7a60ffbf42", "", "kdef", _kdef, "colour"),
    Source("taiwan", "lai-wei-cheng/b12207073", "790c44989ebf3b9835806512ce2f929fe441244f",
           "Taiwanese/faces_256x256", "csv", _taiwan, "colour"),
)


def git_dir(mirrors: Path, repo: str) -> Path:
    """The local clone of `repo` under `mirrors` (OWNER+NAME/repo as `fetch` leaves it, or OWNER+NAME)."""
    base = mirrors / repo.replace("/", "+")
    for candidate in (base / "repo", base, base.with_name(base.name + ".git")):
        if candidate.is_dir():
            return candidate
    raise SystemExit(f"{repo}: no clone under {mirrors} (expected {base}/repo or {base}); "
                     f"clone it there first (see this script's docstring)")


def git(gdir: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", f"--git-dir={gdir}", *args], input=data, capture_output=True, check=True).stdout


def list_files(gdir: Path, commit: str, folder: str) -> list[str]:
    try:
        out = git(gdir, "ls-tree", "-r", "--name-only", "-z", commit, *([folder] if folder else []))
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"{gdir}: commit {commit} not found ({e.stderr.decode().strip()}); "
                         "fetch a snapshot that holds it") from e
    return sorted(p for p in out.decode().split("\0") if p)


def read_blobs(gdir: Path, commit: str, paths: list[str]) -> dict[str, bytes | None]:
    """Each path's bytes at `commit`, None where the snapshot misses the object (one lookup per file)."""
    if not paths:
        return {}
    proc = subprocess.Popen(["git", f"--git-dir={gdir}", "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    found: dict[str, bytes | None] = {}
    for path in paths:  # one request at a time: a missing object answers "<name> missing" and the rest go on
        proc.stdin.write(f"{commit}:{path}\n".encode())
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) != 3:
            found[path] = None
            continue
        found[path] = proc.stdout.read(int(header[2]))
        proc.stdout.read(1)  # the newline after the object
    proc.stdin.close()
    proc.wait()
    return found


def select(source: Source, paths: list[str], per_cell: int) -> tuple[list[Pick], Counter]:
    """The picks of one source and a count of why the other files were left out."""
    skipped: Counter = Counter()
    picks: list[Pick] = []
    for path in paths:
        got = source.parse(path)
        if isinstance(got, Pick):
            picks.append(got)
        elif got:
            skipped[got] += 1
    if source.name == "ckplus":
        last: dict[tuple[str, str], Pick] = {}
        for p in picks:
            key = (p.identity, p.order.split("_")[0])
            if key not in last or p.order > last[key].order:
                last[key] = p
        skipped["earlier frame of a CK+48 sequence (a near-duplicate of its peak)"] += len(picks) - len(last)
        picks = list(last.values())
    cells: dict[tuple[str, str], list[Pick]] = {}
    for p in sorted(picks, key=lambda p: (p.identity, p.affect, p.order or p.dest)):
        cells.setdefault((p.identity, p.affect), []).append(p)
    kept: list[Pick] = []
    for cell in cells.values():
        if len(cell) > per_cell:
            skipped[f"over --per-cell {per_cell} in its identity x affect cell"] += len(cell) - per_cell
            cell = [cell[i] for i in np.round(np.linspace(0, len(cell) - 1, per_cell)).astype(int)]
        kept.extend(cell)
    return sorted(kept, key=lambda p: p.dest), skipped


def is_gray(path: Path) -> bool:
    """True for single-channel images and for colour files whose channels agree (a gray photo saved as RGB)."""
    with Image.open(path) as im:
        if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
            return True
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    return float(np.abs(rgb - rgb[..., :1]).mean()) < 1.0  # JPEG leaves tiny chroma noise in gray photos


def extract(source: Source, mirrors: Path, raw: Path, per_cell: int) -> tuple[pd.DataFrame, Counter]:
    """Write the source's picks under raw/ (files already there are kept) and return one row per file."""
    gdir = git_dir(mirrors, source.repo)
    picks, skipped = select(source, list_files(gdir, source.commit, source.folder), per_cell)
    todo = [p for p in picks if not (raw / p.dest).is_file()]
    blobs = read_blobs(gdir, source.commit, [p.repo_path for p in todo])
    missing = {path for path, data in blobs.items() if data is None}
    for p in todo:
        if blobs[p.repo_path] is not None:
            (raw / p.dest).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(raw / p.dest, blobs[p.repo_path])
    if missing:
        skipped["object missing from the repository snapshot"] += len(missing)
    picks = [p for p in picks if p.repo_path not in missing]
    if source.layout == "csv":  # a table of path,identity,affect; fex keeps the namespace given here
        table = pd.DataFrame({"path": [p.dest for p in picks], "identity": [f"{source.name}:{p.identity}" for p in picks],
                              "affect": [p.affect for p in picks]})
        atomic_write_text(raw / "labels.csv", table.to_csv(index=False))
    rows = pd.DataFrame({"source": source.name, "repo": source.repo, "commit": source.commit,
                         "repo_path": [p.repo_path for p in picks], "path": [p.dest for p in picks],
                         "identity": [f"{source.name}:{p.identity}" for p in picks],
                         "affect_raw": [p.affect for p in picks],
                         "gray": [is_gray(raw / p.dest) for p in picks]})
    return rows, skipped


def fex(args: list[str]) -> None:
    from cli.main import main

    status = main.main(args, standalone_mode=False, prog_name="fex")
    if status:
        raise SystemExit(f"fex {' '.join(args)} failed with status {status}")


def real_manifests(cache: Path = DEFAULT_CACHE, mirrors: Path = DEFAULT_MIRRORS, per_cell: int = 4,
                   workers: int = 1, report: bool = True) -> dict[str, Path]:
    """{split: manifest} over the real-face sources, built (or reused) under `cache`."""
    cache = Path(cache).expanduser().resolve()
    repo_root = Path(__file__).resolve().parents[1]
    if cache.is_relative_to(repo_root):
        raise SystemExit(f"--cache {cache} is inside the repository; face images stay outside it")
    selection, skipped, ingests = [], {}, []
    for source in SOURCES:
        raw = cache / "raw" / source.name
        rows, skipped[source.name] = extract(source, mirrors, raw, per_cell)
        selection.append(rows)
        out = cache / "ingest" / source.name
        fex(["ingest", str(raw / "labels.csv" if source.layout == "csv" else raw), "--out", str(out),
             "--layout", source.layout, "--size", "128", "--workers", str(workers), "--quiet"])
        ingests.append(str(out))
    table = pd.concat(selection, ignore_index=True)
    atomic_write_text(cache / "selection.csv", table.to_csv(index=False))
    manifests = {}
    for split, options in SPLITS.items():
        manifests[split] = cache / f"manifest-{split}.parquet"
        fex(["build-manifest", *ingests, "--out", str(manifests[split]), *options, "--quiet",
             "--report", str(cache / f"manifest-{split}.json")])
    if report:
        print_counts(cache, table, skipped, manifests)
    return manifests


def print_counts(cache: Path, selection: pd.DataFrame, skipped: dict[str, Counter], manifests: dict[str, Path]) -> None:
    from fexdata.manifest.io import read_manifest

    print(f"\n== selected files ({cache / 'selection.csv'})")
    by_source = selection.groupby("source", sort=False)
    print(pd.DataFrame({"images": by_source.size(), "identities": by_source["identity"].nunique(),
                        "gray": by_source["gray"].sum(), "colour": by_source.size() - by_source["gray"].sum()})
          .to_string())
    print(f"total {len(selection)} images, {selection['identity'].nunique()} identities, "
          f"{int(selection['gray'].sum())} gray, {int((~selection['gray']).sum())} colour")
    print("\n== left out before ingest")
    for name, reasons in skipped.items():
        for reason, n in sorted(reasons.items()):
            print(f"{name:8s} {n:5d}  {reason}")
    print("\n== rejected by fex ingest")
    for name in skipped:
        rejects_dir = cache / "ingest" / name / "rejects"
        rejects = pd.read_parquet(rejects_dir) if rejects_dir.exists() else pd.DataFrame(columns=["reason"])
        for reason, n in rejects["reason"].str.split(r"[:(]").str[0].str.strip().value_counts().items():
            print(f"{name:8s} {n:5d}  {reason}")
    for split, path in manifests.items():
        build = json.loads(path.with_suffix(".json").read_text())
        print(f"\n== left out by fex build-manifest ({split} split)")
        for reason, n in build["dropped"].items():
            if n:
                print(f"{n:5d}  {reason}")
        for warning in build["warnings"]:
            print(f"warning: {warning}")
        df, _ = read_manifest(path)
        df["source"] = df["ingest"].str.rsplit("/", n=1).str[-1]
        gray = selection.set_index(["source", "path"])["gray"]
        key = list(zip(df["source"], df["source_path"]))
        df["set"] = np.where(gray.reindex(key).to_numpy(dtype=bool), "gray", "colour")
        print(f"\n== {path} ({len(df)} faces, {df['identity'].nunique()} identities)")
        print(pd.crosstab([df["split"], df["source"]], df["affect"], margins=True).to_string())
        print(pd.crosstab(df["split"], df["set"]).to_string())
        print("identities per split: " + ", ".join(f"{s} {n}" for s, n in df.groupby("split")["identity"].nunique().items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder for the images, ingests and manifests")
    ap.add_argument("--mirrors", type=Path, default=DEFAULT_MIRRORS, help="folder holding OWNER+NAME clones")
    ap.add_argument("--per-cell", type=int, default=4, help="most images per identity x affect of one source")
    ap.add_argument("--workers", type=int, default=1, help="ingest worker processes (the machine is shared)")
    args = ap.parse_args()
    manifests = real_manifests(args.cache, args.mirrors, args.per_cell, args.workers)
    print("\n" + "\n".join(f"{split}: {path}" for split, path in manifests.items()))


if __name__ == "__main__":
    main()
