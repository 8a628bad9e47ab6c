"""Score any two models the runtime opens against each other (gmg-compare, gmg-build --verify).

Each side is anything :meth:`Forecaster.open` takes (``.ckpt``/``.pth``, step or forecast ``.onnx``,
``.plan``, ``triton://``). Both roll out through the runtime - observe ``pre`` frames with chained state,
then ``forecast(aft)`` - and :func:`gmg_deploy.evaluate.accuracy.score_forecasts` scores them: one code path
for every backend. A sequence graph (which the runtime does not stream) takes the batched ORT rollout of
:func:`gmg_deploy.evaluate.accuracy.compare_graphs` instead; for step graphs that rollout is no faster than
the runtime's (measured equal: the runtime binds ORT's I/O to its buffers), so they stream like the rest.
FP16 ONNX graphs run on ORT through :func:`gmg_deploy.precision.fp16.emulate_fp16` unless ``emulate=False``.
:func:`verify_engine` scores an engine against its reference and records the result in its sidecar.
"""
from __future__ import annotations

import datetime
import hashlib
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy.trt.sidecar import read_sidecar_doc, record_verification, recorded_batch, sidecar_path
from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.accuracy import Comparison, check_same_model, compare_graphs, score_forecasts
from gmg_deploy.evaluate.rollout import sequence_frames
from gmg_deploy.graph.metadata import GraphMetadata, MetadataError, MetadataLike, as_metadata, load_graph
from gmg_deploy.runtime.forecaster import TRITON_SCHEME, Forecaster, pick_backend

#: Sequences a side forecasts per runtime call unless told otherwise.
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a model path or ``triton://`` URL, its backend, and backend options."""

    path: str
    backend: str = "auto"
    #: Round FP16 tensors between ops when an FP16 ONNX graph runs on ONNX Runtime (CPU would skip it).
    emulate: bool = True
    #: Extra :meth:`Forecaster.open` keyword arguments (e.g. ``trust_checkpoint``, ``warp_gate``).
    options: dict[str, Any] = field(default_factory=dict)


def effective_precision(meta: MetadataLike, side: Side) -> str:
    """The precision a side computes in: its graph's, or FP16-class for an FP32 graph that OpenVINO runs with a
    ``bf16``/``f16`` precision hint (the FP16/BF16 limit, 0.002, applies then)."""
    precision = as_metadata(meta).precision
    if precision == "fp32" and side.options.get("precision_hint") in ("bf16", "f16"):
        return "fp16"
    return precision


def side_kind(side: Side, what: str) -> str:
    """The backend ``side`` runs on; a missing file is one "not found" line naming ``what``."""
    if not str(side.path).startswith(TRITON_SCHEME) and not Path(side.path).exists():
        raise InputError(f"{what} {side.path} not found; give a .ckpt/.pth, .onnx, .plan file or a triton:// URL")
    return pick_backend(side.path, side.backend)


def forecast_sequences(fc: Forecaster, frames: np.ndarray, aft: int | None = None) -> np.ndarray:
    """``(N, aft, C, H, W)`` float32: per chunk of ``fc.batch_size`` sequences, reset, observe the first ``pre``
    frames with chained state, then ``forecast(aft)`` (a short last chunk is padded with its last sequence)."""
    cfg = fc.config
    pre = int(cfg.pre_seq_length)
    aft = int(cfg.aft_seq_length) if aft is None else int(aft)
    B = fc.batch_size
    outs = []
    for s in range(0, frames.shape[0], B):
        chunk = frames[s : s + B, :pre]
        n = chunk.shape[0]
        if n < B:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], B - n, axis=0)])
        fc.reset()
        fc.observe(np.ascontiguousarray(chunk, dtype=np.float32))
        outs.append(np.asarray(fc.forecast(aft), dtype=np.float32)[:n])
    return np.concatenate(outs)


def compare_models(
    reference: Side | str,
    candidate: Side | str,
    frames: np.ndarray,
    *,
    batch_size: int = DEFAULT_BATCH,
    threads: int | None = 1,
    spin: bool = True,
    limit: float | None = None,
    max_abs_limit: float | None = None,
    names: tuple[str, str] | None = None,
) -> Comparison:
    """Forecast ``frames`` ``(N, T>=pre, C, H, W)`` with both sides and score the candidate per step.

    ``threads``/``spin`` apply to ONNX Runtime sides; limits default to the candidate's precision
    (:func:`score_forecasts`). ``extra`` of the result names each side's backend and the rollout used.
    """
    ref = reference if isinstance(reference, Side) else Side(str(reference))
    cand = candidate if isinstance(candidate, Side) else Side(str(candidate))
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size} must be >= 1")
    kinds = (side_kind(ref, "reference"), side_kind(cand, "candidate"))
    names = names or (ref.path, cand.path)
    extra: dict[str, Any] = {"reference_backend": kinds[0], "candidate_backend": kinds[1]}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gmg-compare-")))
        graphs = [_ort_graph(s, tmp / f"{i}.onnx") if k == "onnxruntime" else None
                  for i, (s, k) in enumerate(zip((ref, cand), kinds))]
        if any(g is not None and g[2] == "sequence" for g in graphs):  # the runtime streams steps; this is one call
            if not all(g is not None and g[2] in ("step", "sequence") for g in graphs):
                raise InputError("a sequence graph runs in ONNX Runtime's batch rollout only; compare it with a step "
                                 "graph .onnx, or export a step/forecast graph for the other backends")
            cmp = compare_graphs(graphs[0][0], graphs[1][0], frames, batch_size=batch_size, names=names,
                                 threads=threads, spin=spin, limit=limit, max_abs_limit=max_abs_limit)
            cmp.extra.update(extra, rollout="onnxruntime batch")
            return cmp
        fcs = []
        for s, k, g in zip((ref, cand), kinds, graphs):
            path = g[1] if g is not None else s.path
            fcs.append(stack.enter_context(_open(s, k, path, frames.shape[0], batch_size, threads, spin)))
        gate = check_same_model(fcs[0].metadata, fcs[1].metadata)
        frames = sequence_frames(frames, fcs[0].metadata)
        cfg = fcs[0].config
        pre, aft = int(cfg.pre_seq_length), int(cfg.aft_seq_length)
        a = forecast_sequences(fcs[0], frames, aft)
        b = forecast_sequences(fcs[1], frames, aft)
        truth = frames[:, pre : pre + aft] if frames.shape[1] >= pre + aft else None
        extra.update(warp_gate=gate, rollout="runtime")
        return score_forecasts(a, b, truth, precision=effective_precision(fcs[1].metadata, cand), names=names,
                               limit=limit, max_abs_limit=max_abs_limit, extra=extra)


def _ort_graph(side: Side, emulated_path: Path) -> tuple[Any, str, str]:
    """An ONNX side -> (ModelProto to score, a file the runtime can open, graph kind); FP16 graphs emulated."""
    import onnx

    from gmg_deploy.precision.fp16 import emulate_fp16

    proto, meta = load_graph(side.path, finite=True)  # one error for a missing, non-ONNX or NaN-weight file
    kind = meta.graph
    if meta.precision != "fp16" or not side.emulate:
        return proto, side.path, kind
    emu = emulate_fp16(proto)
    meta.replace(io_dtype="float32", state_dtype="float32").attach(emu)  # the emulation's I/O is FP32
    onnx.save(emu, emulated_path)
    return emu, str(emulated_path), kind


def _open(side: Side, kind: str, path: str, sequences: int, batch_size: int, threads: int | None,
          spin: bool) -> Forecaster:
    opts = dict(side.options)
    batch = min(batch_size, sequences)
    if kind == "onnxruntime":
        opts.update(threads=threads, spin=spin)
        fixed = GraphMetadata.read(path).batch
        batch = int(fixed) if fixed else batch
    if kind == "tensorrt":  # constructed directly: Forecaster.open's "unverified engine" note is not for a check
        from gmg_deploy.runtime.trt_backend import TensorRTBackend, load_metadata_for

        meta, _ = load_metadata_for(Path(path), opts.get("metadata_path"))
        fixed = meta.batch
        lo_hi = recorded_batch(path)
        if lo_hi is not None:  # within the engine's optimization profile
            batch = max(lo_hi[0], min(batch, lo_hi[1]))
        return Forecaster(TensorRTBackend(path, device=opts.pop("device", "cuda"),
                                          batch_size=int(fixed) if fixed else batch, **opts))
    return Forecaster.open(path, backend=kind, batch_size=batch, **opts)


# ---------------------------------------------------------------------------------------------- engine verification
def data_fingerprint(path: str | Path, frames: np.ndarray) -> dict[str, Any]:
    """What was scored: the data file, the shape used and the SHA-256 of those frames (float32, C order)."""
    a = np.ascontiguousarray(frames, dtype=np.float32)
    return {"path": str(path), "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def verification_record(cmp: Comparison, data: dict[str, Any], reference: str) -> dict[str, Any]:
    """The sidecar's ``verification`` entry for a scored engine."""
    return {
        "status": "passed" if cmp.passed else "failed",
        "passed": bool(cmp.passed),
        "data": data,
        "reference": reference,
        "reference_backend": cmp.extra.get("reference_backend"),
        "precision": cmp.precision,
        "limit": cmp.limit,
        "max_abs_limit": cmp.max_abs_limit,
        "worst_drop": cmp.worst_drop,
        "worst_max_abs": float(max(cmp.max_abs)),
        "first_failing_step": cmp.first_failing_step,
        "verified_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def default_reference(sidecar: Path) -> Side:
    """The engine's source graph (the sidecar's ``onnx``), run on ONNX Runtime as is (FP32 arithmetic).

    An INT8 source is refused (its Q/DQ nodes would run too): the reference must be the FP32 model.
    """
    try:
        doc = read_sidecar_doc(sidecar, f"engine sidecar {sidecar} not found; rebuild the engine with gmg-build")
    except MetadataError as e:  # missing, not JSON, not a JSON object: the engine's problem, said as a bad input
        raise InputError(str(e)) from None
    src = doc.get("onnx")
    if not src:
        raise InputError(f"engine sidecar {sidecar} names no source graph; pass --reference FP32.onnx or the checkpoint")
    p = Path(src)
    if not p.is_absolute() and not p.exists() and (sidecar.parent / p).exists():
        p = sidecar.parent / p
    if not p.exists():
        raise InputError(f"the engine's source graph {src} (named in {sidecar.name}) not found; "
                         "pass --reference FP32.onnx or the checkpoint")
    meta = doc.get("metadata")
    if isinstance(meta, dict) and GraphMetadata(meta, f"engine sidecar {sidecar}").precision == "int8":
        raise InputError(f"the engine was built from an INT8 graph ({src}): it is no FP32 reference; "
                         "pass --reference FP32.onnx or the checkpoint")
    return Side(str(p), "onnxruntime", emulate=False)


def verify_engine(
    candidate: Side | str,
    data: str | Path,
    frames: np.ndarray,
    *,
    reference: Side | str | None = None,
    sidecar: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    limit: float | None = None,
    max_abs_limit: float | None = None,
) -> tuple[Comparison, dict[str, Any]]:
    """Score ``candidate`` (an engine, or any model the runtime opens) on ``frames`` (loaded from ``data``)
    against ``reference`` (default: the source graph named in the sidecar) and write the result as the
    sidecar's ``verification`` (``sidecar`` defaults to ``<candidate>.json``). -> (comparison, record).

    The verdict needs the true future frames: ``frames`` must hold T >= pre + aft steps.
    """
    cand = candidate if isinstance(candidate, Side) else Side(str(candidate))
    side = Path(sidecar) if sidecar is not None else sidecar_path(cand.path)
    ref = default_reference(side) if reference is None else (
        reference if isinstance(reference, Side) else Side(str(reference)))
    cmp = compare_models(ref, cand, frames, batch_size=batch_size, limit=limit, max_abs_limit=max_abs_limit)
    if cmp.ssim_drop is None:
        pre_aft = cmp.steps[-1]
        raise InputError(f"{data} holds {frames.shape[1]} frames per sequence: verification needs the true future "
                         f"too (pre + {pre_aft} frames); give held-out sequences of the full length")
    record = verification_record(cmp, data_fingerprint(data, frames), ref.path)
    record_verification(side, record)
    return cmp, record
