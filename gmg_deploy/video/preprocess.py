"""Fit a video frame to the model, once for every path: resize (crop|pad|stretch), colour to C, [0,1], normalise.

``Preprocessor(frame_shape, fit, mean, std)(rgb_uint8)`` -> float32 ``(C,H,W)`` in the model's units:
``(x - test_mean) / test_std`` of the checkpoint (from the graph metadata), or plain [0,1] without them.
``to_unit`` is its exact inverse back to [0,1] (for everything shown or written), ``to_uint8`` to pixels.
Grey is ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``. Resizing is done by Pillow on the 8-bit frame
(area averaging - box filter - when shrinking, bilinear when enlarging), so it rounds to 1/255.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gmg_deploy.errors import InputError

FITS = ("crop", "pad", "stretch")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _stat(value: Any, name: str, shape: tuple[int, int, int]) -> np.ndarray | None:
    """``test_mean``/``test_std`` as an array broadcastable to ``(C,H,W)``, or ``None``."""
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float32)
    if a.size == 1:
        return a.reshape(1, 1, 1)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    try:
        out = np.broadcast_to(a, shape).astype(np.float32)
    except ValueError:
        raise InputError(f"{name} in the model metadata has shape {a.shape}; it does not fit frames {shape}") from None
    if not np.isfinite(out).all():
        raise InputError(f"{name} in the model metadata holds NaN or infinite values")
    return out


def fit_boxes(src_size: tuple[int, int], dst_size: tuple[int, int], fit: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """-> (source box ``(x0,y0,x1,y1)`` to read, target box ``(x0,y0,x1,y1)`` in the model frame)."""
    (w, h), (W, H) = src_size, dst_size
    if fit == "stretch":
        return (0.0, 0.0, float(w), float(h)), (0, 0, W, H)
    if fit == "crop":
        s = max(W / w, H / h)
        cw, ch = W / s, H / s
        x0, y0 = max((w - cw) / 2.0, 0.0), max((h - ch) / 2.0, 0.0)  # rounding: W / (W / w) can exceed w
        return (x0, y0, min(x0 + cw, float(w)), min(y0 + ch, float(h))), (0, 0, W, H)
    if fit == "pad":
        s = min(W / w, H / h)
        tw, th = max(1, min(W, round(w * s))), max(1, min(H, round(h * s)))
        x0, y0 = (W - tw) // 2, (H - th) // 2
        return (0.0, 0.0, float(w), float(h)), (x0, y0, x0 + tw, y0 + th)
    raise InputError(f"--fit {fit!r} is unknown; use one of {', '.join(FITS)}")


class Preprocessor:
    """Video frame -> model frame and back; see the module docstring."""

    def __init__(self, frame_shape: tuple[int, int, int], fit: str = "crop", mean: Any = None, std: Any = None) -> None:
        C, H, W = (int(v) for v in frame_shape)
        if C not in (1, 3):
            raise InputError(f"video input needs a model with 1 (grey) or 3 (RGB) channels; this one has C={C}")
        if fit not in FITS:
            raise InputError(f"--fit {fit!r} is unknown; use one of {', '.join(FITS)}")
        self.frame_shape = (C, H, W)
        self.fit = fit
        self.mean = _stat(mean, "test_mean", self.frame_shape)
        self.std = _stat(std, "test_std", self.frame_shape)
        if self.std is not None and (self.std == 0).any():
            raise InputError("test_std in the model metadata holds zeros; the data cannot be normalised")

    @classmethod
    def for_metadata(cls, frame_shape: tuple[int, int, int], metadata: dict[str, Any], fit: str = "crop") -> "Preprocessor":
        return cls(frame_shape, fit, metadata.get("test_mean"), metadata.get("test_std"))

    def to_unit_planes(self, image: np.ndarray) -> np.ndarray:
        """RGB (or grey) uint8 ``(h,w[,3])`` -> float32 ``(C,H,W)`` in [0,1] (resized, colour converted)."""
        from PIL import Image

        img = np.asarray(image)
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[2] not in (1, 3) or img.shape[0] < 1 or img.shape[1] < 1:
            raise InputError(f"a video frame must be (h,w), (h,w,1) or (h,w,3); got {img.shape}")
        C, H, W = self.frame_shape
        h, w = img.shape[:2]
        src_box, (x0, y0, x1, y1) = fit_boxes((w, h), (W, H), self.fit)
        tw, th = x1 - x0, y1 - y0
        shrink = (src_box[2] - src_box[0]) >= tw and (src_box[3] - src_box[1]) >= th
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        # Resize the 8-bit frame first (small afterwards: cheap, and it keeps the caches for the model);
        # resizing and luma are both linear, so their order does not change the result beyond rounding.
        pil = Image.fromarray(np.ascontiguousarray(img[..., 0] if img.shape[2] == 1 else img))
        small = np.asarray(pil.resize((tw, th), resample, box=src_box), dtype=np.float32) * np.float32(1.0 / 255.0)
        if small.ndim == 2:
            small = small[..., None]
        if C == 1:
            planes = small @ LUMA[:, None] if small.shape[2] == 3 else small
        else:
            planes = small if small.shape[2] == 3 else np.repeat(small, 3, axis=2)
        out = np.zeros((C, H, W), dtype=np.float32)
        out[:, y0:y1, x0:x1] = planes.transpose(2, 0, 1)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def normalise(self, unit: np.ndarray) -> np.ndarray:
        """[0,1] -> model units: ``(x - test_mean) / test_std`` (identity without them)."""
        x = unit
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return np.asarray(x, dtype=np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """A video frame -> float32 ``(C,H,W)`` in the model's units."""
        return self.normalise(self.to_unit_planes(image))

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Model units -> [0,1] units: the exact inverse of :meth:`normalise` (broadcasts over leading axes)."""
        y = np.asarray(x, dtype=np.float32)
        if self.std is not None:
            y = y * self.std
        if self.mean is not None:
            y = y + self.mean
        return np.asarray(y, dtype=np.float32)

    def to_uint8(self, x: np.ndarray) -> np.ndarray:
        """Model units ``(C,H,W)`` -> RGB uint8 ``(H,W,3)`` for display (clipped to [0,1]; grey repeated)."""
        u = np.clip(np.nan_to_num(self.to_unit(x), nan=0.0), 0.0, 1.0)
        img = (u * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else np.ascontiguousarray(img)
