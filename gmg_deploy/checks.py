"""Input checks shared by every stage: frame arrays (shape, dtype, finite), real NumPy files, finite weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gmg_deploy.errors import InputError


_NP_FLOATS = (np.float16, np.float32, np.float64)


def check_frames(x: Any, batch_size: int | None, frame_shape: Sequence[int], what: str = "frame", *,
                 sequences: bool = False, min_steps: int = 1, finite: bool = True) -> int:
    """Validate frames (a NumPy array or torch tensor): floats, all finite, shaped ``(B,C,H,W)`` or
    ``(B,T,C,H,W)`` with ``T >= min_steps``; returns ``ndim``.

    ``batch_size``: the required B (``None``: any). ``sequences``: only ``(N,T,C,H,W)`` is accepted (whole
    sequences, as the ORT rollouts take them). One :class:`InputError` names what is wrong.
    """
    C, H, W = (int(v) for v in frame_shape)
    if sequences:
        want = f"(N, T>={min_steps}, {C}, {H}, {W}) for this model"
    else:
        want = f"(B,C,H,W) or (B,T,C,H,W) with B={batch_size}, (C,H,W)=({C},{H},{W})"
    is_torch = type(x).__module__.split(".")[0] == "torch" and hasattr(x, "dtype")
    if is_torch:
        import torch

        dtype_ok = x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        dtype = str(x.dtype).replace("torch.", "")
    elif isinstance(x, np.ndarray):
        dtype_ok = x.dtype.type in _NP_FLOATS
        dtype = str(x.dtype)
    else:
        raise InputError(f"{what} must be a NumPy array or torch tensor, got {type(x).__name__}")
    shape = tuple(x.shape)
    ndims = (5,) if sequences else (4, 5)
    if (x.ndim not in ndims or shape[-3:] != (C, H, W) or (batch_size is not None and shape[0] != batch_size)
            or (sequences and shape[1] < min_steps)):
        raise InputError(f"{what} has shape {shape}; expected {want}")
    if x.ndim == 5 and shape[1] < 1:
        raise InputError(f"{what} has no time steps (shape {shape})")
    if not dtype_ok:
        raise InputError(f"{what} has dtype {dtype}; give floating-point frames (float32, float16 or float64)")
    if not finite:
        return x.ndim
    if sequences and not is_torch:
        check_finite_frames(x, what)  # names the sequence and frame
        return x.ndim
    ok = bool(x.isfinite().all()) if is_torch else bool(np.isfinite(x).all())
    if not ok:
        arr = x.detach().float().cpu().numpy() if is_torch else x
        idx = np.argwhere(~np.isfinite(arr))
        bad = tuple(int(i) for i in idx[0]) if len(idx) else ()
        raise InputError(f"{what} holds NaN or infinite values (first at index {bad}); clean the input")
    return x.ndim


#: Bytes of input one check reads at a time (a memory-mapped input is never copied whole).
CHECK_CHUNK_BYTES = 64 * 2**20


def row_chunks(a: np.ndarray) -> Any:
    """``(start, a[start:stop])`` slices along axis 0 of about :data:`CHECK_CHUNK_BYTES` each."""
    row = max(int(a[:1].nbytes), 1) if a.ndim and a.shape[0] else 1
    step = max(CHECK_CHUNK_BYTES // row, 1)
    for s in range(0, a.shape[0] if a.ndim else 1, step):
        yield s, (a[s : s + step] if a.ndim else a)


def check_finite_frames(a: np.ndarray, where: str, fix: str = "clean the data") -> None:
    """Refuse NaN/Inf in ``(N, T, ...)`` frames, naming the first sequence and frame that hold one."""
    for start, part in row_chunks(a):
        finite = np.isfinite(part)
        if not finite.all():
            n, t = (int(i) for i in np.argwhere(~finite)[0][:2])
            raise InputError(f"{where} holds NaN or infinite values (sequence {start + n}, frame {t}); {fix}")


def check_not_8bit_floats(a: np.ndarray, where: str) -> None:
    """Refuse float frames that hold whole numbers up to 255: 8-bit pixels not yet scaled to [0, 1]."""
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return
    hi, lo = float(a.max()), float(a.min())
    if 1.5 < hi <= 255 and lo >= 0 and all(bool(np.all(c == np.round(c))) for _, c in row_chunks(a)):
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


#: The largest ``--threads`` accepted, as a multiple of the CPU count (more only costs memory and switching).
MAX_THREADS_PER_CPU = 4


def check_timeout(seconds: Any, flag: str) -> float:
    """A timeout option in seconds: a finite number > 0 (``inf``/``nan``/0/negative refused) -> float."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise InputError(f"{flag} {seconds!r} is not a number of seconds") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{flag} {value:g} must be a finite number of seconds > 0 (e.g. 10)")
    if value > 86400 * 7:
        raise InputError(f"{flag} {value:g} s is over a week; give at most {86400 * 7} seconds")
    return value


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    import os

    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def check_threads(threads: int | None, flag: str = "--threads") -> int | None:
    """A thread-count option: ``None``/0 (the library's default) or 1..4x the CPU count; refuse above."""
    if threads is None:
        return None
    top = MAX_THREADS_PER_CPU * cpu_count()
    if threads < 0:
        raise InputError(f"{flag} {threads} must be >= 0")
    if threads > top:
        raise InputError(f"{flag} {threads} is more than {MAX_THREADS_PER_CPU}x the {cpu_count()} CPU(s) here; "
                         f"give at most {top} (0: one per core)")
    return int(threads)


def check_graph_weights(proto: Any, where: str) -> None:
    """Refuse an ONNX graph (``ModelProto``) whose initializers hold NaN/Inf; weights left in external files (not
    loaded into the proto) are not read here."""
    from onnx import numpy_helper

    check_finite_tensors(((t.name, numpy_helper.to_array(t)) for t in proto.graph.initializer
                          if not t.external_data), where)
