"""INT8 graph pass for ONNX Runtime CPU (``target="cpu"``): a Q/DQ layout ORT fuses into integer kernels.

Layout (chosen by measurement, ``benchmarks/int8_layouts.py`` and README "INT8 on CPUs"): QDQ format
(QOperator runs the same integer kernels - ORT fuses this graph into them; at the Moving MNIST config the two
forms ran within 0.01x of each other, on the small demo model the QDQ file was 0.01-0.06x slower - while the
QDQ graph stays a standard ONNX graph that ``gmg-compare``/the lint read like the others); activations
``uint8`` asymmetric per tensor (x86 integer GEMMs are u8 x s8: s8 activations measured 0.93-1.62x of FP32
in QDQ and 4.4-8.9x in QOperator, against 0.35-0.71x for u8), weights ``int8``
symmetric per output channel, Conv/Gemm biases ``int32`` with scale ``x_scale * w_scale``. Conv, MatMul and
Gemm get Q/DQ on their activation inputs *and on their output* (every reader of the output reads its DQ),
so ORT's QDQ transformer rewrites ``DQ -> Conv -> Q`` into ``QLinearConv`` (``QLinearMatMul``, ``QGemm``).
ConvTranspose, the warp, Softmax operands, gates and elementwise arithmetic stay float, as do the nodes
in the keep-float list; a MatMul whose two inputs cannot both be quantized stays float. Ranges come from
the same rollout calibration (:mod:`gmg_deploy.precision.ranges`, output ranges included). Not for
TensorRT (non-zero zero points): ``gmg-build`` and the TensorRT lint refuse it.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from gmg_deploy.graph.index import GraphIndex
from gmg_deploy.graph.metadata import MetadataLike, as_metadata
from gmg_deploy.precision.qdq_common import finish_graph, keep_float_nodes, stamp_int8
from gmg_deploy.precision.qdq_rules import activation_inputs, comes_from_softmax, quantize_weight, weight_axis
from gmg_deploy.errors import CalibrationError
from gmg_deploy.precision.ranges_file import asymmetric_range

CPU_OPS = ("Conv", "MatMul", "Gemm")
U8MAX = 255


def u8_params(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of an unsigned 8-bit quantizer covering ``[lo, hi]`` (``lo <= 0 <= hi``)."""
    if hi - lo <= 0:
        return 1.0, 0
    scale = (hi - lo) / U8MAX
    return float(np.float32(scale)), int(np.clip(np.rint(-lo / scale), 0, U8MAX))


def quantize_graph_cpu(
    model: Any,
    meta: MetadataLike,
    ranges: dict[str, Any],
    *,
    skip_softmax_operands: bool = True,
    keep_float: Iterable[str] = (),
    where: str = "ranges file",
) -> Any:
    """Return the ``cpu``-target INT8 copy of the checked FP32 graph ``model`` (metadata ``meta``; see the module
    docstring)."""
    import onnx

    meta = as_metadata(meta, "FP32 graph")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    missing = [n.output[0] for n in g.node if n.op_type in CPU_OPS and n.output[0] not in ranges["tensors"]]
    if missing:
        raise CalibrationError(
            f"{where} has no output ranges (e.g. {missing[0]}), which --target cpu needs; "
            "re-run gmg-calibrate with this gmg-deploy version"
        )
    qdq = _AsymmetricQdq(g, ranges["tensors"], skip_softmax_operands)
    keep = keep_float_nodes(g, keep_float, ranges, where)
    for n in g.node:
        if n.op_type in CPU_OPS and n.name not in keep and n.output[0] not in qdq.index.outputs:
            qdq.quantize_node(n)
    qdq.redirect_readers()
    finish_graph(g, list(g.node), qdq.nodes, qdq.inits)
    return stamp_int8(m, meta, ranges, "cpu", activation_type="uint8 asymmetric per tensor",
                      weight_type="int8 symmetric per channel", activations_quantized=len(qdq.pairs),
                      outputs_quantized=len(qdq.out_rename), weights_quantized=qdq.weights,
                      float_softmax_operands=len(set(qdq.skipped)), float_nodes=sorted(keep))


def _float_constants(graph: Any) -> dict[str, np.ndarray]:
    """Float initializers and float ``Constant`` outputs of ``graph``, by name."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == 1}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value" and n.attribute[0].t.data_type == 1:
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


class _AsymmetricQdq:
    """The ``cpu`` layout's rewrite: uint8 activation pairs, int8 per-channel weights, int32 biases, and a
    Q/DQ pair on each quantized node's output; collects the new nodes and initializers."""

    def __init__(self, graph: Any, tensors: dict[str, Any], skip_softmax_operands: bool) -> None:
        self.graph = graph
        self.tensors = tensors
        self.skip_softmax_operands = skip_softmax_operands
        self.consts = _float_constants(graph)
        self.index = GraphIndex(graph)
        self.acts = {t for n in graph.node for _, t in activation_inputs(n, self.index)}
        self.inits: list[Any] = []
        self.nodes: list[Any] = []
        self.pairs: dict[str, tuple[str, float]] = {}  # tensor -> (its DQ output, scale)
        self.out_rename: dict[str, str] = {}
        self.weights = 0
        self.skipped: list[str] = []

    def quantize_node(self, n: Any) -> None:
        """Rewrite one Conv/MatMul/Gemm to read DQ'd inputs (left float when an operand cannot be quantized)."""
        from onnx import helper

        a, b = n.input[0], n.input[1]
        if n.op_type == "Gemm":
            attrs = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                return
        if a not in self.acts or not self._usable(a) or not self._usable(b):
            return
        if b in self.consts and self.consts[b].ndim < 2:
            return
        xq, xs = self.activation(a)
        if b in self.consts:
            wq, ws = self._weight(n, self.consts[b], weight_axis(n))
            self.weights += 1
            if len(n.input) > 2 and n.input[2]:
                if n.input[2] not in self.consts:
                    return  # bias computed at run time: leave the node float
                n.input[2] = self._bias(n, self.consts[n.input[2]], np.float32(xs) * ws)
        else:
            wq, _ = self.activation(b)
        n.input[0], n.input[1] = xq, wq
        self.out_rename[n.output[0]] = self.activation(n.output[0])[0]

    def redirect_readers(self) -> None:
        """Every reader of a quantized output reads its DQ (the Q is the output's only reader)."""
        for n in self.graph.node:
            for k, t in enumerate(n.input):
                if t in self.out_rename:
                    n.input[k] = self.out_rename[t]

    def _usable(self, t: str) -> bool:
        if t not in self.acts and t not in self.consts:
            return False
        if t in self.acts and self.skip_softmax_operands and comes_from_softmax(t, self.index):
            self.skipped.append(t)
            return False
        return True

    def activation(self, t: str) -> tuple[str, float]:
        """The DQ output and scale of ``t``'s uint8 pair (made once per tensor)."""
        from onnx import helper, numpy_helper

        if t not in self.pairs:
            scale, zp = u8_params(*asymmetric_range(self.tensors[t]))
            s, z = f"{t}__qscale", f"{t}__qzero"
            self.inits.append(numpy_helper.from_array(np.array(scale, np.float32), s))
            self.inits.append(numpy_helper.from_array(np.array(zp, np.uint8), z))
            self.nodes.append(helper.make_node("QuantizeLinear", [t, s, z], [f"{t}__q"], name=f"{t}__Q"))
            self.nodes.append(helper.make_node("DequantizeLinear", [f"{t}__q", s, z], [f"{t}__dq"], name=f"{t}__DQ"))
            self.pairs[t] = (f"{t}__dq", scale)
        return self.pairs[t]

    def _weight(self, node: Any, w: np.ndarray, axis: int) -> tuple[str, np.ndarray]:
        from onnx import helper, numpy_helper

        q, scale = quantize_weight(w.astype(np.float32), axis)
        base = f"{node.name}__w"
        self.inits.append(numpy_helper.from_array(q, f"{base}_int8"))
        self.inits.append(numpy_helper.from_array(scale, f"{base}_scale"))
        self.inits.append(numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}_zero"))
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_scale", f"{base}_zero"],
                                           [f"{base}_dq"], name=f"{base}_DQ", axis=axis))
        return f"{base}_dq", scale

    def _bias(self, node: Any, b: np.ndarray, scale: np.ndarray) -> str:
        from onnx import helper, numpy_helper

        base = f"{node.name}__b"
        q = np.clip(np.rint(b.astype(np.float64) / scale), -(2**31) + 1, 2**31 - 1).astype(np.int32)
        self.inits.append(numpy_helper.from_array(q, f"{base}_int32"))
        self.inits.append(numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"))
        self.inits.append(numpy_helper.from_array(np.zeros(scale.shape, np.int32), f"{base}_zero"))
        self.nodes.append(helper.make_node("DequantizeLinear", [f"{base}_int32", f"{base}_scale", f"{base}_zero"],
                                           [f"{base}_dq"], name=f"{base}_DQ", axis=0))
        return f"{base}_dq"
