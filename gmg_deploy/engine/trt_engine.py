"""Build engines: parse an ONNX graph into a strongly typed TensorRT network and serialize an engine.

TensorRT itself comes from :func:`gmg_deploy.engine.trt_import.import_tensorrt` (the one import).

TensorRT 10.x: ``create_network(1 << STRONGLY_TYPED)``; 11.x: networks are always strongly typed (flag 0).
No ``BuilderFlag.FP16/INT8`` and no calibrator: precision comes from the graph (FP16 types, Q/DQ nodes).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gmg_deploy.engine.profile import BuildError
from gmg_deploy.engine.sidecar import io_record
from gmg_deploy.engine.trt_import import import_tensorrt, major_version
from gmg_deploy.io import atomic_write_bytes

#: What needs TensorRT here, for :func:`import_tensorrt`'s error.
PURPOSE = "building a TensorRT engine (gmg-build)"


def network_flags(trt: Any) -> int:
    """Creation flags: STRONGLY_TYPED on TensorRT 10, nothing on 11+ (always strongly typed)."""
    if major_version(trt) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def build_engine(
    onnx_path: str | Path,
    profile: dict[str, tuple[tuple[int, ...], ...]],
    *,
    workspace_mib: int | None = None,
    timing_cache: str | Path | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Build a serialized engine; returns ``(plan_bytes, info)`` with version, GPU and I/O tensor info."""
    trt = import_tensorrt(PURPOSE)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT could not parse {onnx_path}: {errs[:400]}")
    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    prof = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        prof.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(prof)
    cache = None
    if timing_cache is not None:
        tc = Path(timing_cache)
        cache = config.create_timing_cache(tc.read_bytes() if tc.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path}; rerun with a larger --workspace")
    if cache is not None:
        atomic_write_bytes(timing_cache, bytes(cache.serialize()))
    io = [io_record(t.name, True, t.shape, t.dtype) for t in map(network.get_input, range(network.num_inputs))]
    io += [io_record(t.name, False, t.shape, t.dtype) for t in map(network.get_output, range(network.num_outputs))]
    gpu_name, cc = gpu_info()
    return bytes(plan), {"trt_version": trt.__version__, "gpu_name": gpu_name, "compute_capability": cc,
                         "io": io, "build_seconds": seconds}


def gpu_info() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of CUDA device 0 (via torch, present with the toolkit)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0))
    except Exception:  # pragma: no cover - best effort
        pass
    return "unknown", (0, 0)
