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

from gmg_deploy.precision.ranges import QUANT_OPS, CalibrationError, check_ranges_match, quantizable_inputs
from gmg_deploy.export.metadata import attach_metadata, metadata_from_proto

TARGETS = ("tensorrt", "cpu")
QMAX = 127


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


def _quantize_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis])
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


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
    from onnx import helper, numpy_helper

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
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    acts = set(quantizable_inputs(m))
    tensors = ranges["tensors"]
    new_inits: list[Any] = []
    new_nodes: list[Any] = []
    act_dq: dict[str, str] = {}
    w_dq: dict[str, str] = {}
    n_act = n_w = 0
    skipped: list[str] = []

    def act_pair(t: str) -> str:
        nonlocal n_act
        if t not in act_dq:
            amax = float(tensors[t]["amax"])
            scale = amax / QMAX if amax > 0 else 1.0
            s, z = f"{t}__qscale", f"{t}__qzero"
            new_inits.append(numpy_helper.from_array(np.array(scale, np.float32), s))
            new_inits.append(numpy_helper.from_array(np.array(0, np.int8), z))
            new_nodes.append(helper.make_node("QuantizeLinear", [t, s, z], [f"{t}__q"], name=f"{t}__Q"))
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{t}__q", s, z], [f"{t}__dq"], name=f"{t}__DQ"))
            act_dq[t] = f"{t}__dq"
            n_act += 1
        return act_dq[t]

    def weight_dq(name: str, axis: int) -> str:
        nonlocal n_w
        key = f"{name}@{axis}"
        if key not in w_dq:
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            q, scale = _quantize_weight(w, axis)
            qn, sn, zn = f"{name}__int8", f"{name}__wscale", f"{name}__wzero"
            new_inits.append(numpy_helper.from_array(q, qn))
            new_inits.append(numpy_helper.from_array(scale, sn))
            new_inits.append(numpy_helper.from_array(np.zeros(scale.shape, np.int8), zn))
            new_nodes.append(
                helper.make_node("DequantizeLinear", [qn, sn, zn], [f"{name}__wdq"], name=f"{name}__wDQ", axis=axis)
            )
            w_dq[key] = f"{name}__wdq"
            n_w += 1
        return w_dq[key]

    keep = set(keep_float) | set(ranges.get("keep_float", ()))
    unknown = keep - {n.name for n in g.node}
    if unknown:
        raise CalibrationError(f"{where}: keep_float names nodes not in this graph: {sorted(unknown)[:3]}")
    rewritten = []
    for n in g.node:
        if n.op_type in QUANT_OPS and n.name not in keep:
            idxs = [0] if n.op_type in ("Conv", "ConvTranspose") else [0, 1]
            for k in idxs:
                t = n.input[k]
                if t not in acts:
                    continue
                if skip_softmax_operands and _comes_from_softmax(t, producer):
                    skipped.append(t)
                    continue
                n.input[k] = act_pair(t)
            if len(n.input) > 1 and n.input[1] in inits and inits[n.input[1]].data_type == 1:
                w = inits[n.input[1]]
                if len(w.dims) >= 2:
                    n.input[1] = weight_dq(n.input[1], weight_axis(n))
        rewritten.append(n)
    del g.node[:]
    # Q/DQ nodes go right before their first reader: emit them first, then the graph (still topological:
    # their inputs are graph inputs, initializers or produced earlier... so place each after its producer)
    g.node.extend(_topo_merge(rewritten, new_nodes))
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used or t.name in {o.name for o in g.output}]
    del g.initializer[:]
    g.initializer.extend(kept)
    meta = dict(meta)
    meta["precision"] = "int8"
    meta["calibration"] = {
        "method": ranges.get("method"),
        "fingerprint": ranges.get("fingerprint"),
        "sequences": ranges.get("sequences"),
        "target": "tensorrt",
        "activations_quantized": n_act,
        "weights_quantized": n_w,
        "float_softmax_operands": len(skipped),
        "float_nodes": sorted(keep),
    }
    attach_metadata(m, meta)
    onnx.checker.check_model(m)
    return m


#: Ops that only move data: a Softmax output passed through them is still attention probabilities.
_LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten")


def _comes_from_softmax(tensor: str, producer: dict[str, Any]) -> bool:
    """Whether ``tensor`` is a Softmax output, possibly through layout-only ops."""
    p = producer.get(tensor)
    while p is not None and p.op_type in _LAYOUT_OPS:
        p = producer.get(p.input[0])
    return p is not None and p.op_type == "Softmax"


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
