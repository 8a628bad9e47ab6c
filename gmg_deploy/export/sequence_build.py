"""Build the unrolled sequence graph from the step graph by chaining renamed copies (no re-tracing).

``frames (B,pre,C,H,W)`` -> ``preds (B,aft,C,H,W)``: step ``t`` (``0..pre+aft-2``) is a copy of the step
graph with every node and internal value prefixed ``t<t>/``; all copies share ONE set of initializers.
Step 0 starts from zeros (``ConstantOfShape``, batch taken from ``frames``), ``state_out.X`` of step t
feeds ``state_in.X`` of step t+1, step t reads ``frames[:, t]`` (``Gather`` with a constant index) while
``t < pre`` and the previous ``next_frame`` after that; the last ``aft`` outputs are stacked into ``preds``.
Names and shapes on both sides come from :class:`gmg_deploy.graph.signature.StepSignature`.

Phases (:func:`build_sequence`): :func:`_zero_state`, then per step :func:`_step_input` and
:func:`_copy_step`, then :func:`_stack_predictions` and :func:`_finish`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gmg_deploy.export.graph_passes import copy_nodes, prune
from gmg_deploy.graph.signature import FRAME, FRAMES, NEXT_FRAME, PREDS, StepSignature, state_in, state_out
from gmg_deploy.export.step_export import set_value_shape
from gmg_deploy.model.config import ModelConfig


@dataclass
class _Chain:
    """The sequence graph under construction: its nodes and initializers (the step's are shared)."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def add(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def build_sequence(step: onnx.ModelProto, config: ModelConfig, *, batch: int | None = None) -> onnx.ModelProto:
    """The unrolled ``pre+aft-1``-step graph of ``config`` built from the cleaned ``step`` graph."""
    step_sig = StepSignature.from_config(config, "step", batch=batch)
    _check_step_io(step, step_sig)
    pre, aft, T = config.pre_seq_length, config.aft_seq_length, config.total_steps
    chain = _Chain(inits=list(step.graph.initializer))
    state = _zero_state(chain, step_sig, batch)
    prev_frame: str | None = None
    outs: list[str] = []
    for t in range(T):
        frame = _step_input(chain, t) if t < pre else prev_frame
        prev_frame, state = _copy_step(chain, step.graph, f"t{t}/", frame, state)
        if t >= T - aft:
            outs.append(_unsqueeze_time(chain, prev_frame, first=(t == T - aft)))
    chain.nodes.append(helper.make_node("Concat", outs, [PREDS], axis=1, name="seq/preds"))
    return _finish(chain, step, StepSignature.from_config(config, "sequence", batch=batch))


def _check_step_io(step: onnx.ModelProto, sig: StepSignature) -> None:
    ins = [i.name for i in step.graph.input]
    outs = [o.name for o in step.graph.output]
    if not sig.matches(ins, outs):
        raise ValueError(f"step graph I/O {ins[:2]}.../{outs[:2]}... is not the step signature's")


def _zero_state(chain: _Chain, sig: StepSignature, batch: int | None) -> dict[str, str]:
    """Zero initial state, one ``ConstantOfShape`` per distinct shape; state name -> value name."""
    if batch is None:
        chain.add("Shape", [FRAMES], "seq/frames_shape")
        chain.add("Slice", ["seq/frames_shape", chain.const("seq/zero_i64", np.array([0], np.int64)),
                            chain.const("seq/one_i64", np.array([1], np.int64))], "seq/batch")
    zeros: dict[tuple, str] = {}
    for _, tail in sig.state:
        if tail in zeros:
            continue
        name = "seq/zeros_" + "x".join(map(str, tail))
        if batch is None:
            full = chain.add("Concat", ["seq/batch", chain.const(name + "_shape_tail", np.array(tail, np.int64))],
                             name + "_shape", axis=0)
        else:
            full = chain.const(name + "_shape", np.array((batch,) + tail, np.int64))
        chain.add("ConstantOfShape", [full], name, value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
        zeros[tail] = name
    return {n: zeros[tail] for n, tail in sig.state}


def _step_input(chain: _Chain, t: int) -> str:
    """``frames[:, t]`` as the input frame of step ``t``."""
    px = f"t{t}/"
    return chain.add("Gather", [FRAMES, chain.const(px + "index", np.array(t, np.int64))], px + FRAME, axis=1)


def _copy_step(chain: _Chain, sg: onnx.GraphProto, px: str, frame: str,
               state: dict[str, str]) -> tuple[str, dict[str, str]]:
    """One renamed copy of the step graph fed ``frame`` and ``state``; -> (its next frame, its state)."""
    mapping = {FRAME: frame, **{state_in(n): v for n, v in state.items()}}
    chain.nodes.extend(copy_nodes(sg, lambda v: mapping.get(v, px + v), name_prefix=px))
    return px + NEXT_FRAME, {n: px + state_out(n) for n in state}


def _unsqueeze_time(chain: _Chain, frame: str, *, first: bool) -> str:
    """``frame (B,C,H,W)`` -> ``(B,1,C,H,W)`` for the stack of predictions (one shared axes constant)."""
    axis = chain.const("seq/axis1", np.array([1], np.int64)) if first else "seq/axis1"
    return chain.add("Unsqueeze", [frame, axis], frame + "_unsqueezed")


def _finish(chain: _Chain, step: onnx.ModelProto, sig: StepSignature) -> onnx.ModelProto:
    """Graph I/O typed from the sequence signature, dead values pruned, checked."""
    (x,), (y,) = sig.inputs(1), sig.outputs(1)
    ios = []
    for t in (x, y):
        vi = helper.make_tensor_value_info(t.name, TensorProto.FLOAT, None)
        set_value_shape(vi, t.shape, sig.batch)
        ios.append(vi)
    graph = helper.make_graph(chain.nodes, "gmg_sequence", [ios[0]], [ios[1]], initializer=chain.inits)
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name="gmg_deploy")
    model.ir_version = step.ir_version
    prune(model)
    onnx.checker.check_model(model)
    return model
