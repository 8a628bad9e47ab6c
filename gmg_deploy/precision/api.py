"""The precision stage's public calls: calibrate a step graph, convert a graph file to FP16 or INT8."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from gmg_deploy.graph.onnx_file import load_onnx
from gmg_deploy.precision.fp16 import PrecisionError

PRECISIONS = ("fp32", "fp16", "int8")


def _load(model: str | Path | Any, what: str) -> Any:
    """``model`` as an ``onnx.ModelProto`` (a path is read, weights included; a proto is used as is). Its
    :class:`~gmg_deploy.errors.GraphFileError` is a PrecisionError and a CalibrationError."""
    return load_onnx(model, what=what)


def calibrate(
    step_onnx: str | Path | Any,
    frames: np.ndarray,
    *,
    method: str = "minmax",
    batch_size: int = 8,
    keep_float: str | list[str] = "default",
    output: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    threads: int | None = 1,
    spin: bool = True,
) -> dict[str, Any]:
    """INT8 ranges of the FP32 step graph ``step_onnx`` (path or ModelProto) over rollouts of ``frames``
    ``(N, T>=pre, C, H, W)``; written atomically to ``output`` when given. See :mod:`gmg_deploy.precision.ranges`."""
    from gmg_deploy.precision.ranges import collect_ranges, save_ranges

    doc = collect_ranges(_load(step_onnx, "step graph"), frames, method=method, batch_size=batch_size,
                         keep_float=keep_float, progress=progress, threads=threads, spin=spin)
    if output is not None:
        save_ranges(doc, output)
    return doc


def apply_precision(proto: Any, precision: str, calibration: str | Path | dict[str, Any] | None = None,
                    io_fp16: bool = False, state_dtype: str = "fp32", target: str = "tensorrt") -> Any:
    """The FP32 graph ``proto`` converted to ``precision`` (returned unchanged for fp32); ``calibration`` is
    a ranges file path or a ranges document (int8)."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return proto
    if precision == "fp16":
        from gmg_deploy.precision.fp16 import convert_to_fp16

        return convert_to_fp16(proto, io_fp16=io_fp16, state_dtype=state_dtype)
    from gmg_deploy.precision.qdq import quantize_graph
    from gmg_deploy.precision.ranges import CalibrationError, load_ranges

    if calibration is None:
        raise CalibrationError("INT8 needs calibration ranges (a ranges file or the document calibrate() returns)")
    if isinstance(calibration, dict):
        return quantize_graph(proto, calibration, where="ranges", target=target)
    return quantize_graph(proto, load_ranges(calibration), where=f"ranges file {calibration}", target=target)


def convert(
    src_onnx: str | Path | Any,
    dst_onnx: str | Path,
    precision: str = "fp16",
    ranges: str | Path | dict[str, Any] | None = None,
    *,
    target: str = "tensorrt",
    io_fp16: bool = False,
    state_dtype: str = "fp32",
) -> Path:
    """Write the FP32 graph ``src_onnx`` (path or ModelProto) converted to ``precision`` to ``dst_onnx``.

    ``ranges``: for int8, a ranges file or the document :func:`calibrate` returns; ``target``: ``tensorrt``
    or ``cpu`` (int8 layout). ``io_fp16``/``state_dtype``: fp16 graph I/O. The write is atomic; on any
    failure ``dst_onnx`` is left absent (also when ``dst_onnx`` is ``src_onnx``: never an FP32 file where a
    reduced-precision one was asked).
    """
    from gmg_deploy.io import atomic_write_bytes

    dst = Path(dst_onnx)
    if precision != "int8" and ranges is not None:
        raise PrecisionError("ranges are only used with precision='int8'")
    if precision != "int8" and target != "tensorrt":
        raise PrecisionError(f"target={target!r} applies to precision='int8' only")
    try:
        proto = apply_precision(_load(src_onnx, "FP32 graph"), precision, ranges, io_fp16, state_dtype, target)
    except Exception:
        if isinstance(src_onnx, (str, Path)) and Path(src_onnx).resolve() == dst.resolve():
            dst.unlink(missing_ok=True)
        raise
    atomic_write_bytes(dst, proto.SerializeToString())
    return dst
