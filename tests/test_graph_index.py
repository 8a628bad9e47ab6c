"""The shared graph index and the one quantization rule, on a small hand-built ONNX graph."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gmg_deploy.export.graph_index import LAYOUT_OPS, GraphIndex
from gmg_deploy.precision.qdq_rules import (activation_inputs, comes_from_softmax, quantizable_inputs,
                                            quantize_weight, weight_axis)


def _graph() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 12, "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
        helper.make_node("Softmax", ["r"], ["p"], name="softmax", axis=-1),
        helper.make_node("Transpose", ["p"], ["pt"], name="t", perm=[1, 0]),
        helper.make_node("Constant", [], ["k"], name="k", value=numpy_helper.from_array(np.ones((2, 2), np.float32))),
        helper.make_node("MatMul", ["pt", "r"], ["m1"], name="mm_act"),
        helper.make_node("MatMul", ["m1", "k"], ["y"], name="mm_const"),
    ]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, numpy_helper.from_array(np.array([2, 2], np.int64), "shape")],
    )
    return helper.make_model(g)


def test_index_maps_producers_readers_and_static_tensors():
    m = _graph()
    idx = GraphIndex(m.graph)
    assert idx.producer["r"].name == "reshape" and "x" not in idx.producer
    assert [n.name for n in idx.readers("r")] == ["softmax", "mm_act"]
    assert idx.readers("nothing") == []
    assert idx.is_static("w") and idx.is_static("k") and not idx.is_static("c")
    assert idx.inputs == {"x"} and idx.outputs == {"y"}
    assert idx.source("pt").name == "softmax"  # through the Transpose
    assert {"Reshape", "Transpose", "Cast", "DepthToSpace", "Flatten"} <= LAYOUT_OPS and "Add" not in LAYOUT_OPS


def test_which_inputs_get_quantized():
    m = _graph()
    idx = GraphIndex(m.graph)
    by_name = {n.name: n for n in m.graph.node}
    assert activation_inputs(by_name["conv"], idx) == [(0, "x")]          # the weight is not an activation
    assert activation_inputs(by_name["mm_act"], idx) == [(0, "pt"), (1, "r")]
    assert activation_inputs(by_name["mm_const"], idx) == [(0, "m1")]     # a Constant operand is a weight
    assert activation_inputs(by_name["softmax"], idx) == []
    assert quantizable_inputs(m) == ["x", "pt", "r", "m1"]
    assert comes_from_softmax("pt", idx) and not comes_from_softmax("r", idx)


def test_weight_quantization_per_output_channel():
    m = _graph()
    conv = m.graph.node[0]
    assert weight_axis(conv) == 0
    w = numpy_helper.to_array(m.graph.initializer[0])
    q, scale = quantize_weight(w, 0)
    assert q.dtype == np.int8 and scale.shape == (2,)
    np.testing.assert_allclose(scale, [12 / 127, 11 / 127], rtol=1e-6)
    assert np.abs(q).max() == 127
    np.testing.assert_allclose(q * scale[:, None, None, None], w, atol=scale.max() / 2 + 1e-7)
