"""User-facing error types: each carries one line saying what is wrong, where, and what to do."""
from __future__ import annotations

import re


class GMGError(Exception):
    """Base class for errors caused by user input (bad files, bad options, bad shapes).

    CLIs print ``str(err)`` as one line and exit with code 2; they never show a traceback for these.
    """


class ConfigError(GMGError, ValueError):
    """A model configuration violates the architecture's constraints."""


class CheckpointError(GMGError, ValueError):
    """A checkpoint cannot be read, is refused as unsafe, or does not match the configuration."""


class InputError(GMGError, ValueError):
    """Input data (frames, state, options) has the wrong shape, dtype or values."""


class ServeError(GMGError, RuntimeError):
    """A model server cannot be found, started or reached, or it refused a request."""


class PrecisionError(GMGError, ValueError):
    """A graph cannot be converted to the asked precision (wrong input, unknown option)."""


class CalibrationError(GMGError, ValueError):
    """Calibration input or a ranges file does not fit the graph."""


class BuildError(GMGError, ValueError):
    """A build request that cannot work (bad batch range, graph without metadata, no TensorRT)."""


class TensorRTCompatError(GMGError, ValueError):
    """An ONNX graph uses an operator or attribute the TensorRT ONNX parser does not support."""


class MetadataError(GMGError, ValueError):
    """An ONNX file lacks gmg-deploy metadata or it does not fit what is asked of it."""


class GraphFileError(MetadataError, PrecisionError, TensorRTCompatError, BuildError, CalibrationError):
    """An ONNX file that cannot be read: missing, not a file, not ONNX, or its weights unreadable.

    The one error of :func:`gmg_deploy.graph.onnx_file.load_onnx`; it is each stage's own error class too,
    so a caller catching the error of the stage it called still catches it.
    """


class OutputError(GMGError, OSError):
    """An output file cannot be written (missing folder, no permission, exists without --force)."""


class SourceError(InputError):
    """A video source cannot be opened or failed while decoding."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every "keep what was processed" path runs; exit 143."""


def error_reason(e: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, at most ``limit`` characters, without C++ source locations."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    text = re.sub(r"\S+\.(?:h|hpp|cc|cpp|cu):\d+\s+(?:\S+::\S+\(.*?\)\s+)?", "", str(text))
    return " ".join(text.split())[:limit]
