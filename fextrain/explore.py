"""`fex explore RUN [PHOTO...]`: a local page to mix and dial a run's expressions on a face (docs/explore.md).

`Explorer` holds what the page needs and runs without a browser: the run's model, crop recipe and face finder,
set up as `fex edit` sets them up, and the photos, each found, aligned and given its source affect once
(`prepare`). An edit is then one model pass and a paste-back (`render`), so a slider answers at once. Every step
is `fex edit`'s own function (fextrain.edit: still_faces, SourceAffects, BatchModel, EditContext.paste_faces,
parse_targets), so `render(photo, spec)` is, pixel for pixel, the PNG that `fex edit PHOTO --to SPEC` writes.

`page` lays the Gradio page over an Explorer and `serve` starts it on 127.0.0.1.
"""
from __future__ import annotations

import functools
import html
import os
import shlex
import socket
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fexdata.errors import EditError, FexError
from fexdata.images import DEFAULT_MAX_PIXELS, ImageError, read_rgb, write_png
from fextrain.edit.context import EditContext
from fextrain.edit.faces import FaceCrop, make_finder, still_faces
from fextrain.device import resolve_device
from fextrain.edit.model import BatchModel, load_model
from fextrain.edit.outputs import face_region, write_grid
from fextrain.edit.photo import edit_frames
from fextrain.edit.recipe import resolve_recipe, run_manifest
from fextrain.edit.run import EditOptions, uses_warp
from fextrain.edit.source import JudgeOptions, SourceAffects, Sources, run_judge
from fextrain.edit.targets import MAX_WEIGHT, parse_targets, read_spec

STEP = 0.05          # slider resolution: specs stay short (0.35*joy) and every value is exact in `--to`
MAX_TEST_FACES = 48  # the run's test faces offered in the list
KEEP_PHOTOS = 16     # prepared photos kept (faces found once per photo)
INSTALL = ".venv/bin/python -m pip install --no-deps --require-hashes -r requirements-ui.lock"


class ExploreError(FexError):
    """A photo or a mix the page cannot edit: shown on the page, the server goes on."""


@dataclass(frozen=True)
class ExploreOptions:
    """The `fex edit` options that decide an output's pixels, as `fex edit` takes them."""
    source: str = "auto"
    estimator: str = "auto"
    faces: str = "largest"
    colour: bool = False
    keep_detail: bool = False
    paste: str = "auto"       # auto | warp | crop, as fex edit --paste
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def edit_flags(self) -> list[str]:
        """The `fex edit` options that reproduce these settings (the defaults left out)."""
        flags = [] if self.source == "auto" else ["--from", self.source]
        flags += [] if self.estimator == "auto" else ["--estimator", self.estimator]
        flags += [] if self.faces == "largest" else ["--faces", self.faces]
        flags += (["--color-match"] if self.colour else []) + (["--keep-detail"] if self.keep_detail else [])
        flags += [] if self.paste == "auto" else ["--paste", self.paste]
        if self.max_pixels != DEFAULT_MAX_PIXELS:
            flags += ["--max-megapixels", f"{self.max_pixels / 1e6:g}"]
        return flags


@dataclass
class Photo:
    path: Path
    image: np.ndarray         # H x W x 3 uint8, as `fex edit` reads it
    faces: list[FaceCrop]
    sources: Sources
    region: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))   # around the faces, for the grid


class Explorer:
    def __init__(self, run: str | os.PathLike, options: ExploreOptions = ExploreOptions(),
                 log: Callable[[str], None] = print) -> None:
        self.run, self.options = Path(run), options
        device = resolve_device(options.device, EditError)
        editor = load_model(self.run, device)
        self.affects, self.size = tuple(editor.affects), int(editor.size)
        self.recipe, _ = resolve_recipe(editor.config, self.run, self.size, {})
        warp = uses_warp(editor, EditOptions(paste=options.paste, keep_detail=options.keep_detail))
        self.model = BatchModel(editor, batch=16)
        judge = functools.partial(run_judge, editor.config, self.run, self.size, JudgeOptions(), str(device), False,
                                  log)
        if options.source.strip().lower() != "auto":
            read_spec(options.source, self.affects, "--from")
        # out is never written: the page edits in memory; paste_faces is the one paste-back of `fex edit`
        self.ctx = EditContext(Path(tempfile.gettempdir()), self.recipe, make_finder(self.recipe), self.model,
                               SourceAffects(options.source, self.affects, self.model, options.estimator, judge),
                               self.affects, self.size, faces=options.faces, colour=options.colour,
                               keep_detail=options.keep_detail, warp=warp, max_pixels=options.max_pixels,
                               progress=False)
        self.config = editor.config
        self.description = f"{editor.model} at step {editor.step}, {self.size}px, {device}"
        self._photos: OrderedDict[Path, Photo] = OrderedDict()
        self._lock = threading.Lock()   # one model and face finder, page events arrive on several threads

    def test_faces(self) -> list[tuple[str, Path]]:
        """(label, path) of the run's test faces (of its whole manifest when it has no test split)."""
        from fexdata.manifest.io import read_manifest

        manifest = run_manifest(self.config, self.run)
        if manifest is None:
            return []
        df, _ = read_manifest(manifest, columns=["image", "split", "identity", "affect"])
        if (df["split"] == "test").any():
            df = df[df["split"] == "test"]
        df = df.head(MAX_TEST_FACES)
        return [(f"{r.identity} {r.affect} ({Path(r.image).name})", (manifest.parent / r.image).resolve())
                for r in df.itertuples()]

    def prepare(self, path: str | os.PathLike) -> Photo:
        """The photo read, its faces found and aligned and their source affects decided, as `fex edit` does.
        Raises ExploreError for a file that is no image or shows no face."""
        path = Path(path).resolve()
        with self._lock:
            if path in self._photos:
                self._photos.move_to_end(path)
                return self._photos[path]
            try:
                image = read_rgb(path, max_pixels=self.options.max_pixels)
            except ImageError as exc:
                raise ExploreError(f"{path.name}: {exc}", hint="upload a photo (PNG, JPEG, ...) with a face") from None
            faces = still_faces(image, self.ctx.finder, self.recipe, self.size, self.options.faces)
            if not faces:
                raise ExploreError(f"{path.name}: no face found ({self.recipe.detector} detector)",
                                   hint="upload a photo with a frontal face, larger than about 80 pixels")
            sources = self.ctx.sources.decide(np.stack([f.image for f in faces]))
            photo = Photo(path, image, faces, sources, face_region([f.box for f in faces], image.shape))
            self._photos[path] = photo
            while len(self._photos) > KEEP_PHOTOS:
                self._photos.popitem(last=False)
            return photo

    def spec(self, weights: Sequence[float]) -> str:
        """The `--to` spec of one weight per affect (rounded to the slider's STEP). Raises ExploreError for a
        mix `fex edit` refuses (all zero, or weights adding up to more than MAX_WEIGHT)."""
        if len(weights) != len(self.affects):
            raise ExploreError(f"{len(weights)} weights for {len(self.affects)} affects")
        terms = [f"{round(float(w) / STEP) * STEP:.2f}".rstrip("0").rstrip(".") for w in weights]
        spec = "+".join(f"{t}*{a}" for t, a in zip(terms, self.affects) if float(t) > 0)
        if not spec:
            raise ExploreError("every slider is at 0", hint="move a slider to give the face an expression")
        try:
            return parse_targets([spec], (1.0,), self.affects)[0].spec
        except EditError as exc:
            raise ExploreError(str(exc), hint=f"lower a slider: the weights may add up to {MAX_WEIGHT:g}") from None

    def render(self, photo: Photo, spec: str) -> np.ndarray:
        """The photo edited to `spec`, pasted back: what `fex edit PHOTO --to SPEC` writes."""
        return self.render_many(photo, [spec])[0]

    def render_many(self, photo: Photo, specs: Sequence[str]) -> list[np.ndarray]:
        vectors = [parse_targets([s], (1.0,), self.affects)[0].vector for s in specs]   # fex edit's parse
        with self._lock:
            return edit_frames(self.ctx, photo.image, photo.faces, photo.sources.vectors, vectors)[0]

    def sweep(self, photo: Photo, weights: Sequence[float], affect: str, steps: int = 5
              ) -> tuple[list[str], list[np.ndarray]]:
        """The current mix with `affect`'s weight from 0 up to 1 (or where it is, if higher; never past what the
        other weights leave of MAX_WEIGHT) in `steps` steps: (specs, pasted-back frames)."""
        if affect not in self.affects:
            raise ExploreError(f"unknown affect {affect!r}", hint=f"choose one of {', '.join(self.affects)}")
        i = self.affects.index(affect)
        others = sum(float(w) for j, w in enumerate(weights) if j != i)
        top = max(0.0, min(MAX_WEIGHT - others, max(1.0, float(weights[i]))))
        specs, seen = [], set()
        for v in np.linspace(0.0, top, max(2, int(steps))):
            mix = [float(w) for w in weights]
            mix[i] = float(np.floor(v / STEP + 1e-9) * STEP)
            try:
                s = self.spec(mix)
            except ExploreError:
                continue   # all zero at this end of the range
            if s not in seen:
                seen.add(s)
                specs.append(s)
        if not specs:
            raise ExploreError("nothing to sweep", hint="move a slider first")
        return specs, self.render_many(photo, specs)

    def command(self, photo: Photo, spec: str) -> str:
        """The `fex edit` command line that writes this result."""
        args = ["fex", "edit", str(self.run), str(photo.path), "--to", spec, *self.options.edit_flags(),
                "--out", "edits"]
        return shlex.join(args)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _md(text: str) -> str:
    """Plain text for the page's Markdown: specs' `*` and file names' `_` shown as written."""
    return html.escape(text).replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def _message(exc: FexError) -> str:
    return f"**{_md(str(exc))}**" + (f"  \n{_md(exc.hint)}" if exc.hint else "")


class Session:
    """What the page's handlers do, in files: each result, grid and `fex edit` command is written once, named
    by its photo and spec, into `work` (the page shows and downloads those files)."""

    def __init__(self, explorer: Explorer, work: Path) -> None:
        self.explorer, self.work = explorer, work

    def _file(self, photo: Photo, what: str, suffix: str) -> Path:
        from fexdata.ingest.records import slug, stable_hash

        return self.work / f"{slug(photo.path.stem)}-{stable_hash(str(photo.path), what, length=8)}{suffix}"

    def _source_note(self, photo: Photo) -> str:
        s = photo.sources
        how = s.by if s.by in ("given", "csv") else f"estimated by the {s.by}, p={float(s.confidence[0]):.2f}"
        return f"{photo.path.name}: {len(photo.faces)} face(s), source affect {s.names[0]} ({how})"

    def show(self, path: str | None, weights: Sequence[float]) -> dict[str, Any]:
        """{result, spec, command, files, message} for the photo at `path` edited to the sliders' mix;
        a photo or mix that cannot be edited gives only a message."""
        try:
            if not path:
                raise ExploreError("no photo chosen", hint="pick a test face or upload a photo")
            photo = self.explorer.prepare(path)
            note = self._source_note(photo)
            try:
                spec = self.explorer.spec(weights)
            except ExploreError as exc:   # nothing to edit to: show the photo as it is
                source = self._file(photo, "source", ".png")
                if not source.is_file():
                    write_png(source, photo.image)
                return {"result": str(source), "spec": "", "command": "", "files": [], "message": f"{_md(note)}  \n"
                        + _message(exc)}
            result = self._file(photo, spec, ".png")
            if not result.is_file():
                write_png(result, self.explorer.render(photo, spec))
            command = self.explorer.command(photo, spec)
            spec_file = self._file(photo, spec, ".txt")
            spec_file.write_text(f"# fex explore: this command writes edits/{photo.path.stem}/... = "
                                 f"{result.name}\n{command}\n")
            return {"result": str(result), "spec": spec, "command": command, "files": [str(result), str(spec_file)],
                    "message": _md(note)}
        except FexError as exc:
            return {"message": _message(exc)}

    def grid(self, path: str | None, weights: Sequence[float], affect: str, steps: int) -> dict[str, Any]:
        try:
            if not path:
                raise ExploreError("no photo chosen", hint="pick a test face or upload a photo")
            photo = self.explorer.prepare(path)
            specs, frames = self.explorer.sweep(photo, weights, affect, int(steps))
            dest = self._file(photo, "grid:" + "|".join(specs), ".png")
            write_grid(dest, [(s, f) for s, f in zip(specs, frames)], photo.region, per_row=len(specs))
            return {"grid": str(dest), "message": f"grid over {affect}: " + _md(", ".join(specs))}
        except FexError as exc:
            return {"message": _message(exc)}


def page(explorer: Explorer, photos: Sequence[Path], work: Path) -> Any:
    """The Gradio page: a face (the given photos, the run's test faces, or an upload), a slider per affect,
    the pasted-back result with its `--to` spec and `fex edit` command, downloads, and a grid over one slider."""
    import gradio as gr

    session = Session(explorer, work)
    choices = [(f"photo: {Path(p).name}", str(Path(p).resolve())) for p in photos]
    choices += [(f"test face: {label}", str(path)) for label, path in explorer.test_faces()]
    first = choices[0][1] if choices else None
    affects = list(explorer.affects)
    with gr.Blocks(title="fex explore") as blocks:
        gr.Markdown(f"## fex explore · {_md(str(explorer.run))} · {_md(explorer.description)}")
        current = gr.State(first)
        with gr.Row():
            with gr.Column(scale=1):
                face = gr.Dropdown(choices, value=first, label="face", elem_id="face")
                upload = gr.File(label="or upload a photo", type="filepath", elem_id="upload")
                sliders = [gr.Slider(0, MAX_WEIGHT, value=0, step=STEP, label=a, elem_id=f"w-{a}") for a in affects]
            with gr.Column(scale=2):
                message = gr.Markdown(elem_id="message")
                result = gr.Image(label="result (pasted back, full resolution)", type="filepath", format="png",
                                  interactive=False, elem_id="result", height=420)
                spec = gr.Textbox(label="--to", interactive=False, elem_id="spec")
                command = gr.Textbox(label="the same edit with fex edit", interactive=False, elem_id="command")
                files = gr.File(label="download: the result and its fex edit command", file_count="multiple",
                                interactive=False, elem_id="downloads")
                with gr.Row():
                    over = gr.Dropdown(affects, value="joy" if "joy" in affects else affects[0], label="grid over")
                    steps = gr.Slider(3, 9, value=5, step=1, label="tiles")
                    make_grid = gr.Button("grid of this mix", elem_id="make-grid")
                grid = gr.Image(label="grid", type="filepath", format="png", interactive=False, elem_id="grid")
        shown = [result, spec, command, files, message]

        def outputs(d: dict[str, Any]) -> list[Any]:
            return [d.get(k, gr.skip()) for k in ("result", "spec", "command", "files", "message")]

        def on_sliders(path, *weights):
            return outputs(session.show(path, weights))

        def on_face(path, *weights):
            return [path, *outputs(session.show(path, weights))]

        def on_upload(upload_path, path, *weights):
            if not upload_path:
                return [path, *[gr.skip()] * len(shown)]
            d = session.show(upload_path, weights)
            return [upload_path if "result" in d else path, *outputs(d)]   # a bad upload keeps the last photo

        def on_grid(path, affect, n, *weights):
            d = session.grid(path, weights, affect, n)
            return [d.get("grid", gr.skip()), d["message"]]

        for s in sliders:
            s.change(on_sliders, [current, *sliders], shown, trigger_mode="always_last", show_progress="hidden")
        face.change(on_face, [face, *sliders], [current, *shown])
        upload.upload(on_upload, [upload, current, *sliders], [current, *shown])
        make_grid.click(on_grid, [current, over, steps, *sliders], [grid, message])
        blocks.load(on_sliders, [current, *sliders], shown)
    return blocks


def serve(explorer: Explorer, photos: Sequence[Path], port: int | None = None, open_browser: bool = False,
          log: Callable[[str], None] = print) -> None:
    """Serve the page on 127.0.0.1 (a free port unless given) until interrupted; prints its address."""
    # nothing leaves the machine: no telemetry, no hub look-ups, the theme's fonts from the system
    for name, value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                        ("HF_HUB_DISABLE_TELEMETRY", "1"), ("GRADIO_SSR_MODE", "False")):
        os.environ.setdefault(name, value)
    try:
        import gradio as gr
    except ImportError:
        raise ExploreError("fex explore needs gradio, which is not installed",
                           hint=f"install fex's ui extra: {INSTALL} (or pip install 'fex[ui]')") from None
    work = Path(tempfile.mkdtemp(prefix="fex-explore-"))
    blocks = page(explorer, photos, work)
    port = port or free_port()
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    blocks.queue(default_concurrency_limit=1)
    _, url, _ = blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                              footer_links=[], allowed_paths=[str(work)], theme=theme, show_error=True)
    log(f"fex explore: {url}  ({explorer.description}; Ctrl+C stops it)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        blocks.block_thread()
    finally:
        blocks.close()
