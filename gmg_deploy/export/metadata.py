"""The metadata every exported ONNX graph carries (``metadata_props["gmg_deploy"]``, JSON).

Schema (version 1)::

    {
      "schema": 1,
      "toolkit_version": "0.1.0",
      "graph": "step" | "sequence" | "forecast",
      "horizon": K,                            # forecast graphs only
      "config": {...ModelConfig.to_dict()...},
      "warp": "gridsample" | "gather",
      "warp_gate": "motionrnn" | "published",   # resolved warp-gate layout (also config.warp_gate)
      "batch_mode": "invariant" | "reference",
      "batch": null (dynamic) | int,
      "precision": "fp32" | "fp16" | "int8",
      "io_dtype": "float32" | "float16",      # graph inputs/outputs
      "state_dtype": "float32" | "float16",   # state_in.*/state_out.* (step graph)
      "state": [{"name": "h.0", "shape": [null, 128, 16, 16]}, ...],   # fixed order; null = batch axis
      "inputs": ["frame", "state_in.h.0", ...],  "outputs": ["next_frame", "state_out.h.0", ...],
      "test_mean": null | nested list, "test_std": null | nested list,
      "calibration": null | {...}             # INT8 only
    }

``state``, ``inputs`` and ``outputs`` are written from :class:`gmg_deploy.export.signature.StepSignature`
(the one definition of the I/O names, order and shapes); :func:`signature_of` reads it back.
Forecast graph I/O: the step graph's inputs -> ``forecast (B,K,C,H,W)`` (``forecast[:,0]`` is the step's
``next_frame``, then K-1 autoregressive frames) and ``state_out.*`` (the state after observing ``frame``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy import __version__
from gmg_deploy.errors import MetadataError
from gmg_deploy.export.signature import StepSignature
from gmg_deploy.model.config import ModelConfig

METADATA_KEY = "gmg_deploy"
#: Where the metadata JSON travels in a Triton model's ``config.pbtxt`` (``parameters``), for clients and
#: the Python-backend model (see :mod:`gmg_deploy.serve.triton_config`).
METADATA_PARAM = "gmg_deploy_metadata"
SCHEMA_VERSION = 1
__all__ = ["METADATA_KEY", "METADATA_PARAM", "SCHEMA_VERSION", "MetadataError", "build_metadata",
           "forecast_metadata", "attach_metadata", "metadata_from_proto", "read_metadata", "warp_gate_of",
           "config_from_metadata", "signature_of"]


def _jsonable(a: Any) -> Any:
    if a is None:
        return None
    return np.asarray(a, dtype=np.float64).tolist()


def build_metadata(
    config: ModelConfig,
    *,
    graph: str,
    warp: str,
    batch_mode: str,
    batch: int | None,
    precision: str = "fp32",
    io_dtype: str = "float32",
    state_dtype: str = "float32",
    test_mean: Any = None,
    test_std: Any = None,
    calibration: dict[str, Any] | None = None,
    horizon: int | None = None,
) -> dict[str, Any]:
    """The metadata dict for a graph exported from a model with ``config`` (I/O from :class:`StepSignature`)."""
    sig = StepSignature.from_config(config, graph, batch=batch, io_dtype=io_dtype, state_dtype=state_dtype,
                                    horizon=horizon)
    meta = {
        "schema": SCHEMA_VERSION,
        "toolkit_version": __version__,
        "graph": graph,
        "config": config.to_dict(),
        "warp": warp,
        "warp_gate": config.warp_gate,
        "batch_mode": batch_mode,
        "batch": batch,
        "precision": precision,
        "io_dtype": io_dtype,
        "state_dtype": state_dtype,
        "state": sig.state_records(),
        "inputs": sig.input_names,
        "outputs": sig.output_names,
        "test_mean": _jsonable(test_mean),
        "test_std": _jsonable(test_std),
        "calibration": calibration,
    }
    if sig.horizon is not None:
        meta["horizon"] = sig.horizon
    return meta


def forecast_metadata(step_meta: dict[str, Any], horizon: int) -> dict[str, Any]:
    """A step graph's metadata (any precision) turned into that of the forecast graph built from it."""
    meta = dict(step_meta)
    meta.update(graph="forecast", horizon=int(horizon))
    meta["outputs"] = StepSignature.from_metadata(meta).output_names
    return meta


def attach_metadata(model_proto: Any, meta: dict[str, Any]) -> None:
    """Store ``meta`` in an ``onnx.ModelProto``'s ``metadata_props`` (replacing an earlier entry)."""
    props = model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(meta, sort_keys=True)


def metadata_from_proto(model_proto: Any, where: str = "ONNX model") -> dict[str, Any]:
    for p in model_proto.metadata_props:
        if p.key == METADATA_KEY:
            try:
                meta = json.loads(p.value)
            except json.JSONDecodeError:
                raise MetadataError(f"{where}: metadata '{METADATA_KEY}' is not valid JSON; re-export it") from None
            if meta.get("schema") != SCHEMA_VERSION:
                raise MetadataError(
                    f"{where}: metadata schema {meta.get('schema')} is not {SCHEMA_VERSION}; re-export with this version"
                )
            return meta
    raise MetadataError(f"{where} has no gmg-deploy metadata; export it with gmg-export")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The gmg-deploy metadata of an exported ONNX file (``config`` as a dict)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise MetadataError(f"ONNX file {p} does not exist")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception:  # onnx raises DecodeError and others for non-ONNX input
        raise MetadataError(f"{p} is not a readable ONNX model") from None
    return metadata_from_proto(proto, str(p))


def warp_gate_of(meta: dict[str, Any]) -> str:
    """The graph's resolved warp-gate layout; graphs from before the setting computed ``motionrnn``."""
    return str(meta.get("warp_gate") or meta.get("config", {}).get("warp_gate") or "motionrnn")


def config_from_metadata(meta: dict[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` a graph was exported from (with its resolved warp-gate layout)."""
    return ModelConfig.from_dict({**meta["config"], "warp_gate": warp_gate_of(meta)})


def signature_of(meta: dict[str, Any]) -> StepSignature:
    """The :class:`StepSignature` (I/O names, order, shapes, dtypes) a graph's metadata describes."""
    return StepSignature.from_metadata(meta)
