"""Video in and out for the streaming runtime: frame sources, model-fitted preprocessing, panels, writer.

PyAV is an optional extra (``pip install gmg-deploy[video]``); it is imported only when a video is opened.

>>> from gmg_deploy.video import FrameSource, Preprocessor, VideoWriter, run_streams
"""
from __future__ import annotations

from typing import Any

from gmg_deploy.video.kinds import is_video_input, source_kind

__all__ = ["FrameSource", "Preprocessor", "VideoWriter", "run_streams", "is_video_input", "source_kind",
           "render_panel", "require_av"]


def __getattr__(name: str) -> Any:  # lazy: keep PyAV out of plain imports
    if name == "FrameSource":
        from gmg_deploy.video.source import FrameSource

        return FrameSource
    if name == "require_av":
        from gmg_deploy.video.avlib import require_av

        return require_av
    if name == "Preprocessor":
        from gmg_deploy.video.preprocess import Preprocessor

        return Preprocessor
    if name == "VideoWriter":
        from gmg_deploy.video.writer import VideoWriter

        return VideoWriter
    if name == "render_panel":
        from gmg_deploy.video.panel import render_panel

        return render_panel
    if name == "run_streams":
        from gmg_deploy.video.stream import run_streams

        return run_streams
    raise AttributeError(name)
