"""Input checks shared by every stage: real NumPy files, finite frames in model units, finite weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gmg_deploy.errors import InputError


def check_finite_frames(a: np.ndarray, where: str, fix: str = "clean the data") -> None:
    """Refuse NaN/Inf in ``(N, T, ...)`` frames, naming the first sequence and frame that hold one."""
    finite = np.isfinite(a)
    if not finite.all():
        n, t = (int(i) for i in np.argwhere(~finite)[0][:2])
        raise InputError(f"{where} holds NaN or infinite values (sequence {n}, frame {t}); {fix}")


def check_not_8bit_floats(a: np.ndarray, where: str) -> None:
    """Refuse float frames that hold whole numbers up to 255: 8-bit pixels not yet scaled to [0, 1]."""
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return
    hi, lo = float(a.max()), float(a.min())
    if 1.5 < hi <= 255 and lo >= 0 and bool(np.all(a == np.round(a))):
        raise InputError(f"{where} holds float values {lo:g}..{hi:g} in whole numbers: they look like 8-bit "
                         "pixels; scale them to [0, 1] (divide by 255) or save them as uint8")


def check_finite_tensors(named: Any, where: str) -> None:
    """Refuse NaN/Inf in ``(name, array)`` pairs (weights, initializers), naming the first bad tensor."""
    for name, arr in named:
        a = np.asarray(arr)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise InputError(f"{where}: weight {name} holds {bad} NaN or infinite value(s); the training run "
                             "diverged or the file is damaged - use another one")


def check_numpy_file(p: Path, where: str) -> None:
    """Refuse a ``.npy``/``.npz`` path whose bytes are not a NumPy array file (text, CSV, pickle, ...)."""
    with open(p, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x93NUMPY") or head.startswith(b"PK"):
        return
    kind = "text" if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "not NumPy data"
    raise InputError(f"{where} {p} is not a NumPy .npy/.npz file (it holds {kind}); write it with numpy.save")
