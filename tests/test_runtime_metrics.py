"""OpenSTL metrics against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.metrics import all_metrics, csi, mae, mse, psnr, ssim


def _frames(*frames):
    """Each argument a 2x2 list -> (1, T, 1, 2, 2)."""
    return np.array(frames, dtype=np.float64)[None, :, None]


def test_mse_mae_sum_over_pixels_mean_over_samples_and_frames():
    pred = _frames([[0.5, 0.0], [1.0, 0.2]], [[0.0, 0.0], [0.0, 0.0]])
    true = _frames([[0.0, 0.0], [1.0, 0.6]], [[0.0, 0.0], [0.0, 0.1]])
    # frame 0: squared 0.25 + 0.16 = 0.41, abs 0.5 + 0.4 = 0.9; frame 1: squared 0.01, abs 0.1
    assert mse(pred, true) == pytest.approx((0.41 + 0.01) / 2, abs=1e-12)
    assert mae(pred, true) == pytest.approx((0.9 + 0.1) / 2, abs=1e-12)
    # two samples: the mean over samples
    p2 = np.concatenate([pred, pred + 1.0])
    t2 = np.concatenate([true, pred + 1.0])
    assert mse(p2, t2) == pytest.approx(0.21 / 2, abs=1e-12)


def test_psnr_per_frame_then_mean_with_clipping():
    pred = _frames([[0.5, 0.0], [1.0, 0.2]], [[1.5, 1.5], [1.5, 1.5]])
    true = _frames([[0.0, 0.0], [1.0, 0.6]], [[1.0, 1.0], [1.0, 0.5]])
    # frame 0: mse = 0.41/4; frame 1 after clipping to 1: one pixel off by 0.5 -> mse = 0.25/4
    want = (10 * math.log10(4 / 0.41) + 10 * math.log10(4 / 0.25)) / 2
    assert psnr(pred, true) == pytest.approx(want, abs=1e-9)
    assert psnr(true, true) == math.inf


def test_csi_hits_misses_false_alarms():
    pred = _frames([[0.5, 0.0], [1.0, 0.2]])
    true = _frames([[0.0, 0.0], [1.0, 0.6]])
    # events >= 0.5: pred {0,2}, true {2,3}: hits 1, misses 1, false alarms 1
    assert csi(pred, true, 0.5) == pytest.approx(1 / 3)
    assert csi(pred, true, 0.9) == pytest.approx(1.0)  # only pixel 2, in both
    assert math.isnan(csi(pred, true, 2.0))  # no events at all


def test_ssim_constant_frames_and_clipping():
    H = W = 16
    a, b = 0.5, 0.25
    pred = np.full((1, 2, 1, H, W), a)
    true = np.full((1, 2, 1, H, W), b)
    c1 = (0.01 * 1.0) ** 2  # zero variance: SSIM = (2ab + C1)/(a^2 + b^2 + C1)
    assert ssim(pred, true) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)
    # predictions above 1 are clipped: 1.7 vs 1.0 is a perfect match; identical random frames -> 1
    assert ssim(np.full((1, 1, 1, H, W), 1.7), np.ones((1, 1, 1, H, W))) == pytest.approx(1.0)
    r = np.random.default_rng(0).random((2, 3, 3, H, W))
    assert ssim(r, r) == pytest.approx(1.0)


def test_all_metrics_and_errors():
    r = np.random.default_rng(1)
    p, t = r.random((2, 3, 1, 16, 16)), r.random((2, 3, 1, 16, 16))
    m = all_metrics(p, t, [0.3, 0.5])
    assert sorted(m) == ["csi@0.3", "csi@0.5", "mae", "mae_pixel_sum", "mse", "mse_pixel_sum", "psnr", "ssim"]
    assert m["mse"] == pytest.approx(np.mean(np.sum((p - t) ** 2, axis=(2, 3, 4))))
    assert m["mse_pixel_sum"] == m["mse"] and m["mae_pixel_sum"] == m["mae"]  # the flavour named; old keys kept
    with pytest.raises(InputError, match=r"one shape \(N,T,C,H,W\)"):
        mse(p, t[:, :2])
    with pytest.raises(InputError, match="at least 7x7"):
        ssim(np.zeros((1, 1, 1, 4, 4)), np.zeros((1, 1, 1, 4, 4)))
