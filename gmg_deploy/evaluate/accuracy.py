"""Accuracy of a reduced-precision graph against its FP32 reference, per forecast step, in ONNX Runtime.

Both graphs forecast the same held-out sequences (observe ``pre``, forecast ``aft``). Per step we report
the candidate-vs-reference MSE (OpenSTL: summed over C,H,W, averaged over samples), max absolute error
and SSIM, and, when the data holds the true future frames, each graph's SSIM against the truth and the
SSIM drop (reference minus candidate). Graphs run as given: ORT CPU runs the float ops of an FP16 graph in
FP32 without FP16 rounding between them (see :func:`gmg_deploy.precision.fp16.emulate_fp16`), so
score an FP16 graph through ``emulate_fp16`` (as ``gmg-compare`` does) for FP16 storage between ops.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy.evaluate.metrics import mse_per_step, ssim_per_step
from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import warp_gate_of
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import graph_metadata, rollout, sequence_frames

#: Acceptance limits on the SSIM drop at every forecast step (issue #6).
SSIM_DROP_LIMITS = {"fp16": 0.002, "int8": 0.01, "fp32": 1e-6}


@dataclass
class Comparison:
    reference: str
    candidate: str
    precision: str
    sequences: int
    steps: list[int]
    mse: list[float]
    max_abs: list[float]
    ssim_vs_reference: list[float]
    ssim_ref_vs_truth: list[float] | None = None
    ssim_cand_vs_truth: list[float] | None = None
    ssim_drop: list[float] | None = None
    limit: float | None = None
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> str:
        head = f"{'step':>4} {'MSE':>10} {'max|err|':>10} {'SSIM(B,A)':>10}"
        if self.ssim_drop is not None:
            head += f" {'SSIM A':>8} {'SSIM B':>8} {'drop':>9}"
        lines = [f"A={self.reference}  B={self.candidate}  ({self.precision}, {self.sequences} sequences)", head]
        for k, s in enumerate(self.steps):
            row = f"{s:>4} {self.mse[k]:>10.3g} {self.max_abs[k]:>10.3g} {self.ssim_vs_reference[k]:>10.5f}"
            if self.ssim_drop is not None:
                row += f" {self.ssim_ref_vs_truth[k]:>8.4f} {self.ssim_cand_vs_truth[k]:>8.4f} {self.ssim_drop[k]:>9.2e}"
            lines.append(row)
        if self.passed is not None:
            worst = float(np.max(self.ssim_drop)) if self.ssim_drop is not None else None
            lines.append(
                f"worst SSIM drop {worst:.2e} vs limit {self.limit:g}: {'PASS' if self.passed else 'FAIL'}"
            )
        return "\n".join(lines)


def compare_predictions(ref: np.ndarray, cand: np.ndarray, truth: np.ndarray | None = None) -> dict[str, Any]:
    """Per-step metrics of ``cand`` vs ``ref`` (both ``(N, aft, C, H, W)``) and vs ``truth`` if given."""
    if ref.shape != cand.shape:
        raise InputError(f"forecasts differ in shape: {ref.shape} vs {cand.shape}")
    out: dict[str, Any] = {
        "mse": mse_per_step(cand, ref).tolist(),
        "max_abs": np.abs(cand.astype(np.float64) - ref).max(axis=(0, 2, 3, 4)).tolist(),
        "ssim_vs_reference": ssim_per_step(cand, np.clip(ref, 0, 1)).tolist(),
    }
    if truth is not None:
        a = ssim_per_step(ref, truth)
        b = ssim_per_step(cand, truth)
        out.update(ssim_ref_vs_truth=a.tolist(), ssim_cand_vs_truth=b.tolist(), ssim_drop=(a - b).tolist())
    return out


def compare_graphs(
    reference: str | Path | Any,
    candidate: str | Path | Any,
    frames: np.ndarray,
    *,
    batch_size: int = 8,
    names: tuple[str, str] | None = None,
    threads: int | None = 1,
    spin: bool = True,
) -> Comparison:
    """Forecast ``frames`` with both graphs (paths or ModelProtos) and compare them per step
    (``threads``/``spin``: ONNX Runtime intra-op threads and spin-waiting, see ``make_session``)."""
    meta_a, meta_b = graph_metadata(reference), graph_metadata(candidate)
    gate_a, gate_b = warp_gate_of(meta_a), warp_gate_of(meta_b)
    if gate_a != gate_b:
        raise InputError(
            f"the warp-gate layouts differ (reference {gate_a}, candidate {gate_b}): they are two different models; "
            f"export both with the same --warp-gate"
        )
    if {**meta_a["config"], "warp_gate": gate_a} != {**meta_b["config"], "warp_gate": gate_b}:
        raise InputError("the two graphs come from different model configurations; compare exports of one model")
    frames = sequence_frames(frames, meta_a)
    cfg = meta_a["config"]
    pre, aft = int(cfg["pre_seq_length"]), int(cfg["aft_seq_length"])
    ref = rollout(make_session(reference, threads, spin), meta_a, frames, batch_size=batch_size)
    cand = rollout(make_session(candidate, threads, spin), meta_b, frames, batch_size=batch_size)
    truth = frames[:, pre : pre + aft] if frames.shape[1] >= pre + aft else None
    metrics = compare_predictions(ref, cand, truth)
    precision = meta_b.get("precision", "fp32")
    limit = SSIM_DROP_LIMITS.get(precision)
    passed = None
    if truth is not None and limit is not None:
        drops = np.asarray(metrics["ssim_drop"], dtype=np.float64)
        passed = bool(np.isfinite(drops).all() and drops.max() <= limit)  # a NaN is never a PASS
    na, nb = names or (str(reference) if isinstance(reference, (str, Path)) else "A",
                       str(candidate) if isinstance(candidate, (str, Path)) else "B")
    return Comparison(
        reference=na, candidate=nb, precision=precision, sequences=int(frames.shape[0]),
        steps=list(range(1, aft + 1)), limit=limit, passed=passed, extra={"warp_gate": gate_a}, **metrics,
    )
