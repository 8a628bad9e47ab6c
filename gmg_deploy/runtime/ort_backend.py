"""ONNX Runtime backend for an exported step graph: I/O bound straight to the runtime's buffers.

Every input and output is bound by address (``IOBinding.bind_input``/``bind_output``) to the torch
buffers of :mod:`gmg_deploy.runtime.buffers`: on CPU to host memory, on CUDA (``onnxruntime-gpu``) to
device memory on torch's current stream, so state never leaves the device. One binding per step kind is
built once and reused. ``io_binding=False`` uses plain ``session.run`` with NumPy views instead (CPU).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import STATE_IN, STATE_OUT, MetadataError, config_from_metadata, read_metadata
from gmg_deploy.evaluate.ort_session import session_options
from gmg_deploy.runtime.backend import StepBackend
from gmg_deploy.runtime.torch_backend import resolve_device

_NP = {torch.float32: np.float32, torch.float16: np.float16}


def check_step_metadata(meta: dict[str, Any], where: str, batch_size: int) -> None:
    """The metadata describes a step graph usable with ``batch_size`` streams, else one clear error."""
    if meta.get("graph") != "step":
        raise MetadataError(
            f"{where} is a {meta.get('graph')!r} graph; the streaming runtime needs a step graph "
            "(gmg-export --graph step)"
        )
    fixed = meta.get("batch")
    if fixed is not None and int(fixed) != batch_size:
        raise MetadataError(
            f"{where} was exported for batch {fixed}, but batch_size={batch_size}; use --batch-size {fixed} "
            "or export with a dynamic batch"
        )


class OrtBackend(StepBackend):
    """``onnxruntime`` on CPU (``CPUExecutionProvider``) or CUDA (``CUDAExecutionProvider``)."""

    name = "onnxruntime"

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
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InputError(f"batch_size={batch_size} must be >= 1")
        self.metadata = read_metadata(self.path)
        check_step_metadata(self.metadata, str(self.path), self.batch_size)
        self.config = config_from_metadata(self.metadata)
        self.batch_mode = self.metadata.get("batch_mode", "invariant")
        self.device = resolve_device(device)
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
        self._allocate(self.metadata.get("io_dtype", "float32"), self.metadata.get("state_dtype", "float32"))
        self.io_binding = io_binding
        self._bindings: dict[tuple[int, int, bool], Any] = {}

    def _check_io(self) -> None:
        ins = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        if ins != list(self.metadata["inputs"]) or outs != list(self.metadata["outputs"]):
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
            self._bind(b, "frame", s.pred if from_pred else self.frame_in, False)
            self._bind(b, "next_frame", d.pred, True)
            for n in s.state:
                self._bind(b, STATE_IN + n, s.state[n], False)
                self._bind(b, STATE_OUT + n, d.state[n], True)
            self._bindings[key] = b
        return b

    def run(self, src: int, dst: int, from_pred: bool) -> None:
        if self.io_binding:
            self.session.run_with_iobinding(self._binding(src, dst, from_pred))
            return
        s, d = self.sets[src], self.sets[dst]
        feed = {"frame": (s.pred if from_pred else self.frame_in).numpy()}
        feed.update({STATE_IN + n: t.numpy() for n, t in s.state.items()})
        outs = self.session.run(None, feed)
        for buf, arr in zip(d.tensors(), outs):
            buf.copy_(torch.from_numpy(arr))
