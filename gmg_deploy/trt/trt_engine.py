"""Build engines: an ONNX graph -> a strongly typed TensorRT network -> a serialized engine, via Polygraphy's loaders.

TensorRT itself comes from :func:`gmg_deploy.trt.trt_import.import_tensorrt` (the one import; checked before
Polygraphy touches it, so its auto-install is never reached). The network, builder config and engine bytes
come from Polygraphy's TensorRT loaders (``NetworkFromOnnxPath``, ``CreateConfig``, ``EngineBytesFromNetwork``:
NVIDIA's code, which follows TensorRT's API changes across 10.x and 11.x); this module only assembles them
(:func:`build_loaders`, testable without TensorRT: the loaders are lazy) and keeps what the toolkit needs
on top: strongly typed on 10.x (``STRONGLY_TYPED`` flag; 11.x networks are always strongly typed, flag 0),
a one-line :class:`BuildError` instead of Polygraphy's exception, the timing cache written atomically
(Polygraphy's own saver rewrites the file in place), and the engine's I/O from the parsed network.

No ``BuilderFlag.FP16/INT8`` and no calibrator: precision comes from the graph (FP16 types, Q/DQ nodes).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gmg_deploy.trt.profile import BuildError
from gmg_deploy.trt.sidecar import io_record
from gmg_deploy.trt.trt_import import import_tensorrt, major_version
from gmg_deploy.errors import InputError
from gmg_deploy.io import atomic_write_bytes

#: What needs TensorRT here, for :func:`import_tensorrt`'s error.
PURPOSE = "building a TensorRT engine (gmg-build)"
POLYGRAPHY_HINT = 'pip install "gmg-deploy[trt]" (it includes polygraphy)'


def network_flags(trt: Any) -> int:
    """Creation flags: STRONGLY_TYPED on TensorRT 10, nothing on 11+ (always strongly typed)."""
    if major_version(trt) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _polygraphy_trt() -> Any:
    try:
        import polygraphy.backend.trt as pg_trt
    except ImportError:
        raise InputError(f"{PURPOSE} needs the 'polygraphy' package, which is not installed: {POLYGRAPHY_HINT}") from None
    return pg_trt


def polygraphy_profile(profile: dict[str, tuple[tuple[int, ...], ...]]) -> Any:
    """Our ``{input: (min, opt, max)}`` shapes (:func:`gmg_deploy.trt.profile.profile_shapes`) as one
    Polygraphy ``Profile``."""
    prof = _polygraphy_trt().Profile()
    for name, (lo, opt, hi) in profile.items():
        prof.add(name, tuple(lo), tuple(opt), tuple(hi))
    return prof


def build_loaders(
    onnx_path: str | Path,
    profile: dict[str, tuple[tuple[int, ...], ...]],
    *,
    strongly_typed: bool,
    workspace_pool: Any = None,
    workspace_mib: int | None = None,
    timing_cache: str | Path | None = None,
) -> tuple[Any, Any]:
    """Polygraphy's lazy ``(NetworkFromOnnxPath, CreateConfig)`` for a build (nothing runs until called).

    ``strongly_typed``: set the STRONGLY_TYPED creation flag (TensorRT 10); ``workspace_pool``: the
    ``trt.MemoryPoolType.WORKSPACE`` member, limited to ``workspace_mib`` MiB when that is given;
    ``timing_cache``: a cache file read when it exists.
    """
    pg = _polygraphy_trt()
    network = pg.NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly_typed)
    pools = {workspace_pool: int(workspace_mib) << 20} if workspace_mib else None
    cache = str(timing_cache) if timing_cache is not None and Path(timing_cache).is_file() else None
    config = pg.CreateConfig(profiles=[polygraphy_profile(profile)], memory_pool_limits=pools, load_timing_cache=cache)
    return network, config


def build_engine(
    onnx_path: str | Path,
    profile: dict[str, tuple[tuple[int, ...], ...]],
    *,
    workspace_mib: int | None = None,
    timing_cache: str | Path | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Build a serialized engine; returns ``(plan_bytes, info)`` with version, GPU and I/O tensor info."""
    trt = import_tensorrt(PURPOSE)
    pg = _polygraphy_trt()
    from polygraphy.exception import PolygraphyException

    net_loader, cfg_loader = build_loaders(onnx_path, profile, strongly_typed=network_flags(trt) != 0,
                                           workspace_pool=trt.MemoryPoolType.WORKSPACE, workspace_mib=workspace_mib,
                                           timing_cache=timing_cache)
    try:
        builder, network, parser = net_loader()
    except PolygraphyException as e:
        raise BuildError(f"TensorRT could not parse {onnx_path}: {_one_line(e)}") from None
    try:
        config = cfg_loader(builder, network)
        t0 = time.perf_counter()
        plan = pg.EngineBytesFromNetwork((builder, network, parser), config=config)()
        seconds = time.perf_counter() - t0
    except PolygraphyException as e:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path} ({_one_line(e)}); "
                         "rerun with a larger --workspace") from None
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    io = [io_record(t.name, True, t.shape, t.dtype) for t in map(network.get_input, range(network.num_inputs))]
    io += [io_record(t.name, False, t.shape, t.dtype) for t in map(network.get_output, range(network.num_outputs))]
    gpu_name, cc = gpu_info()
    return bytes(plan), {"trt_version": trt.__version__, "gpu_name": gpu_name, "compute_capability": cc,
                         "io": io, "build_seconds": seconds}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:400]


def gpu_info() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of CUDA device 0 (via torch, present with the toolkit)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0))
    except Exception:  # pragma: no cover - best effort
        pass
    return "unknown", (0, 0)
