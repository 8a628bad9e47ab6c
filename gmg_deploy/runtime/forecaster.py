"""The streaming API: :class:`Forecaster` over a TensorRT engine, an ONNX step graph or a checkpoint.

>>> fc = Forecaster.open("model.onnx", batch_size=4)      # four independent streams
>>> pred = fc.observe(frame)          # (4,C,H,W) in -> one-step-ahead prediction (4,C,H,W)
>>> future = fc.forecast(10)          # (4,10,C,H,W); the observed state is left as it was
>>> fc.reset(slots=[2])               # stream 2 starts over

Frames and predictions are in the model's units (OpenSTL-normalised data if the checkpoint had
``test_mean``/``test_std``; no normalisation is applied here).
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gmg_deploy.errors import InputError
from gmg_deploy.graph.metadata import GraphMetadata
from gmg_deploy.graph.signature import GraphSignature
from gmg_deploy.model.config import ModelConfig
from gmg_deploy.runtime.backend import StepBackend
from gmg_deploy.runtime.buffers import other_sets
from gmg_deploy.checks import check_frames
from gmg_deploy.runtime.validation import check_slots

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt", "triton", "openvino")
#: How a model served by Triton is named (``triton://HOST:PORT[,HOST:PORT...]/NAME``, parsed by
#: :func:`gmg_deploy.runtime.triton_backend.parse_urls`).
TRITON_SCHEME = "triton://"
_SUFFIX_BACKEND = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime",
                   ".ckpt": "torch", ".pth": "torch", ".pt": "torch"}


def pick_backend(path: str | Path, backend: str = "auto") -> str:
    """The backend for ``path``: ``backend`` itself, or by file type when ``"auto"``."""
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    if str(path).startswith(TRITON_SCHEME):
        if backend not in ("auto", "triton"):
            raise InputError(f"{path} is a Triton model URL, not a file for backend {backend!r}")
        return "triton"
    if backend == "triton":
        raise InputError(f"backend triton takes a triton://HOST:PORT/NAME URL, not {path}")
    p = Path(path)
    if not p.exists():
        raise InputError(f"model file {p} does not exist")
    if p.is_dir():
        raise InputError(f"model path {p} is a directory; give a .plan/.engine, .onnx or .ckpt/.pth file")
    by_suffix = _SUFFIX_BACKEND.get(p.suffix.lower())
    if backend == "auto":
        if by_suffix is None:
            raise InputError(
                f"cannot tell the backend of {p.name} from its suffix; use .plan/.engine (TensorRT), .onnx "
                "or .ckpt/.pth, or pass backend= (--backend)"
            )
        return by_suffix
    if backend == "openvino" and by_suffix == "onnxruntime":  # OpenVINO runs the same .onnx graphs
        return backend
    if by_suffix is not None and by_suffix != backend:
        raise InputError(f"{p.name} looks like a file for backend {by_suffix!r}, not for backend {backend!r}")
    return backend


def _note_verification(engine: str | Path, metadata_path: Any) -> None:
    """``warning: ...`` (one line, stderr) for an engine whose sidecar says unverified or failed."""
    from gmg_deploy.trt.sidecar import verification_note

    side = metadata_path if metadata_path is not None and Path(metadata_path).suffix.lower() == ".json" else None
    note = verification_note(engine, side)
    if note:
        print(f"warning: {note}", file=sys.stderr)


@dataclass
class StreamState:
    """A copy of every stream's state and last prediction (on the runtime's device); see ``snapshot``."""

    pred: torch.Tensor
    state: "OrderedDict[str, torch.Tensor]"
    observed: bool


class Forecaster:
    """Streaming inference: ``observe`` frames one at a time, ``forecast`` any horizon, per-slot ``reset``.

    Each of the ``batch_size`` slots is an independent stream. Observing the ``pre`` frames of a sequence
    from a fresh (or reset) state and then calling ``forecast(aft)`` reproduces ``model.predict``.
    """

    def __init__(self, backend: StepBackend) -> None:
        #: The :class:`StepBackend` running the steps (its name: :attr:`backend_name`).
        self.backend = backend
        #: Check inputs for NaN/inf (on a CUDA tensor this reads one flag back from the device per call).
        self.check_finite = True
        self._cur = 0
        self._observed = False
        #: Set index whose prediction the engine's stored ``rollout`` (forecast graphs) starts from.
        self._rollout_for: int | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        backend: str = "auto",
        device: str = "cpu",
        batch_size: int = 1,
        checkpoint: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> "Forecaster":
        """Open a TensorRT engine (``.plan``/``.engine``), an ONNX step graph or a ``.ckpt``/``.pth``, or a
        model served by Triton (``triton://HOST:PORT/NAME``, gRPC; one Triton sequence per slot).

        ``backend="auto"`` picks by file type. ``checkpoint`` (``torch`` only) holds the :func:`load_checkpoint`
        options (``trust_checkpoint``, ``config_file``, ``in_shape``, ``pre_seq_length``, ``aft_seq_length``,
        ``arch``, ``warp``, ``warp_gate``; also accepted flat, the older spelling). Extra keyword arguments go to
        the backend: for ``torch`` ``batch_mode``/``cuda_graph``; for ``onnxruntime``
        ``io_binding``/``threads``/``spin``; for ``tensorrt`` ``cuda_graph``/``metadata_path``; for ``triton`` ``timeout`` (seconds per request, default 60, also
        bounding the END requests of :meth:`close`) and ``replay`` (frames per slot replayed on a failover,
        default ``pre``; ``triton://H1:P1,H2:P2/NAME`` lists replicas: sticky routing, failover); for ``openvino`` (an .onnx graph, ``device``
        ``CPU``/``GPU``/``NPU``/``AUTO``) ``precision_hint``/``threads``/``cache_dir``.
        """
        kind = pick_backend(path, backend)
        if checkpoint and kind != "torch":
            raise InputError(f"checkpoint= options ({', '.join(checkpoint)}) apply to a checkpoint (.ckpt/.pth), "
                             f"not to {path} (backend {kind}): a graph or engine carries its configuration")
        if kind == "torch":
            from gmg_deploy.runtime.torch_backend import TorchBackend

            runner: StepBackend = TorchBackend.from_checkpoint(path, checkpoint=checkpoint, device=device,
                                                               batch_size=batch_size, **kwargs)
        elif kind == "triton":
            from gmg_deploy.runtime.triton_backend import TritonBackend

            runner = TritonBackend(str(path), device=device, batch_size=batch_size, **kwargs)
        elif kind == "openvino":
            from gmg_deploy.runtime.openvino_backend import OpenVINOBackend

            runner = OpenVINOBackend(path, device=device, batch_size=batch_size, **kwargs)
        elif kind == "onnxruntime":
            from gmg_deploy.runtime.ort_backend import OrtBackend

            runner = OrtBackend(path, device=device, batch_size=batch_size, **kwargs)
        else:
            from gmg_deploy.runtime.trt_backend import TensorRTBackend

            runner = TensorRTBackend(path, device=device, batch_size=batch_size, **kwargs)
            _note_verification(path, kwargs.get("metadata_path"))
        return cls(runner)

    @classmethod
    def from_model(cls, model: Any, *, device: str = "cpu", batch_size: int = 1, **kwargs: Any) -> "Forecaster":
        """The torch backend on an in-memory :class:`RecurrentPredictor` (its ``conv_g`` is folded in place,
        which is exact); kwargs: ``batch_mode``, ``cuda_graph``."""
        from gmg_deploy.runtime.torch_backend import TorchBackend

        return cls(TorchBackend(model, device=device, batch_size=batch_size, **kwargs))

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> ModelConfig:
        return self.backend.config

    @property
    def metadata(self) -> GraphMetadata:
        """The graph's metadata (typed; also a read-only mapping over its JSON)."""
        return self.backend.metadata

    @property
    def signature(self) -> GraphSignature:
        """The step graph's I/O contract (names, order, shapes, dtypes) the backend runs."""
        return self.backend.signature

    @property
    def backend_name(self) -> str:
        """``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``."""
        return self.backend.name

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def batch_size(self) -> int:
        return self.backend.batch_size

    @property
    def batch_mode(self) -> str:
        return self.backend.batch_mode

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.frame_shape)

    @property
    def state(self) -> "OrderedDict[str, torch.Tensor]":
        """The observed state tensors (live device buffers; read-only by convention)."""
        return self.backend.sets[self._cur].state

    # ------------------------------------------------------------------ streaming
    def observe(self, frame: Any, *, return_device: bool = False) -> Any:
        """Feed ``(B,C,H,W)`` (or ``(B,T,C,H,W)``, T steps) -> the one-step-ahead prediction(s), same rank.

        NumPy float32 by default; ``return_device=True`` gives a torch tensor on the runtime's device.
        On an invalid input (:class:`InputError`) or a failed step the state is left as it was.
        """
        ndim = check_frames(frame, self.batch_size, self.frame_shape, finite=self.check_finite)
        x = frame if isinstance(frame, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frame))
        seq = x if ndim == 5 else x[:, None]
        eng = self.backend
        src = self._cur
        a, b = other_sets(src)
        outs = []
        self._rollout_for = None  # the engine's stored rollout is overwritten below (even if a step fails)
        for t in range(seq.shape[1]):
            dst = a if src != a else b
            eng.frame_in.copy_(seq[:, t], non_blocking=True)
            eng.run(src, dst, False)
            outs.append(self._take(eng.sets[dst].pred, return_device))
            src = dst
        self._cur = src
        self._observed = True
        self._rollout_for = src if eng.rollout is not None else None
        if ndim == 4:
            return outs[0]
        return torch.stack(outs, 1) if return_device else np.stack(outs, 1)

    def forecast(self, k: int, *, return_device: bool = False) -> Any:
        """``(B,k,C,H,W)``: the last ``observe`` prediction, then ``k-1`` autoregressive steps.

        Runs in the two scratch buffer sets; the observed state and prediction are not changed.
        With a forecast graph and ``k`` <= its horizon, the rollout the last ``observe`` computed is
        returned without another engine call.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"forecast horizon k={k!r} must be an integer >= 1")
        if not self._observed:
            raise InputError("forecast() needs a prediction to start from; call observe() first")
        eng = self.backend
        stored = eng.rollout
        if stored is not None and self._rollout_for == self._cur and k <= stored.shape[1]:
            r = stored[:, : int(k)]
            return r.clone() if return_device else r.detach().to("cpu", torch.float32).numpy().copy()
        self._rollout_for = None  # the steps below overwrite the stored rollout
        src = self._cur
        a, b = other_sets(src)
        outs = [self._take(eng.sets[src].pred, return_device)]
        for _ in range(int(k) - 1):
            dst = a if src != a else b
            eng.run(src, dst, True)
            outs.append(self._take(eng.sets[dst].pred, return_device))
            src = dst
        return torch.stack(outs, 1) if return_device else np.stack(outs, 1)

    def reset(self, slots: Any = None) -> None:
        """Zero the state and last prediction of all slots (``None``) or of the given slot indices."""
        idx = check_slots(slots, self.batch_size)
        self._rollout_for = None
        self.backend.reset_slots(idx)
        s = self.backend.sets[self._cur]
        if len(idx) == self.batch_size:
            for t in s.tensors():
                t.zero_()
            self._observed = False
            return
        sel = torch.tensor(idx, device=self.device)
        for t in s.tensors():
            t.index_fill_(0, sel, 0)

    def snapshot(self) -> StreamState:
        """A device-side copy of the observed state of every slot (for :meth:`restore`)."""
        self._check_snapshot()
        s = self.backend.sets[self._cur]
        return StreamState(
            pred=s.pred.clone(),
            state=OrderedDict((n, t.clone()) for n, t in s.state.items()),
            observed=self._observed,
        )

    def restore(self, snap: StreamState) -> None:
        """Put back a :meth:`snapshot` taken from a runtime of the same model and batch size."""
        self._check_snapshot()
        if not isinstance(snap, StreamState):
            raise InputError(f"restore() takes a StreamState from snapshot(), got {type(snap).__name__}")
        s = self.backend.sets[self._cur]
        if list(snap.state) != list(s.state) or any(
            tuple(snap.state[n].shape) != tuple(t.shape) for n, t in s.state.items()
        ) or tuple(snap.pred.shape) != tuple(s.pred.shape):
            raise InputError(
                "snapshot does not fit this runtime (different model or batch size); take it from the same setup"
            )
        s.pred.copy_(snap.pred)
        for n, t in s.state.items():
            t.copy_(snap.state[n])
        self._observed = snap.observed
        self._rollout_for = None

    def synchronize(self) -> None:
        """Wait for queued device work (only needed with ``return_device=True`` on CUDA)."""
        self.backend.synchronize()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Forecaster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        C, H, W = self.frame_shape
        return (f"Forecaster(backend={self.backend_name}, device={self.device}, batch_size={self.batch_size}, "
                f"frame=({C},{H},{W}), arch={self.config.arch})")

    # ------------------------------------------------------------------ helpers
    def _check_snapshot(self) -> None:
        if not self.backend.supports_snapshot:
            raise InputError(f"snapshot()/restore() are not available with backend {self.backend_name}: "
                             "the state lives in the server")

    def _take(self, buf: torch.Tensor, on_device: bool) -> Any:
        if on_device:
            return buf.clone()
        out = buf.detach().to("cpu", torch.float32)
        arr = out.numpy()
        # On CPU with float32 buffers .to() returns the buffer itself: copy, a later step overwrites it.
        return arr.copy() if out.data_ptr() == buf.data_ptr() else arr
