"""Forecast quality as OpenSTL reports it: arrays ``(N, T, C, H, W)``, predictions vs ground truth.

- MSE, MAE: squared / absolute error summed over C,H,W, averaged over samples and frames.
- SSIM: ``skimage.metrics.structural_similarity`` per frame, predictions clipped to [0,1], ``data_range=1``.
- PSNR: per frame on [0,1] frames (predictions clipped), ``10*log10(1/mse)``, then averaged.
- CSI at threshold t: an event is ``value >= t``; hits/(hits+misses+false alarms) over all pixels
  (NaN when neither field has an event).

The ``*_per_step`` functions return one value per forecast frame ``(T,)``, averaged over samples; the
plain functions average those over frames. Used by the accuracy check, the runtime CLI and the demo.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gmg_deploy.errors import InputError


def _pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 5:
        raise InputError(f"metrics need predictions and truth of one shape (N,T,C,H,W); got {p.shape} and {t.shape}")
    return p, t


def mse_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    p, t = _pair(pred, true)
    return ((p - t) ** 2).sum(axis=(2, 3, 4)).mean(axis=0)


def mae_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    p, t = _pair(pred, true)
    return np.abs(p - t).sum(axis=(2, 3, 4)).mean(axis=0)


def psnr_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    p, t = _pair(pred, true)
    err = ((np.clip(p, 0.0, 1.0) - t) ** 2).mean(axis=(2, 3, 4))
    with np.errstate(divide="ignore"):
        vals = np.where(err == 0, np.inf, 10.0 * np.log10(1.0 / np.where(err == 0, 1.0, err)))
    return vals.mean(axis=0)


def ssim_per_step(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    p, t = _pair(pred, true)
    p = np.clip(p, 0.0, 1.0)
    N, T = p.shape[:2]
    if min(p.shape[-2:]) < 7:
        raise InputError(f"SSIM needs frames of at least 7x7 pixels, got {p.shape[-2]}x{p.shape[-1]}")
    out = np.zeros((N, T))
    for n in range(N):
        for k in range(T):
            out[n, k] = structural_similarity(p[n, k], t[n, k], channel_axis=0, data_range=1.0)
    return out.mean(axis=0)


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(mse_per_step(pred, true).mean())


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    return float(mae_per_step(pred, true).mean())


def psnr(pred: np.ndarray, true: np.ndarray) -> float:
    return float(psnr_per_step(pred, true).mean())


def ssim(pred: np.ndarray, true: np.ndarray) -> float:
    return float(ssim_per_step(pred, true).mean())


def csi(pred: np.ndarray, true: np.ndarray, threshold: float) -> float:
    p, t = _pair(pred, true)
    pe, te = p >= threshold, t >= threshold
    hits = int(np.sum(pe & te))
    misses = int(np.sum(~pe & te))
    false_alarms = int(np.sum(pe & ~te))
    denom = hits + misses + false_alarms
    return float(hits / denom) if denom else float("nan")


#: The flavour of MSE/MAE these metrics report, in every key that names it (``mse`` stays as the old alias).
PIXEL_SUM = {"mse": "mse_pixel_sum", "mae": "mae_pixel_sum"}


def all_metrics(pred: np.ndarray, true: np.ndarray, csi_thresholds: Sequence[float] = ()) -> dict[str, float]:
    """``{"mse_pixel_sum", "mae_pixel_sum", "ssim", "psnr", "csi@<t>"...}`` as OpenSTL reports them (MSE/MAE
    summed over C,H,W; ``mse``/``mae`` are the same values under their old names)."""
    out = {"mse_pixel_sum": mse(pred, true), "mae_pixel_sum": mae(pred, true), "ssim": ssim(pred, true),
           "psnr": psnr(pred, true)}
    out.update({old: out[new] for old, new in PIXEL_SUM.items()})
    for thr in csi_thresholds:
        out[f"csi@{thr:g}"] = csi(pred, true, thr)
    return out


def copy_last_baseline(observed: np.ndarray, steps: int) -> np.ndarray:
    """The copy-last-frame forecast: the last observed frame of ``(N, T, C, H, W)`` repeated ``steps`` times."""
    observed = np.asarray(observed)
    if observed.ndim != 5 or observed.shape[1] < 1:
        raise InputError(f"observed frames {observed.shape} must be (N, T>=1, C, H, W)")
    return np.repeat(observed[:, -1:], steps, axis=1)


def per_step_report(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Overall and per-step MSE, MAE, SSIM, PSNR as plain floats/lists (JSON-ready)."""
    out: dict[str, Any] = {}
    for name, fn in (("mse", mse_per_step), ("mae", mae_per_step), ("ssim", ssim_per_step), ("psnr", psnr_per_step)):
        v = fn(pred, true)
        out[name] = float(v.mean())
        out[f"{name}_per_step"] = [float(x) for x in v]
        if name in PIXEL_SUM:  # the named flavour beside the old key
            out[PIXEL_SUM[name]], out[f"{PIXEL_SUM[name]}_per_step"] = out[name], out[f"{name}_per_step"]
    return out
