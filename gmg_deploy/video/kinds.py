"""Which ``--input`` strings are video sources (file, URL, camera) - no PyAV needed to decide."""
from __future__ import annotations

import re

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
_CAMERA = re.compile(r"^/dev/video\d+$")


def source_kind(text: str) -> str | None:
    """``"file"``, ``"url"``, ``"camera"`` for a video source, else ``None`` (arrays, PNG folders)."""
    s = str(text)
    if s.lower().startswith(URL_SCHEMES):
        return "url"
    if _CAMERA.match(s):
        return "camera"
    if s.lower().endswith(VIDEO_SUFFIXES):
        return "file"
    return None


def is_video_input(text: str) -> bool:
    return source_kind(text) is not None
