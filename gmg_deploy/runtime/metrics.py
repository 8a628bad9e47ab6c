"""Forecast quality as OpenSTL reports it (arrays ``(N, T, C, H, W)``, predictions vs ground truth).

- MSE, MAE: squared / absolute error summed over C,H,W, averaged over samples and frames.
- SSIM: ``skimage.metrics.structural_similarity`` per frame (channels last), predictions clipped to
  [0,1], ``data_range=1``; averaged over samples and frames.
- PSNR: per frame on [0,1] frames (predictions clipped), ``10*log10(1/mse)``, then averaged.
- CSI at threshold t: an event is ``value >= t``; hits/(hits+misses+false alarms) over all pixels
  (NaN when neither field has an event).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gmg_deploy.errors import InputError


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 5:
        raise InputError(f"metrics need predictions and truth of one shape (N,T,C,H,W); got {p.shape} and {t.shape}")
    return p, t


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    p, t = _pair(pred, true)
    return float(np.mean(np.sum((p - t) ** 2, axis=(2, 3, 4))))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    p, t = _pair(pred, true)
    return float(np.mean(np.sum(np.abs(p - t), axis=(2, 3, 4))))


def psnr(pred: np.ndarray, true: np.ndarray) -> float:
    p, t = _pair(pred, true)
    p = np.clip(p, 0.0, 1.0)
    err = np.mean((p - t) ** 2, axis=(2, 3, 4))
    with np.errstate(divide="ignore"):
        vals = np.where(err == 0, np.inf, 10.0 * np.log10(1.0 / np.where(err == 0, 1.0, err)))
    return float(np.mean(vals))


def ssim(pred: np.ndarray, true: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    p, t = _pair(pred, true)
    p = np.clip(p, 0.0, 1.0)
    N, T = p.shape[:2]
    if min(p.shape[-2:]) < 7:
        raise InputError(f"SSIM needs frames of at least 7x7 pixels, got {p.shape[-2]}x{p.shape[-1]}")
    total = 0.0
    for n in range(N):
        for k in range(T):
            total += structural_similarity(
                p[n, k].transpose(1, 2, 0), t[n, k].transpose(1, 2, 0), channel_axis=-1, data_range=1.0
            )
    return float(total / (N * T))


def csi(pred: np.ndarray, true: np.ndarray, threshold: float) -> float:
    p, t = _pair(pred, true)
    pe, te = p >= threshold, t >= threshold
    hits = int(np.sum(pe & te))
    misses = int(np.sum(~pe & te))
    false_alarms = int(np.sum(pe & ~te))
    denom = hits + misses + false_alarms
    return float(hits / denom) if denom else float("nan")


def all_metrics(pred: np.ndarray, true: np.ndarray, csi_thresholds: Sequence[float] = ()) -> dict[str, float]:
    """``{"mse", "mae", "ssim", "psnr", "csi@<t>"...}`` as OpenSTL reports them."""
    out = {"mse": mse(pred, true), "mae": mae(pred, true), "ssim": ssim(pred, true), "psnr": psnr(pred, true)}
    for thr in csi_thresholds:
        out[f"csi@{thr:g}"] = csi(pred, true, thr)
    return out
