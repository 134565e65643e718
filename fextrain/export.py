"""`fex export RUN --format onnx`: a run's generator as one ONNX file, and that file run by onnxruntime.

The graph is the model's `edit` (the registry's one inference interface, fextrain/models/base.py), so every
registered model exports the same way, with a dynamic batch B:

    image     float32 [B, 3, S, S]  an aligned face crop made by the recorded recipe, RGB in [-1, 1], NCHW
    source    float32 [B, K]        the source affect vector, in the `fex.affects` order
    target    float32 [B, K]        the target affect vector: one-hot, mixed or scaled (ExprGAN: its length
                                    is the intensity)
    identity  float32 [B, N_i]      identity-editing models (degan) only: weights over `fex.identities`
    edited    float32 [B, 3, S, S]  the output, RGB in [-1, 1]

Every input stays in the graph whether the model reads it or not (StarGAN and ExprGAN ignore `source`,
DE-GAN both affect vectors), so a caller feeds every file the same way. The file's metadata_props (`fex.*`,
all strings, JSON where structured) carry what a caller needs besides: affects, crop recipe, size, model,
step, ranges, the run's config. docs/export.md describes them for onnxruntime and game engines.

Export needs torch, onnx and onnxscript; `load_onnx` and `OnnxEditor` need only onnxruntime and numpy, never
torch (`fex edit MODEL.onnx` runs its network through them).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from fexdata.errors import FexError
from fexdata.paths import atomic_write_bytes

FORMAT = 1  # of the fex.* metadata; raised when a key changes meaning
INPUTS = ("image", "source", "target")
IDENTITY = "identity"
OUTPUT = "edited"
# Max abs difference allowed between onnxruntime's output and torch's (fp32, CPU); measured up to 7e-6
# on the tiny models of every registered architecture (docs/export.md).
TOLERANCE = 1e-4
INSTALL = ("install the extra: pip install 'fex[onnx]' (in a fex checkout: "
           ".venv/bin/python -m pip install --no-deps --require-hashes -r requirements-onnx.lock)")


class ExportError(FexError):
    """A run that cannot be exported, or an ONNX file that cannot be run."""


def _require(*modules: str) -> None:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX support needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          "not installed", hint=INSTALL)


def _ranges(affects: int, identities: int) -> dict[str, Any]:
    """The tensors' shapes and value ranges, as recorded in `fex.inputs` / `fex.outputs`."""
    vec = {"shape": ["batch", affects], "range": [0.0, 2.0], "layout": "fex.affects order; weights add up to at most 2"}
    inputs = {"image": {"shape": ["batch", 3, "size", "size"], "range": [-1.0, 1.0], "layout": "NCHW, RGB"},
              "source": vec, "target": vec}
    if identities:
        inputs[IDENTITY] = {"shape": ["batch", identities], "range": [0.0, 1.0],
                            "layout": "fex.identities order; weights adding up to 1 (one-hot: one identity)"}
    return {"inputs": inputs, "outputs": {OUTPUT: {"shape": ["batch", 3, "size", "size"], "range": [-1.0, 1.0],
                                                   "layout": "NCHW, RGB"}}}


def default_path(run: Path) -> Path:
    """RUN/generator.onnx for a run folder; beside an exported generator.safetensors otherwise."""
    return run / "generator.onnx" if run.is_dir() else run.with_suffix(".onnx")


def export_onnx(run: str | os.PathLike, out: str | os.PathLike | None = None, *,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the generator of `run` (a run folder or its generator.safetensors) to `out` as ONNX, checked
    against torch with onnxruntime; returns a summary (path, model, step, opset, max_abs_diff, ...)."""
    run = Path(run)
    if not run.exists():
        raise ExportError(f"{run}: no such run", hint="pass a `fex train --out` folder or its generator.safetensors")
    _require("onnx", "onnxscript", "onnxruntime")
    from fextrain.edit.recipe import resolve_recipe
    from fextrain.models import load_editor

    editor = load_editor(run, "cpu")
    try:
        recipe = resolve_recipe(editor.config, run, editor.size, {})[0].to_dict()
    except FexError as exc:
        recipe = None
        log(f"note: the file records no crop recipe ({exc}); give `fex edit` the ingest options (--align, "
            "--crop-size, ...)")
    data, summary = onnx_bytes(editor, recipe)
    out = Path(out) if out is not None else default_path(run)
    atomic_write_bytes(out, data)
    return {"path": str(out), **summary, "recipe": recipe is not None}


def onnx_bytes(editor: Any, recipe: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """The serialized ONNX model of an Editor's generator (fextrain.models.Editor) with fex's metadata, checked
    by onnx's checker and against torch with onnxruntime (ExportError beyond TOLERANCE); and a summary."""
    _require("onnx", "onnxscript", "onnxruntime")
    import onnx
    import torch

    from fexdata.versions import versions

    identities = len(editor.identities) if editor.gan.identity_edit else 0
    graph = _graph_class()(editor.gan).eval()
    example = _example(2, editor.size, len(editor.affects), identities, seed=0)
    batch = torch.export.Dim("batch", min=1, max=65536)
    names = [*INPUTS, *([IDENTITY] if identities else [])]
    with torch.no_grad(), _quiet():
        # Strict tracing (TorchDynamo): the non-strict default turns a `len(x)` in a model (DE-GAN's noise)
        # into the example's batch size, and the file would then take only that batch.
        program = torch.export.export(graph, tuple(torch.from_numpy(a) for a in example),
                                      dynamic_shapes=tuple({0: batch} for _ in example), strict=True)
        onnx_program = torch.onnx.export(program, dynamo=True, input_names=names, output_names=[OUTPUT],
                                         external_data=False, verbose=False)
    model = onnx_program.model_proto
    for value in [*model.graph.input, *model.graph.output]:
        # Inputs a model ignores are not tied to the batch by any op, and keep the example's size.
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    config = {**editor.config, **({"recipe": recipe} if recipe else {})}   # needs neither run folder nor manifest
    meta = {"fex.format": FORMAT, "fex.version": versions()["fex"], "fex.model": editor.model,
            "fex.step": editor.step, "fex.size": editor.size, "fex.affects": list(editor.affects),
            "fex.identities": list(editor.identities) if identities else [], "fex.recipe": recipe,
            **{f"fex.{k}": v for k, v in _ranges(len(editor.affects), identities).items()},
            "fex.exporter": f"torch {torch.__version__} (torch.export strict, torch.onnx dynamo), "
                            f"onnxscript {importlib.metadata.version('onnxscript')}, opset {opset}",
            "fex.config": config}
    for key, value in meta.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    model.doc_string = (f"fex {editor.model} generator at step {editor.step}: an aligned {editor.size}px face crop "
                        f"and affect vectors in, the edited crop out (metadata fex.*; docs/export.md)")
    data = model.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    diff = _check_against_torch(data, editor, identities)
    if diff > TOLERANCE:
        raise ExportError(f"onnxruntime's output differs from torch's by up to {diff:.2g} (more than {TOLERANCE:g})",
                          hint="report this with the run's model name and the versions in `fex --version`")
    return data, {"model": editor.model, "step": editor.step, "size": editor.size, "opset": opset, "inputs": names,
                  "bytes": len(data), "max_abs_diff": diff}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's own chatter off (its progress lines, "torchvision is not installed" warnings about ops no
    fex model uses, deprecation warnings from inside torch); its errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _graph_class() -> type:
    """The exported function as an nn.Module (built on first use, so importing this module needs no torch):
    `edit` with positional tensors, identity weights for identity-editing models."""
    from torch import nn

    class Graph(nn.Module):
        def __init__(self, gan: Any) -> None:
            super().__init__()
            self.gan = gan

        def forward(self, image, source, target, identity=None):
            if identity is None:
                return self.gan.edit(image, source, target)
            return self.gan.edit(image, source, target, identity=identity)

    return Graph


def _example(n: int, size: int, affects: int, identities: int, seed: int) -> list[np.ndarray]:
    """Random inputs in range: crops in [-1, 1], affect vectors in [0, 1], identity weights adding up to 1."""
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1, 1, (n, 3, size, size)), rng.uniform(0, 1, (n, affects)), rng.uniform(0, 1, (n, affects))]
    if identities:
        w = rng.uniform(0, 1, (n, identities))
        arrays.append(w / w.sum(1, keepdims=True))
    return [a.astype(np.float32) for a in arrays]


def _check_against_torch(data: bytes, editor: Any, identities: int) -> float:
    """Max abs difference between onnxruntime's and torch's outputs on 3 random inputs (a batch the
    export's example did not have)."""
    import torch

    session = _session(data, "cpu", 1)
    feeds = _example(3, editor.size, len(editor.affects), identities, seed=1)
    got = session.run([OUTPUT], dict(zip([i.name for i in session.get_inputs()], feeds)))[0]
    with torch.no_grad():
        want = _graph_class()(editor.gan).eval()(*(torch.from_numpy(a) for a in feeds)).numpy()
    return float(np.abs(got - want).max())


def _session(model: str | bytes, device: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ExportError(f"--device {device}: this onnxruntime has no CUDA provider",
                              hint="use --device cpu, or install onnxruntime-gpu")
        index = int(device.partition(":")[2] or 0)
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ort.InferenceSession(model, options, providers=providers)


@dataclass
class OnnxGenerator:
    """The exported graph in an onnxruntime session (what `Editor.gan` is for a torch run)."""

    session: Any
    identity_edit: bool


@dataclass
class OnnxEditor:
    """An exported generator behind the Editor attributes `fex edit` reads; numpy in, numpy out."""

    gan: OnnxGenerator
    path: Path
    model: str
    affects: tuple[str, ...]
    size: int
    config: dict[str, Any]   # the run's config, with the crop recipe resolved at export
    identities: tuple[str, ...]
    step: int
    device: str
    has_discriminator: bool = False   # only the generator is exported: no affect head
    warps: bool = False   # only `edit` is exported, not a warping model's fields: paste-back uses the crop
    backend: str = "onnx"

    def edit(self, x: np.ndarray, source_vec: np.ndarray, target_vec: np.ndarray,
             identity: np.ndarray | None = None) -> np.ndarray:
        """x float32 NCHW in [-1, 1]; vectors [B, K] -> NCHW in [-1, 1]. `identity`: [B] indices into
        `identities` or [B, N_i] weights; None: the average train identity (as DE-GAN's torch edit)."""
        feeds = {"image": np.ascontiguousarray(x, np.float32), "source": np.asarray(source_vec, np.float32),
                 "target": np.asarray(target_vec, np.float32)}
        if self.gan.identity_edit:
            n, k = len(x), len(self.identities)
            if identity is None:
                weights = np.full((n, k), 1.0 / k, np.float32)
            elif np.ndim(identity) == 1:
                weights = np.eye(k, dtype=np.float32)[np.asarray(identity, np.int64)]
            else:
                weights = np.asarray(identity, np.float32)
            feeds[IDENTITY] = weights
        elif identity is not None:
            raise ExportError(f"model {self.model!r} edits expressions, not identities",
                              hint="leave --identity out, or use an export of an identity-editing model (degan)")
        return self.gan.session.run([OUTPUT], feeds)[0]

    def identity_index(self, name: str) -> int:
        if name not in self.identities:
            shown = ", ".join(self.identities[:10]) + (" ..." if len(self.identities) > 10 else "")
            raise ExportError(f"identity {name!r} is not one of this model's train identities: {shown}",
                              hint="name one of the identities in the file's fex.identities metadata")
        return self.identities.index(name)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The fex.* metadata of an exported file (JSON values decoded), without loading its weights into a session."""
    _require("onnx")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path}: not a readable ONNX file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                          hint="pass a file written by `fex export RUN --format onnx`") from None
    return _decode({p.key: p.value for p in model.metadata_props})


def _decode(props: dict[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in props.items():
        if key.startswith("fex."):
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value   # a plain string (fex.version, fex.exporter)
    return out


def load_onnx(path: str | os.PathLike, device: str = "cpu", threads: int = 1) -> OnnxEditor:
    """An OnnxEditor of a file written by `export_onnx`; needs onnxruntime only."""
    _require("onnxruntime")
    path = Path(path)
    try:
        session = _session(str(path), device, threads)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})",
                          hint="pass a file written by `fex export RUN --format onnx`") from None
    meta = _decode(session.get_modelmeta().custom_metadata_map)
    missing = [k for k in ("fex.format", "fex.model", "fex.size", "fex.affects") if k not in meta]
    if missing:
        raise ExportError(f"{path}: an ONNX file without fex's metadata ({', '.join(missing)})",
                          hint="pass a file written by `fex export RUN --format onnx`")
    if int(meta["fex.format"]) > FORMAT:
        raise ExportError(f"{path}: written by a newer fex (metadata format {meta['fex.format']}, this fex reads "
                          f"{FORMAT})", hint="update fex")
    identities = tuple(meta.get("fex.identities") or ())
    takes_identity = IDENTITY in {i.name for i in session.get_inputs()}
    config = dict(meta.get("fex.config") or {"model": meta["fex.model"], "affects": meta["fex.affects"],
                                             "size": meta["fex.size"]})
    if meta.get("fex.recipe"):
        config["recipe"] = meta["fex.recipe"]
    return OnnxEditor(gan=OnnxGenerator(session, takes_identity), path=path, model=str(meta["fex.model"]),
                      affects=tuple(meta["fex.affects"]), size=int(meta["fex.size"]), config=config,
                      identities=identities, step=int(meta.get("fex.step", 0)), device=device)


__all__ = ["ExportError", "OnnxEditor", "TOLERANCE", "default_path", "export_onnx", "load_onnx", "read_metadata"]
