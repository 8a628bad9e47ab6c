"""Lint an ONNX graph against the TensorRT 10/11 ONNX parser's operator support (no TensorRT needed).

The allowlist and restrictions follow onnx-tensorrt's ``docs/operators.md`` (operator support matrix of the
10.x parser), plus this toolkit's own rules for deployable graphs: no control flow (``Loop``, ``If``,
``Scan``: graphs must be unrolled), no DOUBLE tensors. Q/DQ (added by a later precision stage) must have
zero zero-points and constant scales; per-channel quantisation only on constant weights. An INT8 graph
whose metadata records ``calibration.target == "cpu"`` (the ONNX Runtime CPU layout) is refused outright.
GridSample in a graph of opset >= 20 is refused: opset 20 renamed its modes to ``linear``/``cubic`` and the
TensorRT importer silently reads them as nearest (TensorRT issue #4646); export at opset 16-19.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gmg_deploy.errors import MetadataError, TensorRTCompatError
from gmg_deploy.graph.metadata import GraphMetadata, MetadataLike, as_metadata
from gmg_deploy.graph.onnx_file import load_onnx

#: ONNX ops the TensorRT 10 parser converts (operator matrix, "Y" rows).
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid
HardSwish Hardmax Identity InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax LpNormalization LpPool LRN LSTM MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
RoiAlign Round ScaledTanh Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
Trilu Unsqueeze Upsample Where Xor
""".split())
#: Supported by the parser but refused in a deployable gmg-deploy graph (must be unrolled).
CONTROL_FLOW = frozenset({"Loop", "If", "Scan"})
_CAST_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT32, TensorProto.INT64,
               TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL}
_RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_MODES = {"nearest", "linear"}
_GRIDSAMPLE_MODES = {"bilinear", "linear", "nearest"}
_GRIDSAMPLE_PADDING = {"zeros", "border", "reflection"}
#: First opset whose GridSample modes TensorRT misreads (issue #4646).
GRIDSAMPLE_BAD_OPSET = 20
#: inputs (index) that must be constant for an op
_CONST_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "CumSum": (1,), "Slice": (3,), "Squeeze": (1,),
                 "Unsqueeze": (1,), "TopK": (1,), "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}


@dataclass(frozen=True)
class Finding:
    """One problem: the node's name, its op type, and why."""

    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.reason}"


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _load(model_or_path: Any) -> tuple[onnx.ModelProto, str]:
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, "ONNX model"
    return load_onnx(model_or_path), str(model_or_path)  # GraphFileError is a TensorRTCompatError


def lint(model: onnx.ModelProto) -> list[Finding]:
    """All findings for ``model`` (empty: every node passes)."""
    g = model.graph
    consts = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = n.attribute[0].t
    for n in g.node:  # int8 weights: DequantizeLinear of an initializer is a constant weight for TensorRT
        if n.op_type == "DequantizeLinear" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    out: list[Finding] = []
    opset = graph_opset(model)
    for t in g.initializer:
        if t.data_type == TensorProto.DOUBLE:
            out.append(Finding(t.name, "initializer", "DOUBLE tensor; TensorRT casts it down - store float32"))
    for i, n in enumerate(g.node):
        name = n.name or f"#{i}:{n.output[0] if n.output else ''}"
        op = n.op_type
        bad = lambda reason: out.append(Finding(name, op, reason))  # noqa: E731
        if n.domain not in ("", "ai.onnx"):
            bad(f"custom domain '{n.domain}' needs a TensorRT plugin")
            continue
        if op in CONTROL_FLOW:
            bad("control flow is not allowed in a deployable graph; unroll it (gmg-export --graph sequence)")
            continue
        if op not in SUPPORTED_OPS:
            bad("not supported by the TensorRT ONNX parser")
            continue
        for k in _CONST_INPUTS.get(op, ()):
            if k < len(n.input) and n.input[k] and n.input[k] not in consts:
                bad(f"input {k} ('{n.input[k]}') must be a constant initializer for TensorRT")
        if op == "Cast" and _attr(n, "to") not in _CAST_TYPES:
            bad(f"Cast to {TensorProto.DataType.Name(_attr(n, 'to'))} is not supported (use float32/float16)")
        elif op == "GridSample":
            if opset >= GRIDSAMPLE_BAD_OPSET:
                bad(f"opset {opset} renamed GridSample's modes and TensorRT reads them as nearest "
                    "(TensorRT issue #4646); export with --opset 17")
            mode = _attr(n, "mode", "bilinear")
            if mode not in _GRIDSAMPLE_MODES:
                bad(f"mode={mode!r} is not supported; use bilinear or nearest")
            pad = _attr(n, "padding_mode", "zeros")
            if pad not in _GRIDSAMPLE_PADDING:
                bad(f"padding_mode={pad!r} is not supported")
        elif op == "Resize":
            mode = _attr(n, "mode", "nearest")
            coord = _attr(n, "coordinate_transformation_mode", "half_pixel")
            if mode not in _RESIZE_MODES:
                bad(f"mode={mode!r} is not supported; use nearest or linear")
            if coord not in _RESIZE_COORD:
                bad(f"coordinate_transformation_mode={coord!r} is not supported")
        elif op == "DepthToSpace" and _attr(n, "mode", "DCR") not in ("DCR", "CRD"):
            bad(f"mode={_attr(n, 'mode')!r} is not DCR or CRD")
        elif op in ("Conv", "ConvTranspose") and n.input[1] in consts:
            rank = len(consts[n.input[1]].dims)
            if rank not in (4, 5):
                bad(f"{rank - 2}D convolution; TensorRT supports 2D or 3D only")
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(n, consts, bad)
    return out


def graph_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports (0 when none is declared)."""
    return max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _check_qdq(n: onnx.NodeProto, consts: dict, bad) -> None:
    if len(n.input) > 2 and n.input[2] and n.input[2] in consts:
        zp = numpy_helper.to_array(consts[n.input[2]])
        if np.any(zp != 0):
            bad("zero point must be 0 (TensorRT supports symmetric quantisation only)")
    if n.input[1] in consts:
        scale = numpy_helper.to_array(consts[n.input[1]])
        if scale.ndim == 1 and scale.size > 1:
            if n.op_type == "DequantizeLinear" and n.input[0] not in consts:
                bad("per-channel scale on a non-constant input; TensorRT quantises activations per tensor")
            if _attr(n, "axis", 1) not in (0, 1):
                bad(f"per-channel axis={_attr(n, 'axis')} must be the channel axis 0 or 1")
        elif scale.ndim > 1 and _attr(n, "block_size") is None:
            bad(f"scale of rank {scale.ndim} without block_size is not supported")


def refuse_cpu_int8(meta: MetadataLike | None, where: str) -> None:
    """Raise :class:`TensorRTCompatError` (one line) when ``meta`` describes an INT8 graph made for ORT CPU."""
    if meta is None:
        return
    meta = as_metadata(meta, where)
    if meta.precision == "int8" and (meta.calibration or {}).get("target") == "cpu":
        raise TensorRTCompatError(
            f"{where} is an INT8 graph for ONNX Runtime CPU (--target cpu: uint8 zero points); TensorRT needs "
            "the symmetric layout: re-export with gmg-export --precision int8 --target tensorrt"
        )


def _gmg_metadata(model: onnx.ModelProto, where: str) -> GraphMetadata | None:
    """The graph's metadata, or None when it has none or it is unreadable (the lint does not need it)."""
    try:
        return GraphMetadata.from_proto(model, where)
    except MetadataError:
        return None


def check_tensorrt_compat(model_or_path: Any, *, raise_on_error: bool = True) -> list[Finding]:
    """Lint a model (``onnx.ModelProto`` or path). Returns the findings; raises
    :class:`TensorRTCompatError` naming the first offending node when there are any and ``raise_on_error``."""
    model, where = _load(model_or_path)
    findings = lint(model)
    try:
        refuse_cpu_int8(_gmg_metadata(model, where), where)
    except TensorRTCompatError as e:
        if raise_on_error:
            raise
        findings.insert(0, Finding("graph", "metadata", str(e)))
    if findings and raise_on_error:
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        raise TensorRTCompatError(f"{where}: {findings[0]}{more}; TensorRT 10/11 cannot build this graph")
    return findings
