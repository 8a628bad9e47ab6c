"""ONNX element types of a graph's tensors, and node naming: what the FP16 pass and the FP16 emulation share."""
from __future__ import annotations

from typing import Any

from gmg_deploy.errors import PrecisionError

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def value_types(model: Any) -> dict[str, int]:
    """Element type of every tensor in the graph (after ONNX shape inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    unknown = [o for n in g.node for o in n.output if o and types.get(o, 0) == 0]
    if unknown:
        raise PrecisionError(
            f"ONNX shape inference left {len(unknown)} tensor type(s) unknown (e.g. {unknown[0]}); "
            "re-export the FP32 graph with gmg-export"
        )
    return types


def name_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (``<op>_<index>``)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            k = f"{n.op_type}_{i}"
            while k in used:
                k += "_"
            n.name = k
            used.add(k)
