"""Floor 4, stage export - a model to ONNX (step graph with explicit state, the unrolled sequence, the forecast).

Imports floors 0-3 (the contract it writes is :mod:`gmg_deploy.graph`).

Public API: :func:`export_model` (-> :class:`ExportResult`), :func:`read_metadata`,
:func:`check_tensorrt_compat`, and :class:`StepSignature` (the graphs' I/O contract: names, order,
shapes, dtypes).
"""
from gmg_deploy.export.api import ExportResult, build_proto, export_model
from gmg_deploy.graph.metadata import read_metadata
from gmg_deploy.graph.signature import StepSignature

__all__ = ["ExportResult", "StepSignature", "build_proto", "export_model", "read_metadata", "check_tensorrt_compat"]


def check_tensorrt_compat(model_or_path, *, raise_on_error: bool = True):
    """Lint an ONNX model (proto or path) against the TensorRT 10/11 ONNX parser's operator support."""
    from gmg_deploy.export.trt_lint import check_tensorrt_compat as _check

    return _check(model_or_path, raise_on_error=raise_on_error)
