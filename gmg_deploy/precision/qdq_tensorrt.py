"""INT8 ``target="tensorrt"`` layout: symmetric Q/DQ pairs for TensorRT's explicit quantization.

Symmetric int8, zero points 0; per-tensor activation Q/DQ on the data inputs of Conv, ConvTranspose, MatMul
and Gemm (one pair per tensor, shared by all its quantized readers); weights stored as int8 initializers with a
per-channel DequantizeLinear (Conv: axis 0 of (Cout, Cin, k, k); ConvTranspose: axis 1 of (Cin, Cout, k, k);
MatMul ``(K, N)`` and Gemm without transB: axis 1; Gemm with transB: axis 0). Biases, the warp (GridSample and
its coordinates), Softmax, sigmoid/tanh gates and all elementwise arithmetic stay float. The result runs in ONNX
Runtime CPU (DQ then float op, slower than FP32) and in TensorRT (fused int8 kernels).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from gmg_deploy.graph.index import GraphIndex
from gmg_deploy.graph.metadata import MetadataLike, as_metadata
from gmg_deploy.precision.qdq_common import finish_graph, keep_float_nodes, stamp_int8
from gmg_deploy.precision.qdq_rules import (QMAX, QUANT_OPS, activation_inputs, comes_from_softmax, quantize_weight,
                                            weight_axis)


def quantize_graph_tensorrt(model: Any, meta: MetadataLike, ranges: dict[str, Any], *,
                            skip_softmax_operands: bool = True, keep_float: Iterable[str] = (),
                            where: str = "ranges file") -> Any:
    """The ``tensorrt`` layout of the checked FP32 graph ``model`` (metadata ``meta``) -> a new ModelProto."""
    import onnx

    meta = as_metadata(meta, "FP32 graph")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = keep_float_nodes(m.graph, keep_float, ranges, where)
    qdq = _SymmetricQdq(m.graph, ranges["tensors"])
    skipped = qdq.rewrite(keep, skip_softmax_operands)
    finish_graph(m.graph, list(m.graph.node), qdq.nodes, qdq.inits)
    return stamp_int8(m, meta, ranges, "tensorrt", activations_quantized=len(qdq.act_dq),
                      weights_quantized=len(qdq.w_dq), float_softmax_operands=len(skipped), float_nodes=sorted(keep))


class _SymmetricQdq:
    """The ``tensorrt`` layout's new Q/DQ nodes and initializers: one activation pair per tensor (symmetric int8,
    zero point 0, scale ``amax / 127``), one per-channel weight DequantizeLinear per (weight, axis)."""

    def __init__(self, graph: Any, tensors: dict[str, Any]) -> None:
        self.graph = graph
        self.tensors = tensors
        self.index = GraphIndex(graph)
        self.inits: list[Any] = []
        self.nodes: list[Any] = []
        self.act_dq: dict[str, str] = {}
        self.w_dq: dict[str, str] = {}

    def rewrite(self, keep: set[str], skip_softmax_operands: bool) -> list[str]:
        """Point every quantized input of every Conv/ConvTranspose/MatMul/Gemm outside ``keep`` at its DQ;
        returns the Softmax operands left float."""
        skipped: list[str] = []
        for n in self.graph.node:
            if n.op_type not in QUANT_OPS or n.name in keep:
                continue
            for k, t in activation_inputs(n, self.index):
                if skip_softmax_operands and comes_from_softmax(t, self.index):
                    skipped.append(t)
                    continue
                n.input[k] = self.activation(t)
            w = self.index.initializers.get(n.input[1]) if len(n.input) > 1 else None
            if w is not None and w.data_type == 1 and len(w.dims) >= 2:  # a float weight of rank >= 2
                n.input[1] = self.weight(n.input[1], weight_axis(n))
        return skipped

    def activation(self, t: str) -> str:
        from onnx import helper, numpy_helper

        if t not in self.act_dq:
            amax = float(self.tensors[t]["amax"])
            scale = amax / QMAX if amax > 0 else 1.0
            s, z = f"{t}__qscale", f"{t}__qzero"
            self.inits.append(numpy_helper.from_array(np.array(scale, np.float32), s))
            self.inits.append(numpy_helper.from_array(np.array(0, np.int8), z))
            self.nodes.append(helper.make_node("QuantizeLinear", [t, s, z], [f"{t}__q"], name=f"{t}__Q"))
            self.nodes.append(helper.make_node("DequantizeLinear", [f"{t}__q", s, z], [f"{t}__dq"], name=f"{t}__DQ"))
            self.act_dq[t] = f"{t}__dq"
        return self.act_dq[t]

    def weight(self, name: str, axis: int) -> str:
        from onnx import helper, numpy_helper

        key = f"{name}@{axis}"
        if key not in self.w_dq:
            w = numpy_helper.to_array(self.index.initializers[name]).astype(np.float32)
            q, scale = quantize_weight(w, axis)
            qn, sn, zn = f"{name}__int8", f"{name}__wscale", f"{name}__wzero"
            self.inits.append(numpy_helper.from_array(q, qn))
            self.inits.append(numpy_helper.from_array(scale, sn))
            self.inits.append(numpy_helper.from_array(np.zeros(scale.shape, np.int8), zn))
            self.nodes.append(
                helper.make_node("DequantizeLinear", [qn, sn, zn], [f"{name}__wdq"], name=f"{name}__wDQ", axis=axis)
            )
            self.w_dq[key] = f"{name}__wdq"
        return self.w_dq[key]
