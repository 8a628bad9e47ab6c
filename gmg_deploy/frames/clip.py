"""A video file read whole as one sequence: every frame decoded (:mod:`gmg_deploy.video.source`) and fitted to
the model's ``(C, H, W)`` (:class:`gmg_deploy.video.preprocess.Preprocessor`, as ``gmg-infer``'s video path
does), within the memory budget."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gmg_deploy.errors import InputError
from gmg_deploy.frames.budget import BUDGET_ENV, memory_budget


def _too_long(p: Path, what: str, frames: int, shape: tuple[int, int, int], budget: int, more: bool) -> InputError:
    C, H, W = shape
    need = 2 * frames * C * H * W * 4  # the decoded frames and their copy into one array
    return InputError(
        f"{what} {p.name} holds {'at least ' if more else ''}{frames} video frames; as {C}x{H}x{W} float32 frames "
        f"they need {'at least ' if more else ''}{need / 2**20:.1f} MiB, over the memory budget of {budget / 2**20:.1f} "
        f"MiB (${BUDGET_ENV} or a quarter of the available memory); give a shorter clip "
        f"(e.g. ffmpeg -i {p.name} -t SECONDS short{p.suffix})")


def read_video_file(p: Path, frame_shape: tuple[int, int, int], *, what: str = "input",
                    metadata: Mapping[str, Any] | None = None, fit: str = "crop") -> np.ndarray:
    """All frames of video file ``p`` -> float32 ``(1, T, C, H, W)``: resized (``fit``: crop|pad|stretch),
    colour converted to C (grey or RGB), in [0, 1], and normalised with ``metadata``'s ``test_mean``/``test_std``
    when given (the model's units, as gmg-infer feeds video frames). Refused in one line, before decoding when the
    file announces its length, when the frames would exceed the memory budget."""
    from gmg_deploy.graph.metadata import as_metadata
    from gmg_deploy.video.preprocess import Preprocessor
    from gmg_deploy.video.source import FrameSource, SyncReader

    shape = tuple(int(v) for v in frame_shape)
    if metadata is not None:
        meta = as_metadata(metadata, str(p))
        pre = Preprocessor(shape, fit, meta.test_mean, meta.test_std)
    else:
        pre = Preprocessor(shape, fit)
    budget = memory_budget()
    per_frame = 2 * int(np.prod(shape)) * 4
    reader = SyncReader(FrameSource(str(p)))
    try:
        expected = reader.source.expected_frames
        if expected and expected * per_frame > budget:
            raise _too_long(p, what, expected, shape, budget, more=False)
        frames: list[np.ndarray] = []
        while (f := reader.latest()) is not None:
            if (len(frames) + 1) * per_frame > budget:
                raise _too_long(p, what, len(frames) + 1, shape, budget, more=True)
            frames.append(pre(f.image))
    finally:
        reader.close()
    if not frames:  # FrameSource refuses a file without frames; kept for other sources
        raise InputError(f"{what} {p.name} holds 0 video frames; give a video with at least one frame")
    return np.stack(frames)[None]
