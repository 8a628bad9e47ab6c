"""Floor 1: video in and out - frame sources, reconnect, model-fitted preprocessing, panels, writer, live view.

Imports the utilities only (nothing of the model, the graphs or the runtime: :func:`run_streams` drives
any object with the Forecaster's methods).

PyAV is an optional extra (``pip install gmg-deploy[video]``); it is imported only when a video is opened.

>>> from gmg_deploy.video import FrameSource, Preprocessor, VideoWriter, run_streams
"""
from __future__ import annotations

from typing import Any

from gmg_deploy.video.kinds import is_video_input, source_kind

__all__ = ["FrameSource", "LatestFrameReader", "Preprocessor", "VideoWriter", "run_streams", "is_video_input", "source_kind",
           "render_panel", "require_av"]


#: Lazily imported names -> their module (keeps PyAV out of plain imports).
_LAZY = {
    "FrameSource": "gmg_deploy.video.source",
    "LatestFrameReader": "gmg_deploy.video.source",
    "require_av": "gmg_deploy.video.avlib",
    "Preprocessor": "gmg_deploy.video.preprocess",
    "VideoWriter": "gmg_deploy.video.writer",
    "render_panel": "gmg_deploy.video.panel",
    "run_streams": "gmg_deploy.video.stream",
}


def __getattr__(name: str) -> Any:  # lazy: keep PyAV out of plain imports
    if name not in _LAZY:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
