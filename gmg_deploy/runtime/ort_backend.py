"""ONNX Runtime backend for an exported step (or forecast) graph: I/O bound straight to the runtime's buffers.

A forecast graph (``gmg-export --graph forecast``) runs as a step whose ``forecast`` output is bound to
``rollout`` ``(B,K,C,H,W)``; ``forecast[:,0]`` is copied into the step's prediction buffer.

Every input and output is bound by address (``IOBinding.bind_input``/``bind_output``) to the torch
buffers of :mod:`gmg_deploy.runtime.buffers`: on CPU to host memory, on CUDA (``onnxruntime-gpu``) to
device memory on torch's current stream, so state never leaves the device. One binding per step kind is
built once and reused. ``io_binding=False`` uses plain ``session.run`` with NumPy views instead (CPU).
Checks shared with the other backends (batch, step metadata, device) live in :class:`StepBackend`; the
graph's I/O names are checked against its :class:`gmg_deploy.graph.signature.GraphSignature`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.ort_session import session_options
from gmg_deploy.graph.metadata import MetadataError, load_graph
from gmg_deploy.graph.signature import FRAME, state_in, state_out
from gmg_deploy.runtime.backend import StepBackend

_NP = {torch.float32: np.float32, torch.float16: np.float16}


class OrtBackend(StepBackend):
    """``onnxruntime`` on CPU (``CPUExecutionProvider``) or CUDA (``CUDAExecutionProvider``)."""

    name = "onnxruntime"
    graph_kinds = ("step", "forecast")

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 1,
        io_binding: bool = True,
        threads: int | None = None,
        spin: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self._set_batch_size(batch_size)
        self._set_metadata(load_graph(self.path, finite=True)[1], str(self.path))  # NaN/Inf weights refused
        self._set_device(device)
        opts = session_options(threads, spin)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError(
                    "device 'cuda' asked for, but onnxruntime has no CUDAExecutionProvider; "
                    "install onnxruntime-gpu (pip install gmg-deploy[gpu]) or use --device cpu"
                )
            stream = torch.cuda.current_stream(self.device).cuda_stream
            providers: list[Any] = [("CUDAExecutionProvider", {
                "device_id": self.device.index, "user_compute_stream": str(stream),
            })]
            io_binding = True
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self._check_io()
        self._allocate()  # forecast graphs: also ``horizon`` and the ``rollout`` buffer
        self.io_binding = io_binding
        self._bindings: dict[tuple[int, int, bool], Any] = {}

    def _check_io(self) -> None:
        ins = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        if not self.signature.matches(ins, outs):
            raise MetadataError(
                f"{self.path}: graph I/O {ins[:2]}.../{outs[:2]}... does not match its gmg-deploy metadata; "
                "re-export the model"
            )

    # ------------------------------------------------------------------ binding
    def _bind(self, binding: Any, name: str, t: torch.Tensor, output: bool) -> None:
        dev = "cuda" if t.device.type == "cuda" else "cpu"
        idx = t.device.index or 0
        fn = binding.bind_output if output else binding.bind_input
        fn(name, dev, idx, _NP[t.dtype], list(t.shape), t.data_ptr())

    def _binding(self, src: int, dst: int, from_pred: bool) -> Any:
        key = (src, dst, from_pred)
        b = self._bindings.get(key)
        if b is None:
            b = self.session.io_binding()
            s, d = self.sets[src], self.sets[dst]
            self._bind(b, FRAME, s.pred if from_pred else self.frame_in, False)
            self._bind(b, self.signature.frame_output, d.pred if self.rollout is None else self.rollout, True)
            for n in s.state:
                self._bind(b, state_in(n), s.state[n], False)
                self._bind(b, state_out(n), d.state[n], True)
            self._bindings[key] = b
        return b

    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        if self.io_binding:
            self.session.run_with_iobinding(self._binding(src, dst, from_pred))
        else:
            s, d = self.sets[src], self.sets[dst]
            feed = {FRAME: (s.pred if from_pred else self.frame_in).numpy()}
            feed.update({state_in(n): t.numpy() for n, t in s.state.items()})
            outs = self.session.run(None, feed)
            first = self.rollout if self.rollout is not None else d.pred
            for buf, arr in zip([first, *d.state.values()], outs):
                buf.copy_(torch.from_numpy(arr))
        if self.rollout is not None:
            self.sets[dst].pred.copy_(self.rollout[:, 0])
