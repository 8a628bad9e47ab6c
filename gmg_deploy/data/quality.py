"""Forecast quality metrics with OpenSTL's definitions, per forecast step.

Arrays are ``(N, T, C, H, W)``. MSE / MAE: error summed over C, H, W, averaged over samples (and, for the
overall value, over frames). SSIM: ``skimage.metrics.structural_similarity`` of each frame, predictions
clipped to ``[0, 1]``, ``data_range=1``, averaged the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gmg_deploy.errors import InputError


def _check(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 5:
        raise InputError(f"pred {pred.shape} and true {true.shape} must both be (N, T, C, H, W) of one shape")
    return pred, true


def mse_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(T,)``: squared error summed over C,H,W, averaged over samples."""
    pred, true = _check(pred, true)
    return ((pred - true) ** 2).sum(axis=(2, 3, 4)).mean(axis=0)


def mae_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(T,)``: absolute error summed over C,H,W, averaged over samples."""
    pred, true = _check(pred, true)
    return np.abs(pred - true).sum(axis=(2, 3, 4)).mean(axis=0)


def ssim_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(T,)``: SSIM of each frame (prediction clipped to [0, 1], data_range=1), averaged over samples."""
    from skimage.metrics import structural_similarity

    pred, true = _check(pred, true)
    pred = np.clip(pred, 0.0, 1.0)
    N, T, C = pred.shape[:3]
    out = np.zeros((N, T))
    for i in range(N):
        for t in range(T):
            if C == 1:
                out[i, t] = structural_similarity(pred[i, t, 0], true[i, t, 0], data_range=1.0)
            else:
                out[i, t] = structural_similarity(pred[i, t], true[i, t], data_range=1.0, channel_axis=0)
    return out.mean(axis=0)


def copy_last_baseline(observed: np.ndarray, steps: int) -> np.ndarray:
    """The copy-last-frame forecast: the last observed frame repeated ``steps`` times."""
    observed = np.asarray(observed)
    if observed.ndim != 5 or observed.shape[1] < 1:
        raise InputError(f"observed frames {observed.shape} must be (N, T>=1, C, H, W)")
    return np.repeat(observed[:, -1:], steps, axis=1)


def quality_report(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Overall and per-step MSE, MAE and SSIM as plain floats/lists (JSON-ready)."""
    mse, mae, ssim = mse_per_step(pred, true), mae_per_step(pred, true), ssim_per_step(pred, true)
    return {
        "mse": float(mse.mean()),
        "mae": float(mae.mean()),
        "ssim": float(ssim.mean()),
        "mse_per_step": [float(v) for v in mse],
        "mae_per_step": [float(v) for v in mae],
        "ssim_per_step": [float(v) for v in ssim],
    }
