"""The one frame reader of every command: ``read_frames(path, frame_shape)`` -> float32 ``(N, T, C, H, W)``.

See :mod:`gmg_deploy.frames` for the rules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np

from gmg_deploy.checks import check_finite_frames, check_not_8bit_floats
from gmg_deploy.errors import InputError
from gmg_deploy.frames.arrays import as_float32, check_dtype, header_shape, no_memory, read_array
from gmg_deploy.frames.clip import read_video_file
from gmg_deploy.frames.png import read_png_folder
from gmg_deploy.video.kinds import VIDEO_SUFFIXES, source_kind

#: The model, for what the file alone does not say: its metadata (``config.in_shape``, ``test_mean``/``test_std``),
#: or a function returning it, called only when needed (a 4-D array or PNG folder without ``frame_shape``, a video).
ModelInfo = Union[Mapping[str, Any], Callable[[], Mapping[str, Any]], None]


class _Model:
    """``frame_shape`` as given, else asked of the model when a reading needs it (once)."""

    def __init__(self, frame_shape: Any, model: ModelInfo) -> None:
        self.shape = None if frame_shape is None else tuple(int(v) for v in frame_shape)
        self._model = model

    def metadata(self) -> Mapping[str, Any] | None:
        if callable(self._model):
            self._model = self._model()
        return self._model

    def needed_shape(self) -> tuple[int, int, int] | None:
        if self.shape is None and self._model is not None:
            from gmg_deploy.graph.metadata import as_metadata

            self.shape = tuple(as_metadata(self.metadata()).signature.frame_shape)
        return self.shape


def _sequences(a: np.ndarray, where: str, model: _Model) -> np.ndarray:
    """A 4-D array as ``(N, T, C, H, W)``: one sequence ``(T, C, H, W)`` when its last three axes are the frame
    (always without a model), else ``(N, T, H, W)`` for a one-channel model."""
    if a.ndim != 4:
        return a
    shape = model.needed_shape()
    if shape is None or tuple(a.shape[1:]) == shape:
        return a[None]
    C, H, W = shape
    if C == 1:
        return a[:, :, None]
    raise InputError(f"{where} has shape {tuple(a.shape)}, one channel per frame (N,T,H,W), but the model takes "
                     f"C={C} channels; give (N,T,{C},H,W) frames, or (T,{C},{H},{W}) for one sequence")


def _checked(arr: np.ndarray, p: Path, where: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """Shape (against the model's frame when known), dtype, 8-bit-looking floats, float32, finite values."""
    if arr.ndim != 5:
        raise InputError(f"{where} has shape {tuple(arr.shape)}; expected (N,T,C,H,W) or (N,T,H,W)")
    if shape is not None and tuple(arr.shape[2:]) != shape:
        raise InputError(f"{where} has frames (C,H,W)={tuple(arr.shape[2:])}; the model takes {shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{where} holds no frames (shape {tuple(arr.shape)})")
    try:  # every check reads the (memory-mapped) array in bounded chunks
        check_dtype(arr, where)
        check_not_8bit_floats(arr, where)
        arr = as_float32(arr, where)
        check_finite_frames(arr, where)
    except MemoryError:
        raise no_memory(p) from None
    return arr


def read_frames(path: str | Path, frame_shape: tuple[int, int, int] | None = None, *, what: str = "input",
                model: ModelInfo = None, fit: str = "crop") -> np.ndarray:
    """``path`` -> float32 ``(N, T, C, H, W)``, checked; every error is one :class:`InputError` line naming it.

    ``frame_shape``: the model's ``(C, H, W)`` (else asked of ``model`` when needed); ``what`` names the input
    in errors (``"input"``, ``"--data"``); ``fit``: how a video frame is fitted to the model (crop|pad|stretch).
    A float32 ``.npy`` comes back memory-mapped read-only (nothing is copied); take copies of the slices used.
    """
    p = Path(path)
    kind = source_kind(str(path))
    if kind in ("url", "camera"):
        raise InputError(f"{what} {path} is a live source; give a video file, .npy/.npz frames or a folder of PNGs")
    if not p.exists():
        raise InputError(f"{what} {p} does not exist")
    m = _Model(frame_shape, model)
    where = f"{what} {p.name}"
    if p.is_dir():
        shape = m.needed_shape()
        arr = read_png_folder(p, shape[0] if shape else 1, tuple(shape[1:]) if shape else None)
    elif p.suffix.lower() in (".npy", ".npz"):
        arr = _sequences(read_array(p, what), where, m)
    elif kind == "file":
        shape = m.needed_shape()
        if shape is None:
            raise InputError(f"{where} is a video: its frames are fitted to the model's (C,H,W), which is not known "
                             "here; give .npy/.npz frames")
        arr = read_video_file(p, shape, what=what, metadata=m.metadata(), fit=fit)
    else:
        raise InputError(f"{where}: give a .npy/.npz array (N,T,C,H,W) or a folder of PNG frames, or a video "
                         f"file ({' '.join(VIDEO_SUFFIXES)})")
    return _checked(arr, p, where, m.shape)


def count_sequences(path: str | Path, frame_shape: tuple[int, int, int] | None = None) -> int | None:
    """How many sequences ``path`` holds (at most), from an array's header only; ``None`` when unknown.

    Exact for 5-D arrays, PNG folders and video files (one), and for 4-D arrays when ``frame_shape`` is given;
    without it a 4-D array counts its first axis (N of ``(N, T, H, W)``).
    """
    p = Path(path)
    try:
        if p.is_dir() or (source_kind(str(path)) == "file" and p.is_file()):
            return 1
    except OSError:
        return None
    if p.suffix.lower() not in (".npy", ".npz"):
        return None
    shape = header_shape(p)
    if shape is None or len(shape) not in (4, 5):
        return None
    if len(shape) == 4 and frame_shape is not None and tuple(shape[1:]) == tuple(int(v) for v in frame_shape):
        return 1
    return int(shape[0])
