"""INT8 graph pass: the one entry point, :func:`quantize_graph`, dispatching to the target's Q/DQ layout.

``target="tensorrt"`` (:mod:`gmg_deploy.precision.qdq_tensorrt`): symmetric int8 Q/DQ on the inputs of Conv,
ConvTranspose, MatMul and Gemm, for TensorRT's explicit quantization. ``target="cpu"``
(:mod:`gmg_deploy.precision.qdq_cpu`): the layout ONNX Runtime CPU runs with integer kernels. Both share
:mod:`gmg_deploy.precision.qdq_common`.
"""
from __future__ import annotations

from typing import Any, Iterable

from gmg_deploy.precision.qdq_common import finish_graph, keep_float_nodes, stamp_int8  # noqa: F401 (re-exported)
from gmg_deploy.precision.qdq_cpu import quantize_graph_cpu
from gmg_deploy.precision.qdq_tensorrt import quantize_graph_tensorrt
from gmg_deploy.errors import CalibrationError
from gmg_deploy.precision.ranges_file import check_ranges_match
from gmg_deploy.precision.source_graph import fp32_source

TARGETS = ("tensorrt", "cpu")


def quantize_graph(
    model: Any,
    ranges: dict[str, Any],
    *,
    skip_softmax_operands: bool = True,
    keep_float: Iterable[str] = (),
    where: str = "ranges file",
    target: str = "tensorrt",
) -> Any:
    """Return an INT8 Q/DQ copy of the FP32 graph ``model`` using calibrated ``ranges`` (a ranges document).

    ``skip_softmax_operands`` leaves attention-probability inputs of MatMul (a Softmax output: values in
    [0, 1], mostly far below one int8 step) in float. ``keep_float`` names nodes (e.g. from the ranges
    file's sensitivity analysis) that stay entirely float: no Q/DQ on their activation or weight.
    ``target``: ``"tensorrt"`` (this module's symmetric layout) or ``"cpu"`` (ORT CPU integer kernels).
    """
    meta = fp32_source(model, what="INT8 quantization", error=CalibrationError)
    if target not in TARGETS:
        raise CalibrationError(f"INT8 target {target!r} is unknown; choose one of {', '.join(TARGETS)}")
    check_ranges_match(ranges, model, where, meta=meta)
    quantize = quantize_graph_cpu if target == "cpu" else quantize_graph_tensorrt
    return quantize(model, meta, ranges, skip_softmax_operands=skip_softmax_operands, keep_float=keep_float,
                    where=where)
