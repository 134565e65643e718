"""fexdata: recordings and expression datasets -> aligned face crops -> one manifest -> torch datasets.

    ingest/        `fex ingest`: layouts (sources/), decode, detect, align, crop; records and rejects
    manifest/      `fex build-manifest`, `fex manifest-info`: merge, filter, balance, split, check
    dataset        FaceDataset / PairSampler / PairDataset over one split of a manifest
    packed_cache   a split's crops decoded once into a memory-mapped array
    schema         Column / Table: the column tables of every file fex writes, and their docs
    errors         the FexError family;  affects  the canonical affects;  paths  safe paths, atomic writes
    images, sample reading images; built-in sample faces and clips for the demo and tests

Data flows one way: cli -> fextrain -> fexdata; nothing here imports fextrain or cli. This package
re-exports only what is light to import (errors, affects); the subpackages export their own API.
"""
from fexdata.affects import AFFECTS, KNOWN_AFFECTS, UnknownAffect, canonical_affect
from fexdata.errors import EditError, EvalError, FexError, IngestError, LayoutError, ManifestError, TrainingError

__version__ = "0.1.0"
__all__ = ["AFFECTS", "KNOWN_AFFECTS", "EditError", "EvalError", "FexError", "IngestError", "LayoutError",
           "ManifestError", "TrainingError", "UnknownAffect", "canonical_affect"]
