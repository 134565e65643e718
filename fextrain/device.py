"""`--device` for every command (train, eval, edit, explore): one reading of auto, cpu, cuda and cuda:N.

torch is imported only to ask for CUDA, so an exported .onnx file edits where torch is not installed
(auto then picks the CPU).
"""
from __future__ import annotations

from fexdata.errors import FexError


def resolve_device(spec: str, error: type[FexError]) -> str:
    """'cpu', 'cuda' or 'cuda:N' for `spec`; `error` (the calling command's FexError subclass) for an unknown
    spec or CUDA asked for where torch sees none."""
    if spec not in ("auto", "cpu") and not spec.startswith("cuda"):
        raise error(f"unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        return spec
    try:
        import torch
    except ImportError:
        torch = None
    cuda = torch is not None and torch.cuda.is_available()
    if spec == "auto":
        return "cuda" if cuda else "cpu"
    if not cuda:
        raise error(f"--device {spec}: no CUDA device is visible to torch", hint="use --device cpu")
    return spec
