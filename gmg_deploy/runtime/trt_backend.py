"""TensorRT backend (10.x/11.x tensor API) on torch CUDA memory and torch's CUDA stream.

TensorRT comes from :func:`gmg_deploy.trt.trt_import.import_tensorrt` (the one import). The engine's
I/O is checked against the metadata in its ``<engine>.json`` sidecar (read by
:func:`gmg_deploy.trt.sidecar.read_sidecar`; the check is :mod:`gmg_deploy.runtime.binding_plan`);
every tensor address is set once per step kind (``set_tensor_address``) on the ping-pong buffers, and
``execute_async_v3`` runs on torch's current stream. ``cuda_graph=True`` captures each step kind into a
CUDA graph after one warm-up run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gmg_deploy.trt.engine_io import EngineIO, TensorSpec, dims_to_tuple, normalise_dtype
from gmg_deploy.trt.sidecar import read_sidecar, sidecar_path
from gmg_deploy.trt.trt_import import import_tensorrt
from gmg_deploy.graph.metadata import GraphMetadata, MetadataError
from gmg_deploy.runtime.backend import StepBackend
from gmg_deploy.runtime.binding_plan import check_sidecar_matches, make_binding_plan

#: What needs TensorRT here, and what to do instead, for :func:`import_tensorrt`'s error.
PURPOSE = "the TensorRT backend"
ALTERNATIVE = "use the .onnx file with --backend onnxruntime"


def load_metadata_for(engine_path: Path, metadata_path: str | Path | None) -> tuple[GraphMetadata, EngineIO | None]:
    """Metadata from ``metadata_path`` (sidecar .json or the source .onnx) or the engine's sidecar."""
    if metadata_path is not None and Path(metadata_path).suffix.lower() == ".onnx":
        return GraphMetadata.read(metadata_path), None
    side = Path(metadata_path) if metadata_path is not None else sidecar_path(engine_path)
    return read_sidecar(side)


def engine_io(engine: Any, trt: Any) -> EngineIO:
    """Describe a deserialised ``ICudaEngine`` as plain data."""
    specs, profiles = [], {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = normalise_dtype(str(engine.get_tensor_dtype(name)))
        specs.append(TensorSpec(name, is_input, dims_to_tuple(engine.get_tensor_shape(name)), dtype))
        if is_input and engine.num_optimization_profiles > 0:
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            profiles[name] = (dims_to_tuple(lo), dims_to_tuple(opt), dims_to_tuple(hi))
    return EngineIO(tuple(specs), profiles)


class TensorRTBackend(StepBackend):
    """A deserialised engine, its I/O bound by :class:`BindingPlan` to the shared buffer sets."""

    name = "tensorrt"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cuda",
        batch_size: int = 1,
        cuda_graph: bool = False,
        metadata_path: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self._set_batch_size(batch_size)
        meta, recorded = load_metadata_for(self.path, metadata_path)
        self._set_metadata(meta, str(self.path))
        self._require_device_type(device, "cuda")
        trt = import_tensorrt(PURPOSE, ALTERNATIVE)
        self._set_device(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                raise MetadataError(f"{self.path} cannot be deserialised by TensorRT {trt.__version__}; "
                                    "rebuild it on this machine with gmg-build")
            io = engine_io(self._engine, trt)
            check_sidecar_matches(io, recorded, str(self.path))
            self.plan = make_binding_plan(io, self.metadata, self.batch_size, str(self.path))
            self._allocate()
            self._context = self._engine.create_execution_context()
            for name, shape in self.plan.input_shapes.items():
                if not self._context.set_input_shape(name, shape):
                    raise MetadataError(f"{self.path}: TensorRT refused input shape {list(shape)} for {name}")
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, int, bool], Any] = {}
        self._bound: tuple[int, int, bool] | None = None

    def _buffer(self, role: str, state_name: str | None, src: int, dst: int, from_pred: bool, is_input: bool):
        s, d = self.sets[src], self.sets[dst]
        if role == "frame":  # roles: GraphSignature's TensorSig.role
            return s.pred if from_pred else self.frame_in
        if role == "pred":
            return d.pred
        return (s if is_input else d).state[state_name]

    def _set_addresses(self, key: tuple[int, int, bool]) -> None:
        if self._bound == key:
            return
        for b in self.plan.bindings:
            buf = self._buffer(b.role, b.state_name, *key, b.is_input)
            self._context.set_tensor_address(b.name, buf.data_ptr())
        self._bound = key

    def _execute(self) -> None:
        if not self._context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.path}")

    def run_impl(self, src: int, dst: int, from_pred: bool) -> None:
        key = (src, dst, from_pred)
        if not self.cuda_graph:
            self._set_addresses(key)
            self._execute()
            return
        graph = self._graphs.get(key)
        if graph is None:
            self._set_addresses(key)
            self._execute()  # warm-up: TensorRT finishes lazy setup outside the capture
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.graph(graph, stream=stream):
                self._execute()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            self._graphs[key] = graph
        graph.replay()

    def close(self) -> None:
        self._graphs.clear()
        self._context = None
        self._engine = None
