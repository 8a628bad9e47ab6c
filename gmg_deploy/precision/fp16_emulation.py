"""FP16 emulation for scoring on CPU: an FP32 graph that rounds every FP16 tensor of an FP16 graph to FP16."""
from __future__ import annotations

from typing import Any

import numpy as np

from gmg_deploy.precision.graph_types import FLOAT, FLOAT16, name_nodes, value_types


def emulate_fp16(model: Any) -> Any:
    """An FP32 graph that rounds every FP16 tensor of the FP16 graph ``model`` to FP16 (for CPU accuracy).

    ORT CPU has no FP16 kernels for most float ops and runs them in FP32; it also drops the FP32->FP16->FP32
    round trips between such ops, the graph's own Casts included, so a chain of them computes in FP32 with
    *no FP16 rounding* of activations (FP16 initializers keep theirs) and under-states FP16 error (measured:
    tests/test_crosscheck_fp16.py). This graph keeps every op in FP32 arithmetic but rounds each
    FP16 tensor (initializers, node outputs, graph inputs) through ``Cast(to=FLOAT16)``/``Cast(to=FLOAT)``:
    FP16 storage between ops, FP32 arithmetic inside each op (what TensorRT's FP16 kernels accumulate in).
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    name_nodes(m)
    g = m.graph
    types = value_types(m)
    for t in g.initializer:
        if t.data_type == FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    rounded: dict[str, str] = {}
    new_nodes = []

    def round_trip(src: str, dst: str) -> None:
        new_nodes.append(helper.make_node("Cast", [src], [dst + "__h"], name=dst + "__emu16", to=FLOAT16))
        new_nodes.append(helper.make_node("Cast", [dst + "__h"], [dst], name=dst + "__emu32", to=FLOAT))

    for v in g.input:
        if types.get(v.name) == FLOAT16:
            v.type.tensor_type.elem_type = FLOAT
            rounded[v.name] = v.name + "__emu"
            round_trip(v.name, v.name + "__emu")
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in rounded:
                n.input[k] = rounded[i]
        for a in n.attribute:
            if a.name == "to" and a.i == FLOAT16:
                a.i = FLOAT
            if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FLOAT16:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
        outs = list(n.output)
        for k, o in enumerate(outs):
            if o and types.get(o) == FLOAT16:
                n.output[k] = o + "__emu_raw"
        new_nodes.append(n)
        for k, o in enumerate(outs):
            if o and types.get(o) == FLOAT16:
                round_trip(o + "__emu_raw", o)
    del g.node[:]
    g.node.extend(new_nodes)
    for v in g.output:
        if types.get(v.name) == FLOAT16:
            v.type.tensor_type.elem_type = FLOAT
    del g.value_info[:]
    return onnx.shape_inference.infer_shapes(m)
