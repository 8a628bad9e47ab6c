"""The ``MODEL.plan.json`` sidecar written beside a TensorRT engine."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gmg_deploy.engine.profile import BatchRange
from gmg_deploy.io import atomic_write_text

SIDECAR_SCHEMA = 1


def sidecar_path(plan: str | Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


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

    ``io`` holds ``{"name", "mode": "input"|"output", "shape": [...] (-1 dynamic), "dtype"}`` per tensor.
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
    p = sidecar_path(plan)
    atomic_write_text(p, json.dumps(content, indent=2, sort_keys=True))
    return p
