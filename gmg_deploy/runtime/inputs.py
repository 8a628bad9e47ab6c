"""Reading frame sequences for inference: kept names of :mod:`gmg_deploy.frames` (the one reader and its rules).

``load_frames(path, frame_shape)`` is :func:`gmg_deploy.frames.read_frames` naming the file ``input``;
``count_sequences`` and ``png_size`` are the reader's own.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gmg_deploy.frames import count_sequences, png_size, read_frames

__all__ = ["load_frames", "count_sequences", "png_size"]


def load_frames(path: str | Path, frame_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """-> float32 ``(N, T, C, H, W)`` (:func:`gmg_deploy.frames.read_frames`, errors naming the ``input``).

    A float32 ``.npy`` comes back memory-mapped read-only (nothing is copied); take copies of the slices used.
    """
    return read_frames(path, frame_shape, what="input")
