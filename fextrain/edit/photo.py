"""Edit one photo into every pending target: find and align its faces, one model pass for faces x targets,
paste back, write each output, the grid, and last the parts (each output's "done" mark), so a run killed
before the grid was written edits the photo again rather than leave it without one."""
from __future__ import annotations

import numpy as np

from fexdata.images import read_rgb, write_png
from fexdata.ingest import records as R
from fextrain.edit.context import EditContext, Rejected
from fextrain.edit.faces import still_faces
from fextrain.edit.inputs import EditInput
from fextrain.edit.outputs import (crop_path, drop_stale_parts, face_region, grid_path, output_path, part_path,
                                   write_grid)
from fextrain.edit.paste import sharpness_ratio
from fextrain.edit.table import edit_row, write_part
from fextrain.edit.targets import Target


def edit_photo(ctx: EditContext, item: EditInput, pending: list[Target], targets: list[Target], sig: str) -> int:
    """Write the outputs of `pending` (constant targets); returns how many. Raises Rejected, ImageError."""
    image = read_rgb(item.path, max_pixels=ctx.max_pixels)
    faces = still_faces(image, ctx.finder, ctx.recipe, ctx.size, ctx.faces)
    if not faces:
        hint = "; if the images are face crops already, use --fallback frame" if ctx.recipe.fallback != "frame" else ""
        raise Rejected(R.NO_FACE, f"no face found ({ctx.recipe.detector} detector){hint}")
    src = ctx.sources.decide(np.stack([f.image for f in faces]), item.affect)
    frames, generated = edit_frames(ctx, image, faces, src.vectors, np.asarray([t.vector for t in pending], np.float32))
    if ctx.crops:
        for face in faces:
            write_png(crop_path(ctx.out, item, None, face.index, "source"), face.image)
    edited: dict[str, np.ndarray] = {}
    parts: dict[str, list] = {}
    for target, frame, gen in zip(pending, frames, generated):
        dest = output_path(ctx.out, item, target)
        write_png(dest, frame)
        if ctx.crops:
            for face, g in zip(faces, gen):
                write_png(crop_path(ctx.out, item, None, face.index, target.name), g)
        rel = dest.relative_to(ctx.out).as_posix()
        parts[target.name] = [edit_row(item.shown, "image", None, float("nan"), face, src.names[i], src.confidence[i],
                                       src.by, target.name, target.vector, rel, sharpness_ratio(image, frame, face.box))
                               for i, face in enumerate(faces)]
        edited[target.name] = frame
    tiles = [("source", image)]
    for target in targets:
        if target.name in edited:
            tiles.append((target.name, edited[target.name]))
        elif output_path(ctx.out, item, target).is_file():
            tiles.append((target.name, read_rgb(output_path(ctx.out, item, target))))
    write_grid(grid_path(ctx.out, item), tiles, face_region([f.box for f in faces], image.shape))
    for target in pending:
        write_part(part_path(ctx.out, item, target, sig), parts[target.name])
        drop_stale_parts(ctx.out, item, target, sig)
    return len(pending)


def edit_frames(ctx: EditContext, image: np.ndarray, faces: list, source_vectors: np.ndarray,
                vectors: np.ndarray) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """One photo's faces edited into each target vector (faces x targets in one batched forward) and pasted back:
    (the output frame per target, the generated crops per target). `fex explore` renders through this too."""
    n = len(faces)
    crops = np.stack([f.image for f in faces])
    batch = (np.tile(crops, (len(vectors), 1, 1, 1)), np.tile(source_vectors, (len(vectors), 1)),
             np.repeat(np.asarray(vectors, np.float32), n, axis=0))
    generated, fields = ctx.model.edit_with_fields(*batch) if ctx.warp else (ctx.model.edit(*batch), None)
    gens = [list(generated[i * n:(i + 1) * n]) for i in range(len(vectors))]
    frames = [ctx.paste_faces(image, faces, gens[i], None if fields is None else fields[i * n:(i + 1) * n])
              for i in range(len(vectors))]
    return frames, gens
