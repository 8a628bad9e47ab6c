"""Stage: precision - FP16 with FP32 islands, INT8 calibration ranges over rollouts, Q/DQ (tensorrt and cpu targets).

Public API: :func:`calibrate` (-> ranges document) and :func:`convert` (FP32 graph file -> FP16/INT8 file).
"""
from gmg_deploy.precision.api import PRECISIONS, apply_precision, calibrate, convert
from gmg_deploy.precision.qdq import quantize_graph

__all__ = ["PRECISIONS", "apply_precision", "calibrate", "convert", "quantize_graph"]
