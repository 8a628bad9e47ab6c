"""The graph every precision pass starts from: an FP32 graph (a step graph for calibration), checked in one place."""
from __future__ import annotations

from typing import Any

from gmg_deploy.graph.metadata import GraphMetadata


def fp32_source(model: Any, *, what: str, error: type[Exception], step: bool = False) -> GraphMetadata:
    """The metadata of ``model`` (an ``onnx.ModelProto``, or its :class:`GraphMetadata`), parsed once; raises one
    ``error`` line when ``what`` (``"FP16 conversion"``, ``"INT8 quantization"``, ``"calibration"``) cannot
    start from it: a graph already reduced to FP16/INT8, or (``step=True``) a graph that is not a step graph."""
    meta = model if isinstance(model, GraphMetadata) else GraphMetadata.from_proto(model)
    if step and meta.graph != "step":
        raise error(f"{what} needs a step graph (state_in/state_out); export with --graph step")
    if meta.precision != "fp32":
        raise error(f"{what} needs the FP32 graph; this one is already {meta.precision}: convert an FP32 export")
    return meta
