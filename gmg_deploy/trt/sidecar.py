"""The ``MODEL.plan.json`` sidecar beside a TensorRT engine: its one writer and its one reader.

Content (written by ``gmg-build``)::

    {"schema": 1, "tensorrt_version": "10.9.0", "strongly_typed": true,
     "gpu": {"name": ..., "compute_capability": "9.0"}, "precision": "fp32"|"fp16"|"int8",
     "onnx": "model.onnx", "batch": {"min", "opt", "max"}, "workspace_mib": null|int, "build_seconds": float,
     "io": [{"name": "frame", "mode": "input", "shape": [-1, 1, 64, 64], "dtype": "FLOAT"}, ...],
     "metadata": {...gmg-deploy ONNX metadata...},
     "verification": {"status": "unverified"} | {"status": "passed"|"failed", "passed": bool, "data":
                      {"path", "shape", "sha256"}, "reference", "limit", "max_abs_limit", "worst_drop", ...}}

The runtime reads ``metadata`` (as a :class:`gmg_deploy.graph.metadata.GraphMetadata`, checked once) and ``io``
back (:func:`read_sidecar`); the rest documents the build.
``gmg-build --verify`` records ``verification`` (:func:`record_verification`); :func:`verification_note`
is the one line the runtime prints for an engine that is unverified or failed it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from gmg_deploy.trt.engine_io import EngineIO, TensorSpec, normalise_dtype
from gmg_deploy.trt.profile import BatchRange
from gmg_deploy.graph.metadata import GraphMetadata, MetadataError, MetadataLike, as_metadata
from gmg_deploy.io import atomic_write_text

SIDECAR_SCHEMA = 1
#: ``verification`` of an engine nobody scored yet.
UNVERIFIED = {"status": "unverified"}
HOW_TO_VERIFY = "gmg-build SOURCE.onnx -o ENGINE --verify HELD_OUT.npy (or gmg-compare SOURCE.onnx ENGINE --data HELD_OUT.npy --check)"


def sidecar_path(plan: str | Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


def io_record(name: str, is_input: bool, shape: Sequence[int], dtype: Any) -> dict[str, Any]:
    """One ``io`` entry: ``{"name", "mode": "input"|"output", "shape" (-1 dynamic), "dtype"}``."""
    return {"name": name, "mode": "input" if is_input else "output", "shape": [int(d) for d in shape],
            "dtype": str(dtype).split(".")[-1]}


def build_sidecar(
    meta: MetadataLike,
    *,
    onnx_path: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    batch: BatchRange,
    io: list[dict[str, Any]],
    workspace_mib: int | None,
    build_seconds: float | None = None,
    unverified_reason: str | None = None,
) -> dict[str, Any]:
    """The sidecar content: what the engine was built from, for what, and its I/O tensors.

    ``io`` holds one :func:`io_record` per tensor; ``meta`` is the source graph's metadata (or its dict).
    """
    m = as_metadata(meta)
    return {
        "schema": SIDECAR_SCHEMA,
        "tensorrt_version": trt_version,
        "strongly_typed": True,
        "gpu": {"name": gpu_name, "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}"},
        "precision": m.precision,
        "onnx": str(onnx_path),
        "batch": {"min": batch.min, "opt": batch.opt, "max": batch.max},
        "workspace_mib": workspace_mib,
        "build_seconds": None if build_seconds is None else round(build_seconds, 2),
        "io": io,
        "metadata": m.to_dict(),
        "verification": dict(UNVERIFIED, reason=unverified_reason) if unverified_reason else dict(UNVERIFIED),
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


def read_sidecar_doc(path: str | Path, missing: str | None = None) -> dict[str, Any]:
    """The sidecar file's whole JSON object (one :class:`MetadataError` when it is missing or not a JSON object;
    ``missing`` is that error's text when it does not exist). Its ``metadata``: :func:`read_sidecar`."""
    p = Path(path)
    missing = missing or f"engine sidecar {p} does not exist; rebuild the engine with gmg-build"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise MetadataError(missing) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise MetadataError(f"engine sidecar {p} is not valid JSON; rebuild the engine with gmg-build") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"engine sidecar {p} holds no JSON object; rebuild the engine with gmg-build")
    return doc


def read_sidecar(path: str | Path) -> tuple[GraphMetadata, EngineIO | None]:
    """-> ``(metadata, the io recorded in the sidecar, or None when it records none)``."""
    p = Path(path)
    doc = read_sidecar_doc(p, f"TensorRT engine sidecar {p} does not exist; rebuild with gmg-build (it writes the "
                       "engine's metadata beside the .plan), or copy the engine's .plan.json next to it "
                       "(Python: Forecaster.open(engine, metadata_path=SOURCE.onnx))")
    if doc.get("schema", SIDECAR_SCHEMA) != SIDECAR_SCHEMA:
        raise MetadataError(f"engine sidecar {p} has schema {doc.get('schema')!r}, this version reads "
                            f"{SIDECAR_SCHEMA}; rebuild the engine with this gmg-build")
    if not isinstance(doc.get("metadata"), dict):
        raise MetadataError(f"engine sidecar {p} has no gmg-deploy metadata; rebuild the engine with gmg-build")
    meta = GraphMetadata(doc["metadata"], f"engine sidecar {p}")  # schema, config, names: checked once
    records = doc.get("io")
    if records is not None and not isinstance(records, list):
        raise MetadataError(f"engine sidecar {p}: 'io' is not a list; rebuild the engine with gmg-build")
    specs = [_spec_from_record(r, str(p)) for r in records or []]
    return meta, (EngineIO(tuple(specs)) if specs else None)


def record_verification(sidecar: str | Path, record: dict[str, Any]) -> None:
    """Set the sidecar file's ``verification`` to ``record`` (rewritten atomically; the rest is kept)."""
    p = Path(sidecar)
    doc = read_sidecar_doc(p)
    doc["verification"] = record
    atomic_write_text(p, json.dumps(doc, indent=2, sort_keys=True))


def verification_note(engine: str | Path, sidecar: str | Path | None = None) -> str | None:
    """One line for an engine whose sidecar says it is unverified or failed verification; None when it passed
    (or when there is no readable sidecar: the metadata reader reports that)."""
    p = Path(sidecar) if sidecar is not None else sidecar_path(engine)
    try:
        doc = read_sidecar_doc(p)
    except MetadataError:
        return None
    v = doc.get("verification")
    if not isinstance(v, dict) or v.get("status", "unverified") == "unverified":
        why = f" ({v['reason']})" if isinstance(v, dict) and v.get("reason") else ""
        return f"engine {engine} is unverified{why}: its accuracy was never scored; verify it: {HOW_TO_VERIFY}"
    if v.get("passed") is True:
        return None
    drop, lim = v.get("worst_drop"), v.get("limit")
    what = (f"worst SSIM drop {drop:.3g} > limit {lim:g}" if isinstance(drop, (int, float)) and
            isinstance(lim, (int, float)) else "outside its limit")
    data = (v.get("data") or {}).get("path", "?") if isinstance(v.get("data"), dict) else "?"
    return (f"engine {engine} FAILED verification on {data} ({what}, first at step {v.get('first_failing_step')}); "
            f"rebuild it (other precision or calibration) and verify again: {HOW_TO_VERIFY}")


def recorded_batch(plan: str | Path) -> tuple[int, int] | None:
    """The ``(min, max)`` batch of the engine's optimization profile from its sidecar, or None if not recorded."""
    try:
        b = read_sidecar_doc(sidecar_path(plan)).get("batch") or {}
        return int(b["min"]), int(b["max"])
    except (MetadataError, ValueError, AttributeError, KeyError, TypeError):
        return None
