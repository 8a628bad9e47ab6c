"""The ranges file: its format, writing and reading it, and whether it fits a graph (fingerprint).

Ranges file (JSON, ``format: gmg-deploy-ranges``, ``version: 1``): ``method``, ``fingerprint`` (hash of
the model configuration, graph kind, warp, warp-gate layout, batch mode and weights), ``metadata`` (the graph's), counts,
and ``tensors``: name -> ``{"amax", "min", "max", "kind": "activation"|"state"|"input"}``, with
``per_step_amax`` for state inputs; ``keep_float``: nodes the Q/DQ pass leaves in float (editable).
Outputs of Conv/MatMul/Gemm are observed too (``"quantized_output": true``): the ``cpu`` Q/DQ target
quantizes them (unsigned, asymmetric); a file without them still serves the ``tensorrt`` target. An
asymmetric range is :func:`asymmetric_range`: ``[min, max]`` clipped to ``[-amax, amax]``, so the
method's clipping carries over to both sides.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy.errors import CalibrationError
from gmg_deploy.export.metadata import metadata_from_proto, warp_gate_of
from gmg_deploy.io import atomic_write_text
from gmg_deploy.precision.qdq_rules import quantizable_inputs

RANGES_FORMAT = "gmg-deploy-ranges"
RANGES_VERSION = 1


def fingerprint(model: Any) -> str:
    """sha256 over the model-identifying metadata and the float weights of an FP32 graph."""
    from onnx import numpy_helper

    meta = metadata_from_proto(model)
    h = hashlib.sha256()
    ident = {k: meta.get(k) for k in ("config", "graph", "warp", "batch_mode")}  # config holds warp_gate
    h.update(json.dumps(ident, sort_keys=True).encode())
    for t in sorted(model.graph.initializer, key=lambda t: t.name):
        if t.data_type == 1:
            h.update(t.name.encode())
            h.update(np.ascontiguousarray(numpy_helper.to_array(t)).tobytes())
    return h.hexdigest()[:32]


def asymmetric_range(entry: dict[str, Any]) -> tuple[float, float]:
    """``(lo, hi)`` for an unsigned asymmetric quantizer: observed min/max clipped to the method's
    ``amax``, widened to include 0 (a zero point must represent 0 exactly)."""
    a = float(entry["amax"])
    lo, hi = max(float(entry["min"]), -a), min(float(entry["max"]), a)
    return min(lo, 0.0), max(hi, 0.0)


def save_ranges(doc: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True))


def load_ranges(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"ranges file {p} does not exist; make it with gmg-calibrate")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CalibrationError(f"ranges file {p} is not JSON; make it with gmg-calibrate") from None
    if not isinstance(doc, dict) or doc.get("format") != RANGES_FORMAT:
        raise CalibrationError(f"{p} is not a gmg-deploy ranges file (format != {RANGES_FORMAT})")
    if doc.get("version") != RANGES_VERSION:
        raise CalibrationError(f"ranges file {p} has version {doc.get('version')}, expected {RANGES_VERSION}; re-run gmg-calibrate")
    return doc


def _difference(doc: dict[str, Any], model: Any) -> str:
    """What separates the ranges file's graph from ``model``: warp, batch mode, graph kind, config or weights."""
    theirs, ours = doc.get("metadata") or {}, metadata_from_proto(model)
    diffs = [f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in ("warp", "batch_mode", "graph")
             if theirs.get(k) != ours.get(k)]
    a, b = theirs.get("config") or {}, ours.get("config") or {}
    diffs += [f"config {k} {a.get(k)!r} there, {b.get(k)!r} here" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(diffs[:3]) if diffs else "same configuration and warp but different weights (another checkpoint)"


def check_ranges_match(doc: dict[str, Any], model: Any, where: str = "ranges file") -> None:
    """Refuse ranges made on another model/graph (fingerprint) or lacking tensors this graph quantizes."""
    fp = fingerprint(model)
    if doc.get("fingerprint") != fp:
        doc_gate, gate = warp_gate_of(doc.get("metadata") or {}), warp_gate_of(metadata_from_proto(model))
        if doc_gate != gate:
            raise CalibrationError(
                f"{where} was calibrated with warp-gate layout {doc_gate!r}, this graph uses {gate!r}: the layouts "
                "differ, so they are two different models; re-run gmg-calibrate on this graph (or export with "
                f"--warp-gate {doc_gate})"
            )
        raise CalibrationError(f"{where} was calibrated on a different graph: {_difference(doc, model)}; "
                               "re-run gmg-calibrate on the model and graph you quantize")
    missing = [t for t in quantizable_inputs(model) if t not in doc.get("tensors", {})]
    if missing:
        raise CalibrationError(
            f"{where} lacks ranges for {len(missing)} tensor(s) of this graph (e.g. {missing[0]}); "
            "re-run gmg-calibrate on a graph exported by this gmg-deploy version"
        )
