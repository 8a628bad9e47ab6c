"""Build the forecast graph (observe one frame, forecast K) from a step graph by chaining renamed copies.

``frame (B,C,H,W)``, ``state_in.*`` -> ``forecast (B,K,C,H,W)``, ``state_out.*``. Copy 0 is the step graph
itself with its ``next_frame`` renamed; its ``state_out.*`` are the graph's ``state_out.*`` (the state after
observing ``frame`` only, what a server keeps between calls). Copies ``1..K-1`` (node and value names
prefixed ``f<j>/``, initializers shared) run autoregressively on the previous prediction and state; the K
predictions are stacked into ``forecast``. The step graph may already be FP16/INT8: its I/O types are kept.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gmg_deploy.errors import InputError
from gmg_deploy.export.graph_passes import prune
from gmg_deploy.export.metadata import STATE_IN, STATE_OUT

FORECAST_OUT = "forecast"


def build_forecast(step: onnx.ModelProto, horizon: int) -> onnx.ModelProto:
    """The one-call forecast graph of horizon ``horizon`` built from the (cleaned) ``step`` graph."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise InputError(f"horizon={horizon!r} must be an integer >= 1 (frames forecast per call)")
    sg = step.graph
    shared = {t.name for t in sg.initializer}
    states = [o.name[len(STATE_OUT):] for o in sg.output if o.name.startswith(STATE_OUT)]
    nodes: list[onnx.NodeProto] = []
    inits = list(sg.initializer)
    axis = "fc/axis1"
    inits.append(numpy_helper.from_array(np.array([1], np.int64), axis))
    preds: list[str] = []
    mapping: dict[str, str] = {}
    for j in range(int(horizon)):
        px = f"f{j}/"
        if j == 0:
            mapping = {"next_frame": px + "next_frame"}  # everything else keeps its name in copy 0
        else:
            prev = f"f{j - 1}/"
            mapping = {"frame": prev + "next_frame"}
            for n in states:
                mapping[STATE_IN + n] = (STATE_OUT + n) if j == 1 else prev + STATE_OUT + n

        def rename(v: str, j: int = j, px: str = px, mapping: dict = mapping) -> str:
            if not v or v in shared:
                return v
            if v in mapping:
                return mapping[v]
            return v if j == 0 else px + v

        for node in sg.node:
            c = onnx.NodeProto()
            c.CopyFrom(node)
            if j > 0:
                c.name = px + (node.name or node.output[0])
            for k, v in enumerate(c.input):
                c.input[k] = rename(v)
            for k, v in enumerate(c.output):
                c.output[k] = rename(v)
            nodes.append(c)
        u = px + "next_frame_unsqueezed"
        nodes.append(helper.make_node("Unsqueeze", [px + "next_frame", axis], [u], name=u))
        preds.append(u)
    if len(preds) == 1:
        nodes.append(helper.make_node("Identity", preds, [FORECAST_OUT], name="fc/forecast"))
    else:
        nodes.append(helper.make_node("Concat", preds, [FORECAST_OUT], axis=1, name="fc/forecast"))

    frame_out = next(o for o in sg.output if o.name == "next_frame")
    fvi = onnx.ValueInfoProto()
    fvi.CopyFrom(frame_out)
    fvi.name = FORECAST_OUT
    shape = fvi.type.tensor_type.shape
    old = [onnx.TensorShapeProto.Dimension() for _ in shape.dim]
    for o, d in zip(old, shape.dim):
        o.CopyFrom(d)
    del shape.dim[:]
    for k, d in enumerate(old):
        shape.dim.add().CopyFrom(d)
        if k == 0:
            shape.dim.add().dim_value = int(horizon)
    outputs = [fvi] + [o for o in sg.output if o.name.startswith(STATE_OUT)]
    graph = helper.make_graph(nodes, "gmg_forecast", list(sg.input), outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name="gmg_deploy")
    model.ir_version = step.ir_version
    for p in step.metadata_props:
        model.metadata_props.add().CopyFrom(p)
    prune(model)
    onnx.checker.check_model(model)
    return model
