"""`fex edit`: change the expression of the faces in a user's own photos and videos with a trained run,
pasted back into the full-resolution frames. See docs/edit.md.

    inputs.py   images, folders, videos, CSV lists -> EditInput
    targets.py  --to specs, --intensity sweeps, schedules -> Target
    recipe.py   the run's crop recipe and manifest
    faces.py    faces found and aligned exactly as the training crops were made
    model.py    the registered model behind one interface, in batches
    source.py   the source affect: given or estimated (discriminator head or the cached judge)
    paste.py    inverse transform, feathered landmark mask, colour match
    photo.py    one photo -> its outputs;  video.py: one video -> its outputs (one decoding pass)
    outputs.py  each input's own output folder, output paths, parts, grid;  table.py: edits.parquet
    run.py      the run: lock, resume, rejects, edits.parquet, edit.json
"""
__all__ = ["EditOptions", "edit", "format_summary"]


def __getattr__(name: str):
    # loaded on first use, so `fex edit --help` reads JudgeOptions' defaults (source.py) without importing torch
    if name in __all__:
        from fextrain.edit import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
