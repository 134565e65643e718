"""The run's model behind `fex edit`: loaded through the registry's one inference interface, run in batches.

Any registered model works the same way (`Editor.edit(x, source_vec, target_vec)`, `Editor.classify(x)`;
`identity=` for the models that draw a chosen train identity); nothing here knows an architecture. On CUDA the forward runs under bf16 autocast in channels_last memory;
on CPU in float32. A `.onnx` file (`fex export`) runs on onnxruntime instead (fextrain.export.OnnxEditor), in float32.

torch is imported where a torch model is used, not when this module is, so an .onnx file's edits can run
without it.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from fexdata.errors import EditError
from fextrain.pixels import to_uint8, to_unit_range

if TYPE_CHECKING:
    import torch


def load_model(path: str | Path, device: str) -> Any:
    """The Editor (fextrain.models.load_editor) of a run directory or an exported generator.safetensors, or the
    OnnxEditor (fextrain.export.load_onnx) of a `fex export` .onnx file."""
    path = Path(path)
    if not path.exists():
        raise EditError(f"{path}: no such run", hint="pass a `fex train --out` folder, its generator.safetensors "
                                                     "or a `fex export` .onnx file")
    if path.suffix.lower() == ".onnx":
        import cv2

        from fextrain.export import load_onnx

        # `fex edit --threads` sizes OpenCV's pool and torch's alike (cli/edit.py); onnxruntime gets the same
        return load_onnx(path, str(device), cv2.getNumThreads())
    from fextrain.models import load_editor

    return load_editor(path, device)


def _inference(method: Callable) -> Callable:
    """A BatchModel method run under torch.inference_mode(), torch imported on its first call."""
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return method(*args, **kwargs)
    return run


class BatchModel:
    """uint8 crops in, uint8 crops out, `batch` faces per forward.

    `identity`: a train-identity index every face is drawn on, for identity-editing models (DE-GAN).
    """

    def __init__(self, editor: Any, batch: int = 16, identity: int | None = None) -> None:
        self.editor = editor
        self.batch = max(1, int(batch))
        self.identity = identity
        self.onnx = getattr(editor, "backend", "torch") == "onnx"   # numpy in and out, float32 (no autocast)
        if self.onnx:
            return
        import torch

        self.device = torch.device(editor.device)
        cuda = self.device.type == "cuda"
        self._amp = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
        self._channels_last = cuda

    def _input(self, crops: np.ndarray) -> torch.Tensor:
        import torch

        x = to_unit_range(torch.from_numpy(np.ascontiguousarray(crops)).to(self.device))
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def _autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=self._amp, enabled=self._amp is not None)

    def edit(self, crops: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """crops N x S x S x 3 uint8; source, target N x K float -> N x S x S x 3 uint8."""
        return (self._edit_onnx if self.onnx else self._edit_torch)(crops, source, target)

    @_inference
    def _edit_torch(self, crops: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty_like(crops)
        for i in range(0, len(crops), self.batch):
            sl = slice(i, i + self.batch)
            who = {} if self.identity is None else {"identity": torch.full((len(crops[sl]),), self.identity)}
            with self._autocast():
                y = self.editor.edit(self._input(crops[sl]), torch.as_tensor(source[sl], dtype=torch.float32),
                                     torch.as_tensor(target[sl], dtype=torch.float32), **who)
            out[sl] = to_uint8(y)
        return out

    def _edit_onnx(self, crops: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """`edit` on onnxruntime: the same [-1, 1] input and rounding as the torch path, in numpy."""
        out = np.empty_like(crops)
        for i in range(0, len(crops), self.batch):
            sl = slice(i, i + self.batch)
            x = to_unit_range(crops[sl])
            who = None if self.identity is None else np.full(len(x), self.identity)
            y = self.editor.edit(x, np.asarray(source[sl], np.float32), np.asarray(target[sl], np.float32), who)
            out[sl] = to_uint8(y)
        return out

    @property
    def warps(self) -> bool:
        """Whether `edit_with_fields` exists: the model warps, so paste-back can warp the full-resolution face."""
        return bool(getattr(self.editor, "warps", False))

    @_inference
    def edit_with_fields(self, crops: np.ndarray, source: np.ndarray,
                         target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A warping model's edits from one forward: (`edit`'s uint8 crops, N x S x S x 3 float32 fields: flow x,
        flow y, luminance change, for paste_warp)."""
        import torch

        out, fields = np.empty_like(crops), np.zeros((len(crops), self.editor.size, self.editor.size, 3), np.float32)
        for i in range(0, len(crops), self.batch):
            sl = slice(i, i + self.batch)
            with self._autocast():
                y, *parts = self.editor.warp_fields(self._input(crops[sl]),
                                                    torch.as_tensor(source[sl], dtype=torch.float32),
                                                    torch.as_tensor(target[sl], dtype=torch.float32))
            out[sl] = to_uint8(y)
            fields[sl] = torch.cat([p.float() for p in parts], 1).permute(0, 2, 3, 1).cpu().numpy()
        return out, fields

    def affect_probs(self, crops: np.ndarray) -> np.ndarray | None:
        """Softmax of the model's own affect head (its discriminator's), or None when it has none."""
        if not getattr(self.editor, "has_discriminator", True):
            return None
        return self._affect_probs(crops)

    @_inference
    def _affect_probs(self, crops: np.ndarray) -> np.ndarray | None:
        import torch

        outs = []
        for i in range(0, len(crops), self.batch):
            with self._autocast():
                logits = self.editor.classify(self._input(crops[i:i + self.batch]))
            if logits is None:
                return None
            outs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, len(self.editor.affects)), np.float32)
