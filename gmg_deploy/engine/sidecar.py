"""The ``MODEL.plan.json`` sidecar beside a TensorRT engine: its one writer and its one reader.

Content (written by ``gmg-build``)::

    {"schema": 1, "tensorrt_version": "10.9.0", "strongly_typed": true,
     "gpu": {"name": ..., "compute_capability": "9.0"}, "precision": "fp32"|"fp16"|"int8",
     "onnx": "model.onnx", "batch": {"min", "opt", "max"}, "workspace_mib": null|int, "build_seconds": float,
     "io": [{"name": "frame", "mode": "input", "shape": [-1, 1, 64, 64], "dtype": "FLOAT"}, ...],
     "metadata": {...gmg-deploy ONNX metadata...}}

The runtime reads ``metadata`` and ``io`` back (:func:`read_sidecar`); the rest documents the build.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from gmg_deploy.engine.engine_io import EngineIO, TensorSpec, normalise_dtype
from gmg_deploy.engine.profile import BatchRange
from gmg_deploy.export.metadata import SCHEMA_VERSION, MetadataError
from gmg_deploy.io import atomic_write_text

SIDECAR_SCHEMA = 1


def sidecar_path(plan: str | Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


def io_record(name: str, is_input: bool, shape: Sequence[int], dtype: Any) -> dict[str, Any]:
    """One ``io`` entry: ``{"name", "mode": "input"|"output", "shape" (-1 dynamic), "dtype"}``."""
    return {"name": name, "mode": "input" if is_input else "output", "shape": [int(d) for d in shape],
            "dtype": str(dtype).split(".")[-1]}


def build_sidecar(
    meta: dict[str, Any],
    *,
    onnx_path: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    batch: BatchRange,
    io: list[dict[str, Any]],
    workspace_mib: int | None,
    build_seconds: float | None = None,
) -> dict[str, Any]:
    """The sidecar content: what the engine was built from, for what, and its I/O tensors.

    ``io`` holds one :func:`io_record` per tensor.
    """
    return {
        "schema": SIDECAR_SCHEMA,
        "tensorrt_version": trt_version,
        "strongly_typed": True,
        "gpu": {"name": gpu_name, "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}"},
        "precision": meta.get("precision", "fp32"),
        "onnx": str(onnx_path),
        "batch": {"min": batch.min, "opt": batch.opt, "max": batch.max},
        "workspace_mib": workspace_mib,
        "build_seconds": None if build_seconds is None else round(build_seconds, 2),
        "io": io,
        "metadata": meta,
    }


def write_sidecar(plan: str | Path, content: dict[str, Any]) -> Path:
    """Write ``content`` atomically beside ``plan``; returns the sidecar's path."""
    p = sidecar_path(plan)
    atomic_write_text(p, json.dumps(content, indent=2, sort_keys=True))
    return p


def _spec_from_record(r: Any, where: str) -> TensorSpec:
    try:
        return TensorSpec(str(r["name"]), str(r["mode"]).lower() == "input",
                          tuple(-1 if d is None else int(d) for d in r["shape"]), normalise_dtype(r["dtype"]))
    except (KeyError, TypeError, ValueError):
        raise MetadataError(f"{where}: an I/O record lacks name/mode/shape/dtype: {str(r)[:80]}; "
                            "rebuild the engine") from None


def read_sidecar(path: str | Path) -> tuple[dict[str, Any], EngineIO | None]:
    """-> ``(metadata, the io recorded in the sidecar, or None when it records none)``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise MetadataError(f"engine sidecar {p} does not exist; rebuild with gmg-build, or pass metadata_path=") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise MetadataError(f"engine sidecar {p} is not valid JSON; rebuild the engine with gmg-build") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"engine sidecar {p} holds no JSON object; rebuild the engine with gmg-build")
    if doc.get("schema", SIDECAR_SCHEMA) != SIDECAR_SCHEMA:
        raise MetadataError(f"engine sidecar {p} has schema {doc.get('schema')!r}, this version reads "
                            f"{SIDECAR_SCHEMA}; rebuild the engine with this gmg-build")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise MetadataError(f"engine sidecar {p} has no gmg-deploy metadata; rebuild the engine with gmg-build")
    if meta.get("schema") != SCHEMA_VERSION:
        raise MetadataError(f"engine sidecar {p}: metadata schema {meta.get('schema')} is not {SCHEMA_VERSION}")
    records = doc.get("io")
    if records is not None and not isinstance(records, list):
        raise MetadataError(f"engine sidecar {p}: 'io' is not a list; rebuild the engine with gmg-build")
    specs = [_spec_from_record(r, str(p)) for r in records or []]
    return meta, (EngineIO(tuple(specs)) if specs else None)
