"""Accuracy of a candidate model's forecasts against a reference's, per forecast step (the scoring of gmg-compare).

Both sides forecast the same held-out sequences (observe ``pre``, forecast ``aft``). Per step we report the
candidate-vs-reference MSE in two named flavours - ``mse_per_pixel`` (mean over C,H,W and samples) and
``mse_pixel_sum`` (OpenSTL: summed over C,H,W, averaged over samples; the old key ``mse`` is its alias) -, the
max absolute error and SSIM, and, when the data holds the true future frames, each side's SSIM against the
truth and the SSIM drop (reference minus candidate). :func:`score_forecasts` scores any two forecasts (the
runtime path, :mod:`gmg_deploy.runtime.verify`, uses it for every backend); :func:`compare_graphs` rolls two
ONNX graphs out in ONNX Runtime first. Graphs run as given: ORT CPU runs the float ops of an FP16 graph in
FP32 without FP16 rounding between them (see :func:`gmg_deploy.precision.fp16.emulate_fp16`), so score an
FP16 graph through ``emulate_fp16`` (as ``gmg-compare`` does) for FP16 storage between ops.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy.evaluate.metrics import mse_per_step, ssim_per_step
from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import graph_metadata, rollout, sequence_frames
from gmg_deploy.graph.metadata import MetadataLike, as_metadata

#: Acceptance limits on the SSIM drop at every forecast step (issue #6), by the candidate's precision.
SSIM_DROP_LIMITS = {"fp16": 0.002, "int8": 0.01, "fp32": 1e-6}
#: Default bound on max |candidate - reference| at every step, by the candidate's precision (FP32 only: two
#: FP32 runs of one model differ by float rounding alone; reduced precision is judged by the SSIM drop).
MAX_ABS_LIMITS = {"fp32": 1e-4}


@dataclass
class Comparison:
    """Per-step scores of a candidate against a reference (lists are per forecast step)."""

    reference: str
    candidate: str
    precision: str
    sequences: int
    steps: list[int]
    mse_per_pixel: list[float]
    mse_pixel_sum: list[float]
    max_abs: list[float]
    ssim_vs_reference: list[float]
    ssim_ref_vs_truth: list[float] | None = None
    ssim_cand_vs_truth: list[float] | None = None
    ssim_drop: list[float] | None = None
    limit: float | None = None
    max_abs_limit: float | None = None
    worst_drop: float | None = None
    first_failing_step: int | None = None
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mse(self) -> list[float]:
        """Alias of :attr:`mse_pixel_sum` (the old name; OpenSTL's MSE, summed over C,H,W)."""
        return self.mse_pixel_sum

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, plus ``mse`` (alias of ``mse_pixel_sum``)."""
        return {**asdict(self), "mse": list(self.mse_pixel_sum)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        head = f"{'step':>4} {'MSE/pixel':>10} {'MSE(sum)':>10} {'max|err|':>10} {'SSIM(B,A)':>10}"
        if self.ssim_drop is not None:
            head += f" {'SSIM A':>8} {'SSIM B':>8} {'drop':>9}"
        ba, bb = self.extra.get("reference_backend"), self.extra.get("candidate_backend")
        on = f" on {ba} / {bb}" if ba and bb else ""
        lines = [f"A={self.reference}  B={self.candidate}  ({self.precision}, {self.sequences} sequences{on})",
                 "MSE/pixel: mean over C,H,W; MSE(sum): summed over C,H,W (OpenSTL); both averaged over sequences",
                 head]
        for k, s in enumerate(self.steps):
            row = (f"{s:>4} {self.mse_per_pixel[k]:>10.3g} {self.mse_pixel_sum[k]:>10.3g} {self.max_abs[k]:>10.3g} "
                   f"{self.ssim_vs_reference[k]:>10.5f}")
            if self.ssim_drop is not None:
                row += f" {self.ssim_ref_vs_truth[k]:>8.4f} {self.ssim_cand_vs_truth[k]:>8.4f} {self.ssim_drop[k]:>9.2e}"
            lines.append(row)
        if self.passed is not None:
            lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        """One line: the worst drop / max |err| against their limits, PASS or FAIL and the first failing step."""
        parts = []
        if self.ssim_drop is not None and self.limit is not None:
            parts.append(f"worst SSIM drop {self.worst_drop:.2e} vs limit {self.limit:g}")
        if self.max_abs_limit is not None:
            parts.append(f"worst max|err| {max(self.max_abs):.2e} vs bound {self.max_abs_limit:g}")
        out = ", ".join(parts) + f": {'PASS' if self.passed else 'FAIL'}"
        if self.first_failing_step is not None:
            out += f" (first outside the limit at step {self.first_failing_step})"
        return out


def compare_predictions(ref: np.ndarray, cand: np.ndarray, truth: np.ndarray | None = None) -> dict[str, Any]:
    """Per-step metrics of ``cand`` vs ``ref`` (both ``(N, aft, C, H, W)``) and vs ``truth`` if given
    (``mse`` is the old name of ``mse_pixel_sum``)."""
    if ref.shape != cand.shape:
        raise InputError(f"forecasts differ in shape: {ref.shape} vs {cand.shape}")
    summed = mse_per_step(cand, ref)
    pixels = int(np.prod(ref.shape[2:]))
    out: dict[str, Any] = {
        "mse_per_pixel": (summed / pixels).tolist(),
        "mse_pixel_sum": summed.tolist(),
        "mse": summed.tolist(),  # the old key: alias of mse_pixel_sum
        "max_abs": np.abs(cand.astype(np.float64) - ref).max(axis=(0, 2, 3, 4)).tolist(),
        "ssim_vs_reference": ssim_per_step(cand, np.clip(ref, 0, 1)).tolist(),
    }
    if truth is not None:
        a = ssim_per_step(ref, truth)
        b = ssim_per_step(cand, truth)
        out.update(ssim_ref_vs_truth=a.tolist(), ssim_cand_vs_truth=b.tolist(), ssim_drop=(a - b).tolist())
    return out


def _limit(value: float | None, default: float | None, what: str) -> float | None:
    if value is None:
        return default
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{what}={value} must be a finite number >= 0")
    return float(value)


def score_forecasts(
    ref: np.ndarray,
    cand: np.ndarray,
    truth: np.ndarray | None,
    *,
    precision: str,
    names: tuple[str, str],
    limit: float | None = None,
    max_abs_limit: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Comparison:
    """Score forecasts ``cand`` against ``ref`` (``(N, aft, C, H, W)``; ``truth`` the true future or None).

    ``limit`` (SSIM drop) and ``max_abs_limit`` default to the candidate ``precision``'s
    (:data:`SSIM_DROP_LIMITS`, :data:`MAX_ABS_LIMITS`). ``passed`` holds when every step is within every
    limit that applies (the drop needs ``truth``); a NaN is never a pass; None when no limit applies.
    """
    limit = _limit(limit, SSIM_DROP_LIMITS.get(precision), "limit")
    max_abs_limit = _limit(max_abs_limit, MAX_ABS_LIMITS.get(precision), "max_abs_limit")
    metrics = compare_predictions(ref, cand, truth)
    del metrics["mse"]  # Comparison.mse is the alias
    ok = None
    worst = None
    if truth is not None:
        drops = np.asarray(metrics["ssim_drop"], dtype=np.float64)
        worst = float(np.max(drops))
        if limit is not None:
            ok = np.isfinite(drops) & (drops <= limit)
    if max_abs_limit is not None:
        errs = np.asarray(metrics["max_abs"], dtype=np.float64)
        within = np.isfinite(errs) & (errs <= max_abs_limit)
        ok = within if ok is None else ok & within
    passed = None if ok is None else bool(ok.all())
    first = None if ok is None or passed else int(np.argmin(ok)) + 1
    return Comparison(
        reference=names[0], candidate=names[1], precision=precision, sequences=int(ref.shape[0]),
        steps=list(range(1, ref.shape[1] + 1)), limit=limit,
        max_abs_limit=max_abs_limit, worst_drop=worst, first_failing_step=first, passed=passed,
        extra=dict(extra or {}), **metrics,
    )


def check_same_model(meta_a: MetadataLike, meta_b: MetadataLike) -> str:
    """Refuse two metadata of different models (warp-gate layout or configuration); -> the warp gate."""
    a, b = as_metadata(meta_a, "reference metadata"), as_metadata(meta_b, "candidate metadata")
    gate_a, gate_b = a.warp_gate, b.warp_gate
    if gate_a != gate_b:
        raise InputError(
            f"the warp-gate layouts differ (reference {gate_a}, candidate {gate_b}): they are two different models; "
            f"export both with the same --warp-gate"
        )
    if a.config_dict != b.config_dict:
        raise InputError("the two models come from different model configurations; compare exports of one model")
    return gate_a


def compare_graphs(
    reference: str | Path | Any,
    candidate: str | Path | Any,
    frames: np.ndarray,
    *,
    batch_size: int = 8,
    names: tuple[str, str] | None = None,
    threads: int | None = 1,
    spin: bool = True,
    limit: float | None = None,
    max_abs_limit: float | None = None,
) -> Comparison:
    """Forecast ``frames`` with both graphs (paths or ModelProtos) in ONNX Runtime and compare them per step
    (``threads``/``spin``: ONNX Runtime intra-op threads and spin-waiting, see ``make_session``; limits: see
    :func:`score_forecasts`)."""
    meta_a, meta_b = graph_metadata(reference), graph_metadata(candidate)
    gate = check_same_model(meta_a, meta_b)
    frames = sequence_frames(frames, meta_a)
    pre, aft = meta_a.pre, meta_a.aft
    ref = rollout(make_session(reference, threads, spin), meta_a, frames, batch_size=batch_size)
    cand = rollout(make_session(candidate, threads, spin), meta_b, frames, batch_size=batch_size)
    truth = frames[:, pre : pre + aft] if frames.shape[1] >= pre + aft else None
    na, nb = names or (str(reference) if isinstance(reference, (str, Path)) else "A",
                       str(candidate) if isinstance(candidate, (str, Path)) else "B")
    return score_forecasts(ref, cand, truth, precision=meta_b.precision, names=(na, nb),
                           limit=limit, max_abs_limit=max_abs_limit, extra={"warp_gate": gate})
