"""Export one recurrent step to ONNX (TorchScript exporter), state as explicit inputs and outputs.

Graph: ``frame (B,C,H,W)``, ``state_in.<name>`` -> ``next_frame (B,C,H,W)``, ``state_out.<name>``
(names, order and shapes: :class:`gmg_deploy.graph.signature.StepSignature`). The exported graph is cleaned by
:func:`gmg_deploy.export.graph_passes.clean` (static shape plumbing, folded constants).
"""
from __future__ import annotations

import copy
import io
import warnings

import onnx
import torch
import torch.nn as nn

from gmg_deploy.errors import InputError
from gmg_deploy.export.graph_passes import clean
from gmg_deploy.graph.signature import StepSignature
from gmg_deploy.model.config import BATCH_MODES  # noqa: F401 (re-exported: its old home)
from gmg_deploy.model.network import RecurrentPredictor

MIN_OPSET = {"gridsample": 16, "gather": 13}
MAX_OPSET = 20  # newest opset the TorchScript exporter writes


class _StepModule(nn.Module):
    """``forward(frame, *states) -> (next_frame, *new_states)`` for the exporter."""

    def __init__(self, model: RecurrentPredictor, batch_mode: str) -> None:
        super().__init__()
        self.model = model
        self.batch_mode = batch_mode

    def forward(self, frame: torch.Tensor, *states: torch.Tensor):
        nxt, new = self.model.step_tensors(frame, list(states), self.batch_mode)
        return (nxt, *new)


def check_export_options(model: RecurrentPredictor, *, batch: int | None, opset: int, batch_mode: str) -> None:
    if batch_mode not in BATCH_MODES:
        raise InputError(f"batch_mode={batch_mode!r} is not known; choose one of {', '.join(BATCH_MODES)}")
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise InputError(f"batch={batch!r} must be a positive integer, or None for a dynamic batch axis")
    lo = MIN_OPSET[model.warp_form]
    if not (lo <= int(opset) <= MAX_OPSET):
        raise InputError(
            f"opset {opset} is not supported for the {model.warp_form} warp; use {lo}..{MAX_OPSET} (default 17)"
        )


def io_names(model: RecurrentPredictor) -> tuple[list[str], list[str]]:
    """The step graph's input and output names in order (from :class:`StepSignature`)."""
    sig = StepSignature.from_config(model.config)
    return sig.input_names, sig.output_names


def export_step_proto(
    model: RecurrentPredictor, *, batch: int | None = None, opset: int = 17, batch_mode: str = "invariant"
) -> onnx.ModelProto:
    """The cleaned step graph of ``model`` (the caller's model is not modified)."""
    check_export_options(model, batch=batch, opset=opset, batch_mode=batch_mode)
    m = copy.deepcopy(model).float().eval().cpu()
    m.fold_multiscale()
    trace_b = batch or 2
    frame = torch.zeros(trace_b, *m.config.frame_shape)
    states = list(m.init_state(trace_b).values())
    inputs, outputs = io_names(m)
    dynamic = None if batch else {n: {0: "batch"} for n in inputs + outputs}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _StepModule(m, batch_mode),
            (frame, *states),
            buf,
            dynamo=False,
            opset_version=int(opset),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    clean(proto, batch)
    _set_io_shapes(proto, m, batch)
    proto.graph.name = "gmg_step"
    proto.producer_name = "gmg_deploy"
    onnx.checker.check_model(proto)
    return proto


def _set_io_shapes(proto: onnx.ModelProto, model: RecurrentPredictor, batch: int | None) -> None:
    """Declare every graph input/output as float32 with static dims and the batch axis ``batch``."""
    shapes = StepSignature.from_config(model.config).shapes(1)
    for v in list(proto.graph.input) + list(proto.graph.output):
        set_value_shape(v, shapes[v.name], batch)


def set_value_shape(v: onnx.ValueInfoProto, shape: tuple[int, ...], batch: int | None) -> None:
    """Type ``v`` as float32 of ``shape`` with axis 0 = ``batch`` (``None``: the dynamic axis ``batch``)."""
    t = v.type.tensor_type
    t.elem_type = onnx.TensorProto.FLOAT
    del t.shape.dim[:]
    for k, d in enumerate(shape):
        dim = t.shape.dim.add()
        if k == 0:
            if batch:
                dim.dim_value = batch
            else:
                dim.dim_param = "batch"
        else:
            dim.dim_value = int(d)
