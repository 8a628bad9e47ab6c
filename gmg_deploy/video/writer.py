"""Write RGB frames to a video file with PyAV: H.264 (libx264), else MPEG-4 Part 2; atomic temp + rename.

Frames go to a temporary file beside the target; :meth:`VideoWriter.close` renames it onto the target,
:meth:`VideoWriter.abort` (or an exception inside ``with``) deletes it, so a failure leaves no partial file.
"""
from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gmg_deploy.errors import InputError
from gmg_deploy.io import OutputError, atomic_path
from gmg_deploy.video.avlib import require_av

CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}
CODECS = ("libx264", "mpeg4")


def check_video_out(path: str | Path) -> str:
    """The container format for an output path, or one clear error."""
    fmt = CONTAINERS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"--video-out {path}: give a {', '.join(CONTAINERS)} file name")
    return fmt


class _Aborted(Exception):
    """Handed to :func:`gmg_deploy.io.atomic_path` to take its failure path (the write is abandoned)."""


class VideoWriter:
    """``VideoWriter(path, fps, (width, height))``; ``write(rgb_uint8)`` per frame; ``close()`` to publish.

    ``note`` receives one line if H.264 is unavailable and MPEG-4 Part 2 is used instead; ``codec`` says
    which encoder was used.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int],
                 note: Callable[[str], None] | None = None) -> None:
        av = require_av()
        self.path = Path(path)
        fmt = check_video_out(self.path)
        if not fps or fps <= 0:
            raise InputError(f"output frame rate {fps!r} must be > 0")
        self.size = (int(size[0]), int(size[1]))
        self.frames = 0
        # io.atomic_path owns the temp file and the publish: rename with the umask's mode, errors as OutputError
        self._publish: contextlib.ExitStack | None = contextlib.ExitStack()
        self._tmp = self._publish.enter_context(atomic_path(self.path))
        self._container: Any = None
        try:
            self._container = av.open(str(self._tmp), mode="w", format=fmt)
        except Exception as e:  # PyAV raises av.error.* (OSError subclasses) and others
            self.abort()
            raise OutputError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from None
        rate = Fraction(fps).limit_denominator(1001)
        self.stream: Any = None
        for codec in CODECS:
            try:
                st = self._container.add_stream(codec, rate=rate)
            except Exception:  # encoder not in this FFmpeg build
                continue
            self.stream, self.codec = st, codec
            break
        if self.stream is None:
            self.abort()
            raise OutputError("this PyAV/FFmpeg build has neither an H.264 (libx264) nor an MPEG-4 encoder")
        if self.codec != CODECS[0] and note is not None:
            note(f"note: H.264 encoder (libx264) not available; writing {self.path.name} as MPEG-4 Part 2")
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self.stream.options = {"preset": "veryfast", "crf": "18", "threads": "1"}
        else:
            self.stream.bit_rate = 4_000_000
        self.fps = float(rate)

    def write(self, rgb: np.ndarray) -> None:
        av = require_av()
        if rgb.shape != (self.size[1], self.size[0], 3) or rgb.dtype != np.uint8:
            raise InputError(f"frame {rgb.shape} {rgb.dtype} does not fit the {self.size[0]}x{self.size[1]} video")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        try:
            for packet in self.stream.encode(frame):
                self._container.mux(packet)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and rename the finished file onto the target (no frames: nothing is written)."""
        if self._container is None:
            return
        if self.frames == 0:
            self.abort()
            return
        try:
            for packet in self.stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        publish, self._publish = self._publish, None
        if publish is not None:
            publish.close()  # atomic_path's success path: mode, then rename onto the target

    def abort(self) -> None:
        """Drop the temporary file; the target is left as it was."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        publish, self._publish = self._publish, None
        if publish is not None:  # atomic_path's failure path: the temp file is removed, the target untouched
            publish.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
