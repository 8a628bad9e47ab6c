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

from gmg_deploy.errors import CalibrationError, MetadataError
from gmg_deploy.graph.metadata import GraphMetadata, as_metadata
from gmg_deploy.io import atomic_write_text
from gmg_deploy.precision.qdq_rules import quantizable_inputs

RANGES_FORMAT = "gmg-deploy-ranges"
RANGES_VERSION = 1


def fingerprint(model: Any, meta: GraphMetadata | None = None) -> str:
    """sha256 over the model-identifying metadata (:meth:`GraphMetadata.identity`: config with warp gate, graph
    kind, warp, batch mode) and the float weights of an FP32 graph; ``meta``: its metadata when already read."""
    from onnx import numpy_helper

    meta = GraphMetadata.from_proto(model) if meta is None else meta
    h = hashlib.sha256()
    h.update(json.dumps(meta.identity(), sort_keys=True).encode())
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


def _recorded(doc: dict[str, Any], where: str) -> GraphMetadata | None:
    """The graph metadata a ranges document recorded; None when it has none or it is unreadable (hand-edited)."""
    try:
        return as_metadata(doc.get("metadata") or {}, f"{where} metadata")
    except MetadataError:
        return None


def _difference(theirs: GraphMetadata | None, ours: GraphMetadata) -> str:
    """What separates the ranges file's graph from ours: warp, batch mode, graph kind, config or weights."""
    if theirs is None:
        return "the ranges file records no readable graph metadata"
    diffs = [f"{k} {getattr(theirs, k)!r} there, {getattr(ours, k)!r} here" for k in ("warp", "batch_mode", "graph")
             if getattr(theirs, k) != getattr(ours, k)]
    a, b = theirs.config_dict, ours.config_dict
    diffs += [f"config {k} {a.get(k)!r} there, {b.get(k)!r} here" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(diffs[:3]) if diffs else "same configuration and warp but different weights (another checkpoint)"


def check_ranges_match(doc: dict[str, Any], model: Any, where: str = "ranges file", *,
                       meta: GraphMetadata | None = None) -> None:
    """Refuse ranges made on another model/graph (fingerprint) or lacking tensors this graph quantizes;
    ``meta``: the graph's metadata when already read."""
    ours = GraphMetadata.from_proto(model) if meta is None else meta
    if doc.get("fingerprint") != fingerprint(model, ours):
        theirs = _recorded(doc, where)
        if theirs is not None and theirs.warp_gate != ours.warp_gate:
            raise CalibrationError(
                f"{where} was calibrated with warp-gate layout {theirs.warp_gate!r}, this graph uses {ours.warp_gate!r}: "
                "the layouts differ, so they are two different models; re-run gmg-calibrate on this graph (or export "
                f"with --warp-gate {theirs.warp_gate})"
            )
        raise CalibrationError(f"{where} was calibrated on a different graph: {_difference(theirs, ours)}; "
                               "re-run gmg-calibrate on the model and graph you quantize")
    missing = [t for t in quantizable_inputs(model) if t not in doc.get("tensors", {})]
    if missing:
        raise CalibrationError(
            f"{where} lacks ranges for {len(missing)} tensor(s) of this graph (e.g. {missing[0]}); "
            "re-run gmg-calibrate on a graph exported by this gmg-deploy version"
        )
