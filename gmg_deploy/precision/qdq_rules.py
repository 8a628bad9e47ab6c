"""Which tensors the INT8 passes quantize, and how weights are quantized: the one rule both Q/DQ targets and calibration use."""
from __future__ import annotations

from typing import Any

import numpy as np

from gmg_deploy.graph.index import GraphIndex

#: Ops whose activation inputs get Q/DQ (and whose inputs calibration observes).
QUANT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: Ops whose outputs the ``cpu`` target quantizes (ORT fuses DQ -> op -> Q into QLinearConv/QLinearMatMul/QGemm).
OUTPUT_QUANT_OPS = ("Conv", "MatMul", "Gemm")
QMAX = 127


def activation_inputs(node: Any, index: GraphIndex) -> list[tuple[int, str]]:
    """``(input index, tensor)`` of each activation quantized on ``node``: the data input of Conv/ConvTranspose,
    both operands of MatMul/Gemm; weights (initializers, Constant outputs) excluded. Empty for other ops."""
    if node.op_type not in QUANT_OPS:
        return []
    idxs = (0,) if node.op_type in ("Conv", "ConvTranspose") else (0, 1)
    return [(k, node.input[k]) for k in idxs if node.input[k] and not index.is_static(node.input[k])]


def quantizable_inputs(model: Any, index: GraphIndex | None = None) -> list[str]:
    """Names of the activation tensors that feed Conv/ConvTranspose/MatMul/Gemm (weights excluded), in graph order."""
    index = index or GraphIndex(model.graph)
    out: dict[str, None] = {}
    for n in model.graph.node:
        for _, t in activation_inputs(n, index):
            out.setdefault(t, None)
    return list(out)


def quantizable_outputs(model: Any) -> list[str]:
    """Names of the outputs of Conv/MatMul/Gemm nodes (the ``cpu`` target's extra quantized tensors)."""
    return [n.output[0] for n in model.graph.node if n.op_type in OUTPUT_QUANT_OPS]


def comes_from_softmax(tensor: str, index: GraphIndex) -> bool:
    """Whether ``tensor`` is a Softmax output (attention probabilities), possibly through layout-only ops."""
    src = index.source(tensor)
    return src is not None and src.op_type == "Softmax"


def weight_axis(node: Any) -> int:
    """The output-channel axis of ``node``'s weight (input 1)."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1  # MatMul (K, N)


def quantize_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per-channel (along ``axis``) quantization of ``w``: ``(int8 values, float32 scales)``."""
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis])
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale
