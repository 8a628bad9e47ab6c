"""INT8 graph pass: insert QuantizeLinear/DequantizeLinear pairs into an FP32 gmg-deploy graph.

Placement for TensorRT's explicit quantization (strongly typed networks): symmetric int8, zero points 0;
per-tensor activation Q/DQ on the data inputs of Conv, ConvTranspose, MatMul and Gemm (one pair per tensor,
shared by all its quantized readers); weights stored as int8 initializers with a per-channel
DequantizeLinear (Conv: axis 0 of (Cout, Cin, k, k); ConvTranspose: axis 1 of (Cin, Cout, k, k); MatMul
``(K, N)`` and Gemm without transB: axis 1; Gemm with transB: axis 0). Biases, the warp (GridSample and
its coordinates), Softmax, sigmoid/tanh gates and all elementwise arithmetic stay float. The result runs
in ONNX Runtime CPU (DQ then float op, slower than FP32) and in TensorRT (fused int8 kernels). This is
``target="tensorrt"``; ``target="cpu"`` (:mod:`gmg_deploy.precision.qdq_cpu`) is the layout ORT CPU runs
with integer kernels.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from gmg_deploy.export.graph_index import GraphIndex
from gmg_deploy.export.metadata import attach_metadata, metadata_from_proto
from gmg_deploy.precision.qdq_rules import (QMAX, QUANT_OPS, activation_inputs, comes_from_softmax, quantize_weight,
                                            weight_axis)
from gmg_deploy.precision.ranges import CalibrationError, check_ranges_match

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
    import onnx

    meta = metadata_from_proto(model)
    if meta.get("precision", "fp32") != "fp32":
        raise CalibrationError(f"INT8 quantization needs the FP32 graph; this one is {meta['precision']}")
    if target not in TARGETS:
        raise CalibrationError(f"INT8 target {target!r} is unknown; choose one of {', '.join(TARGETS)}")
    check_ranges_match(ranges, model, where)
    if target == "cpu":
        from gmg_deploy.precision.qdq_cpu import quantize_graph_cpu

        return quantize_graph_cpu(model, ranges, skip_softmax_operands=skip_softmax_operands,
                                  keep_float=keep_float, where=where)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = keep_float_nodes(m.graph, keep_float, ranges, where)
    qdq = _SymmetricQdq(m.graph, ranges["tensors"])
    skipped = qdq.rewrite(keep, skip_softmax_operands)
    finish_graph(m.graph, list(m.graph.node), qdq.nodes, qdq.inits)
    return stamp_int8(m, meta, ranges, "tensorrt", activations_quantized=len(qdq.act_dq),
                      weights_quantized=len(qdq.w_dq), float_softmax_operands=len(skipped), float_nodes=sorted(keep))


def stamp_int8(m: Any, meta: dict[str, Any], ranges: dict[str, Any], target: str, **counts: Any) -> Any:
    """Attach the INT8 graph's metadata to ``m`` (``precision: int8``; ``calibration``: the ranges' method,
    fingerprint and sequences, the ``target`` and the pass's ``counts``) and check the model; -> ``m``."""
    import onnx

    meta = dict(meta)
    meta["precision"] = "int8"
    meta["calibration"] = {"method": ranges.get("method"), "fingerprint": ranges.get("fingerprint"),
                           "sequences": ranges.get("sequences"), "target": target, **counts}
    attach_metadata(m, meta)
    onnx.checker.check_model(m)
    return m


def keep_float_nodes(graph: Any, keep_float: Iterable[str], ranges: dict[str, Any], where: str) -> set[str]:
    """The nodes left float: ``keep_float`` plus the ranges file's list, all of them nodes of ``graph``."""
    keep = set(keep_float) | set(ranges.get("keep_float", ()))
    unknown = keep - {n.name for n in graph.node}
    if unknown:
        raise CalibrationError(f"{where}: keep_float names nodes not in this graph: {sorted(unknown)[:3]}")
    return keep


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


def finish_graph(graph: Any, graph_nodes: list[Any], qdq_nodes: list[Any], qdq_inits: list[Any]) -> None:
    """Put the Q/DQ nodes in topological place (:func:`_topo_merge`), add their initializers and drop the
    initializers nothing reads any more (the float weights that became int8)."""
    del graph.node[:]
    graph.node.extend(_topo_merge(graph_nodes, qdq_nodes))
    graph.initializer.extend(qdq_inits)
    used = {i for n in graph.node for i in n.input}
    outputs = {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used or t.name in outputs]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _topo_merge(graph_nodes: list[Any], qdq_nodes: list[Any]) -> list[Any]:
    """Place each Q/DQ node right after the node producing its input (graph order otherwise kept)."""
    by_input: dict[str, list[Any]] = {}
    for q in qdq_nodes:
        by_input.setdefault(q.input[0], []).append(q)
    out: list[Any] = []

    def emit_after(tensor: str) -> None:
        for q in by_input.pop(tensor, []):
            out.append(q)
            emit_after(q.output[0])

    produced = {o for n in list(graph_nodes) + list(qdq_nodes) for o in n.output}
    for t in list(by_input):  # inputs that are graph inputs or initializers
        if t not in produced:
            emit_after(t)
    for n in graph_nodes:
        out.append(n)
        for o in n.output:
            emit_after(o)
    return out
