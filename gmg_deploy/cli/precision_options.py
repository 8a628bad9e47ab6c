"""``gmg-export``'s precision options: parsing and validation only (the conversion is :mod:`gmg_deploy.precision`).

``--precision fp32|fp16|int8``, ``--calibration ranges.json`` and ``--target tensorrt|cpu`` (int8), ``--io-fp16`` and
``--state-dtype fp16|fp32`` (fp16); :func:`gmg_deploy.precision.apply_precision` takes them as keywords.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from gmg_deploy.errors import InputError

def precision_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the precision options to a click command."""
    fn = click.option("--target", type=click.Choice(["tensorrt", "cpu"]), default="tensorrt", show_default=True,
                      help="INT8 layout: tensorrt (symmetric int8 Q/DQ on Conv/MatMul inputs, for gmg-build) or "
                           "cpu (uint8 activations, int8 per-channel weights, outputs quantized too: ONNX Runtime "
                           "CPU fuses QLinearConv/QLinearMatMul; not buildable with TensorRT).")(fn)
    fn = click.option("--state-dtype", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                      help="FP16 graphs: dtype of state_in.*/state_out.*.")(fn)
    fn = click.option("--io-fp16", is_flag=True, help="FP16 graphs: frame input/output in FP16 (default FP32, cast inside).")(fn)
    fn = click.option("--calibration", type=click.Path(dir_okay=False), default=None,
                      help="INT8: ranges file from gmg-calibrate (same checkpoint, warp and batch mode).")(fn)
    fn = click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
                      help="fp16: FP16 with FP32 islands (warp coordinates + GridSample, softmax, growth exp); "
                           "int8: Q/DQ on Conv/ConvTranspose/MatMul/Gemm inputs (needs --calibration).")(fn)
    return fn


def check_precision_options(precision: str, calibration: str | None, io_fp16: bool, state_dtype: str,
                            graph: str = "step", target: str = "tensorrt") -> None:
    """Validate the combination before any long work starts."""
    if precision != "int8" and target != "tensorrt":
        raise InputError(f"--target {target} applies to --precision int8 only")
    if precision == "int8" and calibration is None:
        raise InputError("--precision int8 needs --calibration ranges.json (make it with gmg-calibrate)")
    if precision != "int8" and calibration is not None:
        raise InputError("--calibration is only used with --precision int8")
    if precision == "int8" and graph not in ("step", "forecast"):
        raise InputError("--precision int8 needs --graph step or forecast (ranges are calibrated on the step graph)")
    if precision != "fp16" and (io_fp16 or state_dtype != "fp32"):
        raise InputError("--io-fp16 and --state-dtype fp16 apply to --precision fp16 only")
