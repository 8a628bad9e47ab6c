"""Calibration: activation ranges of an FP32 step graph over recurrent rollouts (the ranges document).

Calibration runs the FP32 graph in ONNX Runtime over real sequences (observe ``pre``, forecast ``aft``),
chaining the state, with every input of Conv/ConvTranspose/MatMul/Gemm that is not a weight added as an
extra graph output. Every step's tensors are observed - including ``state_in.*`` at every step, so a step
graph's ranges reflect the state it really sees (zero only at step 0).

Methods (symmetric int8, so a range is one ``amax``): ``minmax`` (largest |x| seen), ``percentile``
(99.99th percentile of |x|), ``entropy`` (TensorRT-style KL-divergence threshold over a 2048-bin |x|
histogram). Histograms need the first pass's ``amax``, so ``percentile``/``entropy`` run the data twice.

The ranges file's format (write, read, match a graph) is :mod:`gmg_deploy.precision.ranges_file`.

Nodes kept in float by default (:func:`default_keep_float`), both tiny in FLOPs, found by a per-node
sensitivity sweep on the demo model (quantizing only that node): the motion GRU's ``update``/``reset``/
``output`` convolutions, whose input concatenates motion features with the offset state (offsets of
several pixels share one per-tensor scale with small features, and their output drives the warp's sampling
coordinates), and the output head (the Conv whose result becomes ``next_frame``, fed back
autoregressively).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from gmg_deploy.errors import CalibrationError
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import rollout, sequence_frames
from gmg_deploy.graph.index import LAYOUT_OPS, GraphIndex
from gmg_deploy.graph.metadata import GraphMetadata
from gmg_deploy.graph.signature import state_in
from gmg_deploy.precision.qdq_rules import QUANT_OPS, quantizable_inputs, quantizable_outputs  # noqa: F401
from gmg_deploy.precision.ranges_file import (RANGES_FORMAT, RANGES_VERSION, asymmetric_range,  # noqa: F401
                                              check_ranges_match, fingerprint, load_ranges, save_ranges)
from gmg_deploy.precision.source_graph import fp32_source

METHODS = ("minmax", "entropy", "percentile")
BINS = 2048
PERCENTILE = 99.99


def default_keep_float(model: Any) -> list[str]:
    """Names of the quantizable nodes that stay float by default (see the module docstring)."""
    index = GraphIndex(model.graph)
    sig = GraphMetadata.from_proto(model).signature
    offset_inputs = {state_in(n) for n in sig.state_names if n.startswith("offset.")}

    def reads_offset_state(tensor: str, depth: int = 3) -> bool:
        if tensor in offset_inputs:
            return True
        p = index.producer.get(tensor)
        if depth == 0 or p is None or p.op_type not in ("Concat", "Mul"):
            return False
        return any(reads_offset_state(i, depth - 1) for i in p.input)

    def feeds_frame_output(tensor: str) -> bool:
        if tensor == sig.frame_output and tensor in index.outputs:
            return True
        return any(c.op_type in LAYOUT_OPS and feeds_frame_output(c.output[0]) for c in index.readers(tensor))

    return [n.name for n in model.graph.node
            if n.op_type in QUANT_OPS and (reads_offset_state(n.input[0]) or feeds_frame_output(n.output[0]))]


def _instrument(model: Any, names: list[str]) -> Any:
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output} | {i.name for i in m.graph.input}
    for n in names:
        if n not in existing:
            m.graph.output.append(helper.make_empty_tensor_value_info(n))
    return m


class _Stats:
    def __init__(self, state_inputs: set[str]) -> None:
        self.state_inputs = state_inputs  # per-step amax is kept for these
        self.min: dict[str, float] = {}
        self.max: dict[str, float] = {}
        self.hist: dict[str, np.ndarray] = {}
        self.per_step: dict[str, dict[int, float]] = {}

    def observe_minmax(self, t: int, tensors: dict[str, np.ndarray]) -> None:
        for k, v in tensors.items():
            v = np.asarray(v, dtype=np.float32)
            lo, hi = float(v.min()), float(v.max())
            self.min[k] = min(self.min.get(k, lo), lo)
            self.max[k] = max(self.max.get(k, hi), hi)
            if k in self.state_inputs:
                d = self.per_step.setdefault(k, {})
                d[t] = max(d.get(t, 0.0), float(np.abs(v).max()))

    def observe_hist(self, amax: dict[str, float], tensors: dict[str, np.ndarray]) -> None:
        for k, v in tensors.items():
            a = amax.get(k, 0.0)
            if a <= 0:
                continue
            h, _ = np.histogram(np.abs(np.asarray(v, dtype=np.float32)), bins=BINS, range=(0.0, a))
            self.hist[k] = self.hist.get(k, 0) + h


def _percentile_amax(hist: np.ndarray, amax: float, pct: float = PERCENTILE) -> float:
    c = np.cumsum(hist)
    k = int(np.searchsorted(c, c[-1] * pct / 100.0))
    return float((k + 1) * amax / len(hist))


def _entropy_amax(hist: np.ndarray, amax: float, levels: int = 128) -> float:
    """The |x| threshold whose 128-level quantisation of the histogram has the least KL divergence."""
    hist = hist.astype(np.float64)
    n = len(hist)
    if hist.sum() == 0:
        return amax
    best, best_i = np.inf, n
    for i in range(levels, n + 1, 16):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # clip the tail into the last bin
        # quantise the first i bins into `levels` groups, spreading each group's mass over its non-empty bins
        edges = np.linspace(0, i, levels + 1).astype(int)
        src = hist[:i]
        sums = np.add.reduceat(src, edges[:-1])
        counts = np.add.reduceat((src > 0).astype(np.float64), edges[:-1])
        group = np.repeat(np.arange(levels), np.diff(edges))
        q = np.where(src > 0, (sums / np.maximum(counts, 1))[group], 0.0)
        nz = p > 0
        ps = p[nz] / p.sum()
        qs = np.maximum(q[nz], 1e-12)
        qs = qs / q.sum() if q.sum() > 0 else qs
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best:
            best, best_i = kl, i
    return float(best_i * amax / n)


def collect_ranges(
    model: Any,
    frames: np.ndarray,
    *,
    method: str = "minmax",
    batch_size: int = 8,
    keep_float: str | list[str] = "default",
    progress: Callable[[str], None] | None = None,
    threads: int | None = 1,
    spin: bool = True,
) -> dict[str, Any]:
    """Calibrate the FP32 step graph ``model`` (ModelProto) on ``frames`` ``(N, T>=pre, C, H, W)``.

    ``keep_float``: ``"default"`` (:func:`default_keep_float`), ``"none"``, or a list of node names.
    ``threads``/``spin``: the ONNX Runtime session's (:func:`gmg_deploy.evaluate.ort_session.make_session`).
    Returns the ranges document (see the module docstring); write it with :func:`save_ranges`.
    """
    meta, frames = _check_calibration_input(model, frames, method)
    watch = _Watch(model, meta)
    session = make_session(_instrument(model, watch.extra), threads=threads, spin=spin)
    stats, amax = _observe(session, meta, frames, watch, method, batch_size, progress or (lambda s: None))
    return _ranges_document(model, meta, frames, watch, stats, amax, method, keep_float)


def _check_calibration_input(model: Any, frames: np.ndarray, method: str) -> tuple[GraphMetadata, np.ndarray]:
    """Phase 1: the method, graph kind and precision are calibratable, the frames fit; -> (metadata, frames)."""
    if method not in METHODS:
        raise CalibrationError(f"calibration method {method!r} is unknown; choose one of {', '.join(METHODS)}")
    meta = fp32_source(model, what="calibration", error=CalibrationError, step=True)
    frames = sequence_frames(frames, meta, "calibration data")
    if frames.shape[0] < 1:
        raise CalibrationError("calibration data holds no sequences")
    return meta, frames


class _Watch:
    """Phase 2: the tensors observed - quantized inputs, quantized outputs, graph inputs - and the extra outputs
    the instrumented graph must return."""

    def __init__(self, model: Any, meta: GraphMetadata) -> None:
        self.acts = quantizable_inputs(model)
        outputs = quantizable_outputs(model)
        self.outputs = set(outputs)
        sig = meta.signature
        self.graph_inputs = set(sig.input_names)
        self.state_inputs = {t.name for t in sig.inputs() if t.role == "state"}
        self.names = (self.acts + [o for o in outputs if o not in self.acts]
                      + [n for n in sig.input_names if n not in self.acts])
        self.extra = [n for n in self.names if n not in self.graph_inputs]

    def pick(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: tensors[k] for k in self.names if k in tensors}


def _observe(session: Any, meta: GraphMetadata, frames: np.ndarray, watch: _Watch, method: str, batch_size: int,
             say: Callable[[str], None]) -> tuple[_Stats, dict[str, float]]:
    """Phase 3: roll the instrumented graph's ``session`` out (twice for histogram methods); -> (statistics, amax)."""
    stats = _Stats(watch.state_inputs)
    say(f"pass 1 (min/max) over {frames.shape[0]} sequences, {len(watch.names)} tensors")
    rollout(session, meta, frames, extra_outputs=watch.extra, batch_size=batch_size,
            on_step=lambda t, d: stats.observe_minmax(t, watch.pick(d)))
    amax_mm = {k: max(abs(stats.min[k]), abs(stats.max[k])) for k in stats.min}
    amax = dict(amax_mm)
    if method != "minmax":
        say(f"pass 2 ({method} histograms)")
        rollout(session, meta, frames, extra_outputs=watch.extra, batch_size=batch_size,
                on_step=lambda t, d: stats.observe_hist(amax_mm, watch.pick(d)))
        for k, h in stats.hist.items():
            amax[k] = _percentile_amax(h, amax_mm[k]) if method == "percentile" else _entropy_amax(h, amax_mm[k])
    return stats, amax


def _ranges_document(model: Any, meta: GraphMetadata, frames: np.ndarray, watch: _Watch, stats: _Stats,
                     amax: dict[str, float], method: str, keep_float: str | list[str]) -> dict[str, Any]:
    """Phase 4: the ranges document (see the module docstring)."""
    tensors = {}
    for k in watch.names:
        if k not in stats.min:
            continue
        kind = "state" if k in watch.state_inputs else ("input" if k in watch.graph_inputs else "activation")
        entry = {"amax": amax[k], "min": stats.min[k], "max": stats.max[k], "kind": kind,
                 "quantized_input": k in watch.acts}
        if k in watch.outputs:
            entry["quantized_output"] = True
        if k in stats.per_step:
            entry["per_step_amax"] = [stats.per_step[k][t] for t in sorted(stats.per_step[k])]
        tensors[k] = entry
    return {
        "format": RANGES_FORMAT,
        "version": RANGES_VERSION,
        "method": method,
        "fingerprint": fingerprint(model, meta),
        "metadata": meta.to_dict(),
        "sequences": int(frames.shape[0]),
        "steps_per_sequence": meta.pre + meta.aft - 1,
        "tensors": tensors,
        "keep_float": (default_keep_float(model) if keep_float == "default"
                       else [] if keep_float == "none" else list(keep_float)),
    }


