"""Build the unrolled sequence graph from the step graph by chaining renamed copies (no re-tracing).

``frames (B,pre,C,H,W)`` -> ``preds (B,aft,C,H,W)``: step ``t`` (``0..pre+aft-2``) is a copy of the step
graph with every node and internal value prefixed ``t<t>/``; all copies share ONE set of initializers.
Step 0 starts from zeros (``ConstantOfShape``, batch taken from ``frames``), ``state_out.X`` of step t
feeds ``state_in.X`` of step t+1, step t reads ``frames[:, t]`` (``Gather`` with a constant index) while
``t < pre`` and the previous ``next_frame`` after that; the last ``aft`` outputs are stacked into ``preds``.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gmg_deploy.export.graph_passes import prune
from gmg_deploy.export.metadata import STATE_IN, STATE_OUT
from gmg_deploy.export.step_export import set_value_shape
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.model.network import state_shapes


def build_sequence(step: onnx.ModelProto, config: ModelConfig, *, batch: int | None = None) -> onnx.ModelProto:
    """The unrolled ``pre+aft-1``-step graph of ``config`` built from the cleaned ``step`` graph."""
    sg = step.graph
    pre, aft, T = config.pre_seq_length, config.aft_seq_length, config.total_steps
    shared = {t.name for t in sg.initializer}
    step_inputs = [i.name for i in sg.input]
    step_outputs = [o.name for o in sg.output]
    shapes = state_shapes(config, 1)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = [t for t in sg.initializer]

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    # zero initial state, one tensor per distinct shape
    if batch is None:
        nodes.append(helper.make_node("Shape", ["frames"], ["seq/frames_shape"], name="seq/frames_shape"))
        nodes.append(helper.make_node(
            "Slice", ["seq/frames_shape", const("seq/zero_i64", np.array([0], np.int64)),
                      const("seq/one_i64", np.array([1], np.int64))], ["seq/batch"], name="seq/batch"))
    zeros: dict[tuple, str] = {}
    for s in shapes.values():
        tail = tuple(s[1:])
        if tail in zeros:
            continue
        name = "seq/zeros_" + "x".join(map(str, tail))
        if batch is None:
            full = name + "_shape"
            nodes.append(helper.make_node(
                "Concat", ["seq/batch", const(full + "_tail", np.array(tail, np.int64))], [full], axis=0, name=full))
        else:
            full = const(name + "_shape", np.array((batch,) + tail, np.int64))
        nodes.append(helper.make_node(
            "ConstantOfShape", [full], [name], name=name,
            value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])))
        zeros[tail] = name

    state = {n: zeros[tuple(s[1:])] for n, s in shapes.items()}
    prev_frame = None
    outs: list[str] = []
    for t in range(T):
        px = f"t{t}/"
        if t < pre:
            frame = px + "frame"
            nodes.append(helper.make_node(
                "Gather", ["frames", const(px + "index", np.array(t, np.int64))], [frame], axis=1, name=frame))
        else:
            frame = prev_frame
        mapping = {"frame": frame}
        for n in shapes:
            mapping[STATE_IN + n] = state[n]

        def rename(v: str) -> str:
            if not v or v in shared:
                return v
            if v in mapping:
                return mapping[v]
            return px + v

        for node in sg.node:
            c = onnx.NodeProto()
            c.CopyFrom(node)
            c.name = px + (node.name or node.output[0])
            for k, v in enumerate(c.input):
                c.input[k] = rename(v)
            for k, v in enumerate(c.output):
                c.output[k] = rename(v)
            nodes.append(c)
        prev_frame = px + "next_frame"
        state = {n: px + STATE_OUT + n for n in shapes}
        if t >= T - aft:
            u = px + "next_frame_unsqueezed"
            nodes.append(helper.make_node("Unsqueeze", [prev_frame, const("seq/axis1", np.array([1], np.int64))
                                                        if t == T - aft else "seq/axis1"], [u], name=u))
            outs.append(u)
    nodes.append(helper.make_node("Concat", outs, ["preds"], axis=1, name="seq/preds"))
    assert set(step_inputs) == {"frame", *mapping} and "next_frame" in step_outputs

    frames_vi = helper.make_tensor_value_info("frames", TensorProto.FLOAT, None)
    preds_vi = helper.make_tensor_value_info("preds", TensorProto.FLOAT, None)
    C, H, W = config.frame_shape
    set_value_shape(frames_vi, (1, pre, C, H, W), batch)
    set_value_shape(preds_vi, (1, aft, C, H, W), batch)
    graph = helper.make_graph(nodes, "gmg_sequence", [frames_vi], [preds_vi], initializer=inits)
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name="gmg_deploy")
    model.ir_version = step.ir_version
    prune(model)
    onnx.checker.check_model(model)
    return model
