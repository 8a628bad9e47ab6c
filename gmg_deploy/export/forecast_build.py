"""Build the forecast graph (observe one frame, forecast K) from a step graph by chaining renamed copies.

``frame (B,C,H,W)``, ``state_in.*`` -> ``forecast (B,K,C,H,W)``, ``state_out.*``. Copy 0 is the step graph
itself with its ``next_frame`` renamed; its ``state_out.*`` are the graph's ``state_out.*`` (the state after
observing ``frame`` only, what a server keeps between calls). Copies ``1..K-1`` (node and value names
prefixed ``f<j>/``, initializers shared) run autoregressively on the previous prediction and state; the K
predictions are stacked into ``forecast``. The step graph may already be FP16/INT8: its I/O types are kept.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gmg_deploy.errors import InputError
from gmg_deploy.export.graph_passes import copy_nodes, prune
from gmg_deploy.graph.metadata import GraphMetadata
from gmg_deploy.graph.signature import state_in, state_out


def build_forecast(step: onnx.ModelProto, horizon: int) -> onnx.ModelProto:
    """The one-call forecast graph of horizon ``horizon`` built from the (cleaned) ``step`` graph."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise InputError(f"horizon={horizon!r} must be an integer >= 1 (frames forecast per call)")
    sig = GraphMetadata.from_proto(step, "step graph").signature
    if sig.graph != "step":
        raise InputError(f"a forecast graph is chained from a step graph, not a {sig.graph} graph")
    fsig = replace(sig, graph="forecast", horizon=int(horizon))
    frame_in, step_out, forecast_out = sig.frame_input, sig.frame_output, fsig.frame_output
    sg = step.graph
    states = sig.state_names
    nodes: list[onnx.NodeProto] = []
    inits = list(sg.initializer)
    axis = "fc/axis1"
    inits.append(numpy_helper.from_array(np.array([1], np.int64), axis))
    preds: list[str] = []
    for j in range(int(horizon)):
        px = f"f{j}/"
        if j == 0:
            mapping = {step_out: px + step_out}  # everything else keeps its name in copy 0
        else:
            prev = f"f{j - 1}/"
            mapping = {frame_in: prev + step_out}
            for n in states:
                mapping[state_in(n)] = state_out(n) if j == 1 else prev + state_out(n)

        # copy 0 is the step graph itself (names kept but for step_out); copy j > 0 is prefixed f<j>/
        keep = j == 0
        nodes.extend(copy_nodes(sg, lambda v: mapping.get(v, v if keep else px + v), name_prefix="" if keep else px))
        u = px + step_out + "_unsqueezed"
        nodes.append(helper.make_node("Unsqueeze", [px + step_out, axis], [u], name=u))
        preds.append(u)
    if len(preds) == 1:
        nodes.append(helper.make_node("Identity", preds, [forecast_out], name="fc/forecast"))
    else:
        nodes.append(helper.make_node("Concat", preds, [forecast_out], axis=1, name="fc/forecast"))

    frame_out = next(o for o in sg.output if o.name == step_out)
    fvi = onnx.ValueInfoProto()
    fvi.CopyFrom(frame_out)
    fvi.name = forecast_out
    shape = fvi.type.tensor_type.shape
    old = [onnx.TensorShapeProto.Dimension() for _ in shape.dim]
    for o, d in zip(old, shape.dim):
        o.CopyFrom(d)
    del shape.dim[:]
    for k, d in enumerate(old):
        shape.dim.add().CopyFrom(d)
        if k == 0:
            shape.dim.add().dim_value = int(horizon)
    state_outs = {state_out(n) for n in states}
    outputs = [fvi] + [o for o in sg.output if o.name in state_outs]
    graph = helper.make_graph(nodes, "gmg_forecast", list(sg.input), outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name="gmg_deploy")
    model.ir_version = step.ir_version
    for p in step.metadata_props:
        model.metadata_props.add().CopyFrom(p)
    prune(model)
    onnx.checker.check_model(model)
    return model
