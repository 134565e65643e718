"""The versions of fex and of the libraries whose changes move its outputs.

`fex --version` prints them and every run's config records them, so a figure or a crop can be traced
to the environment that made it (OpenCV 5.x's float warps move crops by up to 3 levels on about 11 % of
pixels; see docs/install.md).
"""
from __future__ import annotations

import importlib.metadata
import platform


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _module_version(module: str, attr: str = "__version__") -> str:
    try:
        return str(getattr(__import__(module), attr))
    except Exception as exc:  # a broken optional library must not hide the others' versions
        return f"unavailable ({type(exc).__name__})"


def _ffmpeg_version() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_version()
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"


def versions() -> dict[str, str]:
    """Name -> version string, in a fixed order; never raises."""
    return {
        "fex": _dist_version("fex"),
        "python": platform.python_version(),
        "torch": _module_version("torch"),
        "opencv": _module_version("cv2"),
        "dlib": _module_version("dlib"),
        "numpy": _module_version("numpy"),
        "pandas": _module_version("pandas"),
        "pyarrow": _module_version("pyarrow"),
        "ffmpeg": _ffmpeg_version(),
    }
