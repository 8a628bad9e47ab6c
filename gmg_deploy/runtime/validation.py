"""Checks on frames handed to the runtime: one :class:`InputError` naming what is wrong."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from gmg_deploy.errors import InputError

_NP_FLOATS = (np.float16, np.float32, np.float64)
_TORCH_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_frames(x: Any, batch_size: int, frame_shape: Sequence[int], what: str = "frame", *,
                 finite: bool = True) -> int:
    """Validate ``x`` as ``(B,C,H,W)`` or ``(B,T,C,H,W)`` floats, all finite; returns its ``ndim``."""
    C, H, W = frame_shape
    want = f"(B,C,H,W) or (B,T,C,H,W) with B={batch_size}, (C,H,W)=({C},{H},{W})"
    if isinstance(x, torch.Tensor):
        dtype_ok = x.dtype in _TORCH_FLOATS
        dtype = str(x.dtype).replace("torch.", "")
    elif isinstance(x, np.ndarray):
        dtype_ok = x.dtype.type in _NP_FLOATS
        dtype = str(x.dtype)
    else:
        raise InputError(f"{what} must be a NumPy array or torch tensor, got {type(x).__name__}")
    shape = tuple(x.shape)
    if x.ndim not in (4, 5) or shape[-3:] != (C, H, W) or shape[0] != batch_size:
        raise InputError(f"{what} has shape {shape}; expected {want}")
    if x.ndim == 5 and shape[1] < 1:
        raise InputError(f"{what} has no time steps (shape {shape})")
    if not dtype_ok:
        raise InputError(f"{what} has dtype {dtype}; give floating-point frames (float32, float16 or float64)")
    if not finite:
        return x.ndim
    ok = bool(torch.isfinite(x).all()) if isinstance(x, torch.Tensor) else bool(np.isfinite(x).all())
    if not ok:
        bad = _first_bad(x)
        raise InputError(f"{what} holds NaN or infinite values (first at index {bad}); clean the input")
    return x.ndim


def _first_bad(x: Any) -> tuple[int, ...]:
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    idx = np.argwhere(~np.isfinite(arr))
    return tuple(int(i) for i in idx[0]) if len(idx) else ()


def check_slots(slots: Any, batch_size: int) -> list[int]:
    """``None`` -> every slot; else a list of distinct slot indices in ``[0, batch_size)``."""
    if slots is None:
        return list(range(batch_size))
    if isinstance(slots, (int, np.integer)):
        slots = [slots]
    try:
        out = [int(s) for s in slots]
    except (TypeError, ValueError):
        raise InputError(f"slots={slots!r} must be a slot index or a list of them") from None
    bad = [s for s in out if not 0 <= s < batch_size]
    if bad:
        raise InputError(f"slot(s) {bad} out of range; this runtime has slots 0..{batch_size - 1}")
    return sorted(set(out))
