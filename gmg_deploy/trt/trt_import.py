"""The only module that imports ``tensorrt``: one import with one clear error, and its version for reports."""
from __future__ import annotations

from typing import Any

from gmg_deploy.errors import InputError

#: Oldest TensorRT major version the build and runtime stages support (tensor API, strongly typed networks).
MIN_MAJOR = 10
INSTALL_HINT = ('pip install "gmg-deploy[trt]" (TensorRT wheels come from NVIDIA\'s own package index: see '
                "NVIDIA's TensorRT install guide) on a machine with an NVIDIA GPU")


def import_tensorrt(purpose: str = "TensorRT", alternative: str = "") -> Any:
    """``import tensorrt`` (10.x or newer), else one :class:`InputError` saying what needs it and how to get it.

    ``purpose`` names what needs it ("building an engine", "the TensorRT backend"); ``alternative``
    (optional) says what to do instead.
    """
    try:
        import tensorrt as trt

        _check_bindings(trt)
    except ImportError:
        tail = f"; or {alternative}" if alternative else ""
        raise InputError(f"{purpose} needs the 'tensorrt' Python package, which is not installed: "
                         f"{INSTALL_HINT}{tail}") from None
    if major_version(trt) < MIN_MAJOR:
        raise InputError(f"TensorRT {trt.__version__} is too old; {purpose} needs TensorRT {MIN_MAJOR} or newer")
    return trt


def _check_bindings(trt: Any) -> None:
    """A ``tensorrt`` without ``__version__`` is no TensorRT: e.g. the namespace package of a directory holding
    only type stubs (``tensorrt-stubs`` installed into site-packages); treat it as not installed."""
    if not hasattr(trt, "__version__"):
        raise ImportError("tensorrt has no __version__ (a namespace package, e.g. type stubs only)")


def major_version(trt: Any) -> int:
    """The major version of a ``tensorrt`` module (``"10.9.0.34"`` -> 10)."""
    return int(str(trt.__version__).split(".")[0])


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when ``tensorrt`` cannot be imported (any version, no error)."""
    try:
        import tensorrt as trt

        _check_bindings(trt)
    except Exception:
        return None
    return str(trt.__version__)
