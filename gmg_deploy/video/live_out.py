"""Live output (``--video-out rtsp://...``): push panels to a media server as they are made (RTSP ANNOUNCE/RECORD).

:class:`RtspPusher` encodes with libx264 ``ultrafast``/``zerolatency`` (a keyframe every second, so a
viewer joining late waits at most a second) in a background thread: :meth:`RtspPusher.publish` only
replaces the newest panel in a slot, so a slow network drops panels (``dropped`` counts them) instead of
slowing the forecast. Timestamps follow the wall clock in frame periods (a live stream), strictly increasing. A failure
(cannot connect, server gone) is one :class:`~gmg_deploy.io.OutputError`, raised by the next
``publish``/``close``.
"""
from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np

from gmg_deploy.errors import InputError
from gmg_deploy.io import OutputError
from gmg_deploy.video.avlib import require_av

RTSP_SCHEMES = ("rtsp://", "rtsps://")


def is_live_output(target: str) -> bool:
    """``--video-out`` is a stream to push (rtsp://) rather than a file."""
    return str(target).lower().startswith(RTSP_SCHEMES)


def _reason(e: BaseException) -> str:
    return " ".join(str(getattr(e, "strerror", None) or e or type(e).__name__).split())[:160]


class RtspPusher:
    """``RtspPusher(url, fps, (width, height))``; ``publish(rgb_uint8)`` per panel; ``close()`` to end.

    ``timeout`` (seconds) bounds connecting and every network write.
    """

    def __init__(self, url: str, fps: float, size: tuple[int, int], *, timeout: float = 10.0) -> None:
        av = require_av()
        if not is_live_output(url):
            raise InputError(f"--video-out {url}: a live output is an rtsp:// URL")
        if not fps or fps <= 0:
            raise InputError(f"output frame rate {fps!r} must be > 0")
        if not timeout > 0:
            raise InputError(f"timeout {timeout} must be > 0 seconds")
        self.url = str(url)
        self.size = (int(size[0]), int(size[1]))
        self.rate = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        self.dropped = 0
        try:
            self._container: Any = av.open(self.url, mode="w", format="rtsp", timeout=float(timeout),
                                           options={"rtsp_transport": "tcp"})
            st = self._container.add_stream("libx264", rate=self.rate)
        except Exception as e:  # av.error.* (OSError subclasses), a missing encoder
            raise OutputError(f"cannot push to {self.url} ({_reason(e)}); is a media server accepting "
                              "RTSP RECORD there?") from None
        st.width, st.height = self.size
        st.pix_fmt = "yuv420p"
        gop = str(max(1, round(float(self.rate))))
        st.options = {"preset": "ultrafast", "tune": "zerolatency", "g": gop, "threads": "1"}
        self._stream = st
        try:
            self._container.start_encoding()  # connect now (ANNOUNCE/SETUP/RECORD): fail before the work
        except Exception as e:
            try:
                self._container.close()
            except Exception:
                pass
            raise OutputError(f"cannot push to {self.url} ({_reason(e)}); is a media server accepting "
                              "RTSP RECORD there?") from None
        self._cv = threading.Condition()
        self._panel: np.ndarray | None = None
        self._closing = False
        self._error: OutputError | None = None
        self._t0: float | None = None
        self._last_pts = -1
        self._thread = threading.Thread(target=self._run, name=f"rtsp-push:{self.url}", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """The push failed (the error is raised by the next ``publish``/``close``)."""
        return self._error is not None

    def publish(self, rgb: np.ndarray) -> None:
        """Hand over the newest panel (RGB uint8 ``(height, width, 3)``); never waits on the network."""
        if rgb.shape != (self.size[1], self.size[0], 3) or rgb.dtype != np.uint8:
            raise InputError(f"frame {rgb.shape} {rgb.dtype} does not fit the {self.size[0]}x{self.size[1]} stream")
        with self._cv:
            if self._error is not None:
                raise self._error
            if self._panel is not None:
                self.dropped += 1
            self._panel = rgb
            self._cv.notify_all()

    def _run(self) -> None:
        av = require_av()
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._panel is not None or self._closing)
                    panel, self._panel = self._panel, None
                    if panel is None:
                        break
                now = time.perf_counter()
                if self._t0 is None:
                    self._t0 = now
                # in frame periods, following the wall clock (a gap stays a gap), strictly increasing
                pts = max(self._last_pts + 1, int(round((now - self._t0) * float(self.rate))))
                self._last_pts = pts
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(panel), format="rgb24")
                frame.pts, frame.time_base = pts, 1 / self.rate
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self.frames += 1
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        except Exception as e:
            with self._cv:
                self._error = OutputError(f"pushing to {self.url} failed after {self.frames} frame(s) "
                                          f"({_reason(e)})")
        finally:
            try:
                self._container.close()  # RTSP TEARDOWN
            except Exception as e:
                with self._cv:
                    if self._error is None:
                        self._error = OutputError(f"cannot finish the stream to {self.url} ({_reason(e)})")

    def close(self) -> None:
        """Send what is pending, end the stream; raises the push's :class:`OutputError` if it failed."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout=30.0)
        if self._thread.is_alive():
            raise OutputError(f"pushing to {self.url} did not finish within 30 s")
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "RtspPusher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
