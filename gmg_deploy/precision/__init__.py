"""Floor 6, stage precision - FP16 with FP32 islands, INT8 calibration over rollouts, Q/DQ (tensorrt, cpu).

Imports floors 0-5 (calibration rolls graphs out with ``evaluate``).

Public API: :func:`calibrate` (-> ranges document) and :func:`convert` (FP32 graph file -> FP16/INT8 file).
"""
from gmg_deploy.precision.api import PRECISIONS, apply_precision, calibrate, convert
from gmg_deploy.precision.qdq import quantize_graph

__all__ = ["PRECISIONS", "apply_precision", "calibrate", "convert", "quantize_graph"]
