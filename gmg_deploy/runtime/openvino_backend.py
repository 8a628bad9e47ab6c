"""OpenVINO backend for an exported step (or forecast) graph: OpenVINO tensors over the runtime's own buffers.

The ONNX graph is read by OpenVINO, reshaped to the backend's batch (one compile per batch size) and
compiled for ``device`` (``CPU``, ``GPU``, ``NPU``, ``AUTO``). Every input and output of a step is an
``ov.Tensor`` sharing memory with the torch buffers of :mod:`gmg_deploy.runtime.buffers`, set once on one
infer request per (source set, destination set, input) step kind, like ORT's IOBinding: a step is one
``infer()``, no tensor is set or copied per step (measured: within -3%..+5% of a bare ``infer()`` on the same
request). OpenVINO's MakeStateful transform, which keeps the state in the request's variables instead,
measured no faster (within -3%..+8% of the same bare ``infer()``; benchmarks/bench_cpu_runtimes.py), and it
cannot give ``forecast`` its scratch state, keep the observed state through a failed step or snapshot it
without copying every state tensor out and back, so the buffer sets stay.

``precision_hint`` is OpenVINO's ``INFERENCE_PRECISION_HINT``: None and ``"f32"`` run FP32 (OpenVINO's own
CPU default is bf16 on CPUs with AMX/AVX512-BF16, which would change the numbers silently), ``"bf16"`` and
``"f16"`` are refused on a device whose ``OPTIMIZATION_CAPABILITIES`` lack them. INT8 is a Q/DQ graph from
``gmg-export --precision int8``, which OpenVINO runs as INT8 as it is. ``cache_dir`` is OpenVINO's
``CACHE_DIR`` (compiled blobs reused by the next start; off by default), ``threads`` its
``INFERENCE_NUM_THREADS``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gmg_deploy.runtime.openvino_import import import_openvino
from gmg_deploy.errors import InputError
from gmg_deploy.graph.metadata import MetadataError, load_graph
from gmg_deploy.graph.signature import FRAME, state_in, state_out
from gmg_deploy.runtime.backend import StepBackend

#: OpenVINO device names the backend accepts (``GPU.1`` and the like also pass).
OV_DEVICES = ("CPU", "GPU", "NPU", "AUTO")
#: ``precision_hint`` values -> the OPTIMIZATION_CAPABILITIES entry a device must list.
PRECISION_HINTS = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}


def ov_device_name(device: str | torch.device) -> str:
    """``"cpu"``/``"CPU"``/``"gpu.1"``/``"auto"`` -> OpenVINO's spelling, else one clear error."""
    text = str(device).strip()
    head = text.split(".")[0].split(":")[0].upper()
    if head not in OV_DEVICES:
        raise InputError(f"device {text!r} is not an OpenVINO device; use one of {', '.join(OV_DEVICES)} "
                         "(lower case works too)")
    return head + text[len(head):]


class OpenVINOBackend(StepBackend):
    """OpenVINO Runtime on any OpenVINO device; the buffers stay in host memory (shared with OpenVINO)."""

    name = "openvino"
    graph_kinds = ("step", "forecast")

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "CPU",
        batch_size: int = 1,
        precision_hint: str | None = None,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        core: Any = None,
    ) -> None:
        ov = import_openvino()
        self._ov = ov
        self.path = Path(path)
        self._set_batch_size(batch_size)
        self._set_metadata(load_graph(self.path, finite=True)[1], str(self.path))  # NaN/Inf weights refused
        self.ov_device = ov_device_name(device)
        self.device = torch.device("cpu")  # where the buffers live, whatever device OpenVINO computes on
        self.core = core if core is not None else ov.Core()
        self._check_device()
        self.precision_hint = self._check_precision(precision_hint)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.precision_hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
                raise InputError(f"threads={threads!r} must be an integer >= 0 (0: OpenVINO's default)")
            if self.ov_device != "CPU" and threads:
                raise InputError(f"threads= applies to OpenVINO's CPU device, not {self.ov_device}")
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        if self.cache_dir is not None:
            if self.cache_dir.exists() and not self.cache_dir.is_dir():
                raise InputError(f"cache_dir {self.cache_dir} exists and is not a directory; give a directory")
            config["CACHE_DIR"] = str(self.cache_dir)
        if self.ov_device.startswith("AUTO"):
            config.pop("INFERENCE_PRECISION_HINT")  # AUTO passes no per-device precision; its devices decide
            if self.precision_hint != "f32":
                raise InputError("precision_hint applies to one device (CPU, GPU, NPU), not to AUTO")
        self.config_used = config
        self._allocate()  # before compiling: refuses a batch over the memory budget; forecast graphs: ``rollout``
        self.compiled = self._compile(config)
        self._check_io()
        self._requests: dict[tuple[int, int, bool], Any] = {}
        self._tensors: dict[int, Any] = {}

    # ------------------------------------------------------------------ setup
    def _check_device(self) -> None:
        have = list(self.core.available_devices)
        base = self.ov_device.split(".")[0].split(":")[0]
        if base == "AUTO":
            return
        if self.ov_device not in have and not any(d.split(".")[0] == self.ov_device for d in have):
            raise InputError(f"OpenVINO device {self.ov_device} is not available on this machine (it sees "
                             f"{', '.join(have) or 'none'}); use --device {(have[0] if have else 'CPU').lower()}")

    def device_capabilities(self) -> list[str]:
        """The device's OPTIMIZATION_CAPABILITIES (``FP32``, ``BF16``, ``FP16``, ``INT8``, ...)."""
        try:
            return [str(c) for c in self.core.get_property(self.ov_device, "OPTIMIZATION_CAPABILITIES")]
        except RuntimeError:  # a virtual device (AUTO) has none of its own
            return []

    def _check_precision(self, hint: str | None) -> str:
        if hint is None:
            return "f32"
        if hint not in PRECISION_HINTS:
            raise InputError(f"precision_hint {hint!r} is unknown; use one of {', '.join(PRECISION_HINTS)}")
        if hint != "f32" and self.metadata.precision != "fp32":
            raise InputError(f"precision_hint {hint!r} applies to an FP32 graph; {self.path.name} is "
                             f"{self.metadata.precision} already (drop --precision-hint)")
        caps = self.device_capabilities() if not self.ov_device.startswith("AUTO") else []
        if hint != "f32" and not self.ov_device.startswith("AUTO") and PRECISION_HINTS[hint] not in caps:
            raise InputError(f"OpenVINO device {self.ov_device} has no {PRECISION_HINTS[hint]} support (its "
                             f"OPTIMIZATION_CAPABILITIES: {', '.join(caps) or 'none'}); use --precision-hint f32")
        return hint

    def _compile(self, config: dict[str, Any]) -> Any:
        try:
            model = self.core.read_model(str(self.path))
        except RuntimeError as e:
            raise InputError(f"OpenVINO cannot read {self.path}: {_first_line(e)}") from None
        shapes = {}
        for port in model.inputs:
            names = port.get_names()
            sig = next((t for t in self.signature.inputs(self.batch_size) if t.name in names), None)
            if sig is None:
                raise MetadataError(f"{self.path}: graph input {port.get_any_name()!r} is not in its gmg-deploy "
                                    "metadata; re-export the model")
            shapes[port] = list(sig.shape)
        try:
            model.reshape(shapes)
            return self.core.compile_model(model, self.ov_device, config)
        except RuntimeError as e:
            raise InputError(f"OpenVINO could not compile {self.path.name} for {self.ov_device} with batch "
                             f"{self.batch_size}: {_first_line(e)}") from None

    def _check_io(self) -> None:
        ins = sorted(n for p in self.compiled.inputs for n in p.get_names())
        outs = sorted(n for p in self.compiled.outputs for n in p.get_names())
        want_in, want_out = self.signature.input_names, self.signature.output_names
        if not (set(want_in) <= set(ins) and set(want_out) <= set(outs)
                and len(self.compiled.inputs) == len(want_in) and len(self.compiled.outputs) == len(want_out)):
            raise MetadataError(f"{self.path}: graph I/O does not match its gmg-deploy metadata; re-export the model")

    # ------------------------------------------------------------------ requests
    def _tensor(self, t: torch.Tensor) -> Any:
        """The ``ov.Tensor`` sharing ``t``'s memory (one per buffer, kept as long as the buffer)."""
        key = t.data_ptr()
        ot = self._tensors.get(key)
        if ot is None:
            ot = self._ov.Tensor(t.numpy(), shared_memory=True)
            self._tensors[key] = ot
        return ot

    def _request(self, src: int, dst: int, from_pred: bool) -> Any:
        key = (src, dst, from_pred)
        req = self._requests.get(key)
        if req is None:
            req = self.compiled.create_infer_request()
            s, d = self.sets[src], self.sets[dst]
            req.set_tensor(FRAME, self._tensor(s.pred if from_pred else self.frame_in))
            req.set_tensor(self.signature.frame_output, self._tensor(d.pred if self.rollout is None else self.rollout))
            for n in s.state:
                req.set_tensor(state_in(n), self._tensor(s.state[n]))
                req.set_tensor(state_out(n), self._tensor(d.state[n]))
            self._requests[key] = req
        return req

    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        self._request(src, dst, from_pred).infer()
        if self.rollout is not None:
            self.sets[dst].pred.copy_(self.rollout[:, 0])

    def close(self) -> None:
        self._requests.clear()
        self._tensors.clear()


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
