"""Frame sources: a video file, an ``rtsp://``/``http(s)://`` URL or a V4L2 camera, decoded with PyAV.

:class:`FrameSource` iterates :class:`Frame` s (RGB ``uint8`` ``(H,W,3)``) and knows ``fps`` and ``size``.
:class:`LatestFrameReader` decodes in a background thread into a bounded queue and hands out the newest
frame, dropping (and counting) stale ones; :class:`SyncReader` is the same interface without a thread.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from gmg_deploy.checks import check_timeout
from gmg_deploy.errors import InputError, SourceError, error_reason  # noqa: F401 (error_reason: its old home)
from gmg_deploy.video.avlib import require_av
from gmg_deploy.video.kinds import source_kind


@dataclass
class Frame:
    """One decoded frame: ``image`` RGB uint8 ``(H,W,3)``, its index in the source, and when it arrived."""

    image: np.ndarray
    index: int
    t_arrived: float


class FrameSource:
    """An iterable video source with ``fps`` (``None`` if unknown), ``size`` ``(width, height)`` and ``kind``.

    ``connect_timeout`` (seconds) bounds opening a URL and every later read from it.
    """

    def __init__(self, spec: str, *, connect_timeout: float = 10.0) -> None:
        self.spec = str(spec)
        self.kind = source_kind(self.spec) or "file"
        av = require_av()
        self._stalled = av.error.ExitError  # what PyAV raises when its interrupt callback (the timeout) fires
        self.read_timeout: float | None = None
        kwargs: dict[str, Any] = {}
        if self.kind == "file":
            if not os.path.exists(self.spec):
                raise SourceError(f"input {self.spec} does not exist")
            if os.path.isdir(self.spec):
                raise SourceError(f"input {self.spec} is a folder; give a video file")
        elif self.kind == "camera":
            if not os.path.exists(self.spec):
                raise SourceError(f"camera {self.spec} does not exist; list cameras with 'ls /dev/video*'")
            kwargs["format"] = "v4l2"
        else:
            t = check_timeout(connect_timeout, "--connect-timeout")
            # (open, read): PyAV's interrupt callback ends any blocking open or packet read after t seconds
            kwargs["timeout"] = (t, t)
            self.read_timeout = t
            if self.spec.lower().startswith(("rtsp://", "rtsps://")):
                kwargs["options"] = {"rtsp_transport": "tcp"}
            else:  # FFmpeg's own bound on every socket read/write of the protocol (microseconds)
                kwargs["options"] = {"rw_timeout": str(int(t * 1e6))}
        try:
            self.container = av.open(self.spec, **kwargs)
        except EOFError:
            raise SourceError(f"input {self.spec} holds 0 video frames (empty or cut short); "
                              "give a video with at least one frame") from None
        except Exception as e:  # PyAV raises av.error.* (OSError subclasses) and others
            what = "cannot connect to" if self.kind == "url" else "cannot open"
            hint = {"url": f" within {connect_timeout:g} s; check the address and that the stream is up "
                           "(--connect-timeout)",
                    "camera": "; check that the camera is free and readable",
                    "file": "; is it a complete, readable video?"}[self.kind]
            raise SourceError(f"{what} {self.spec} ({error_reason(e)}){hint}") from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"input {self.spec} holds no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.codec_context.thread_count = 1  # the model owns the cores; one decoder thread
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None
        cc = self.stream.codec_context
        self.size: tuple[int, int] = (int(cc.width), int(cc.height))
        self.frames_decoded = 0

    @property
    def expected_frames(self) -> int | None:
        """Frames a file announces (its header's count, else duration x fps); ``None`` for live sources."""
        if self.is_live:
            return None
        if self.stream.frames:
            return int(self.stream.frames)
        if self.container.duration and self.fps:
            return int(round(self.container.duration / 1e6 * self.fps))
        return None

    @property
    def is_live(self) -> bool:
        """Cameras and URLs deliver frames in real time; files can be read as fast as decoding goes."""
        return self.kind != "file"

    def __iter__(self) -> Iterator[Frame]:
        end_s: float | None = None  # where the last decoded frame ends, in seconds
        try:
            for vf in self.container.decode(self.stream):
                img = vf.to_ndarray(format="rgb24")
                if vf.time is not None:
                    step = float(vf.duration * vf.time_base) if vf.duration and vf.time_base else 0.0
                    end_s = float(vf.time) + (step or (1.0 / self.fps if self.fps else 0.0))
                yield Frame(img, self.frames_decoded, time.perf_counter())
                self.frames_decoded += 1
        except GeneratorExit:
            raise
        except Exception as e:
            if isinstance(e, self._stalled) and self.read_timeout is not None:
                raise SourceError(f"input {self.spec} stalled after {self.frames_decoded} frame(s): nothing arrived "
                                  f"for {self.read_timeout:g} s (--connect-timeout)") from None
            raise SourceError(f"input {self.spec} failed after {self.frames_decoded} frame(s) "
                              f"({error_reason(e)})") from None
        if self.frames_decoded == 0:
            raise SourceError(f"input {self.spec} holds 0 video frames; give a video with at least one frame")
        if self.kind == "file":
            self._check_complete(end_s)

    def _check_complete(self, end_s: float | None) -> None:
        """A file whose header announces more frames (or a longer duration) than were decoded was cut short."""
        n, announced = self.frames_decoded, int(self.stream.frames or 0)
        if announced and n + 1 < announced:
            raise SourceError(f"input {self.spec} ended after {n} of the {announced} frames its header announces "
                              "(the file is truncated or damaged)")
        duration = self.container.duration  # microseconds (AV_TIME_BASE), None when unknown
        if duration is None or end_s is None or not self.fps:
            return
        start = (self.container.start_time or 0) / 1e6
        total = duration / 1e6
        missing = start + total - end_s
        if missing > max(2.0 / self.fps, 0.05 * total):
            raise SourceError(f"input {self.spec} ended after {n} frame(s), {end_s - start:.2f} s of the "
                              f"{total:.2f} s its header announces (the file is truncated or damaged)")

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


class SyncReader:
    """Frames one after the other from the caller's thread: nothing is dropped."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._it = iter(source)
        self.dropped = 0
        self.max_queued = 0

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or ``None`` once the source has ended."""
        return next(self._it, None)

    def close(self) -> None:
        self._it.close()
        self.source.close()


class LatestFrameReader:
    """Decode in a background thread into a queue of at most ``maxsize`` frames; hand out the newest.

    When the consumer is slower than the source, older frames are dropped (``dropped`` counts them); the
    queue never grows past ``maxsize``. ``pace=True`` releases a file's frames at its fps, as a live source.
    """

    def __init__(self, source: FrameSource, *, maxsize: int = 2, pace: bool = False) -> None:
        if maxsize < 1:
            raise InputError(f"queue size {maxsize} must be >= 1")
        self.source = source
        self.maxsize = maxsize
        self.pace = pace and bool(source.fps)
        self.dropped = 0
        self.max_queued = 0
        self._q: collections.deque[Frame] = collections.deque()
        self._cv = threading.Condition()
        self._done = False
        self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"decode:{source.spec}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            for f in self.source:
                if self.pace:
                    delay = t0 + f.index / float(self.source.fps) - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    f.t_arrived = time.perf_counter()
                with self._cv:
                    if self._stop:
                        break
                    if len(self._q) >= self.maxsize:
                        self._q.popleft()
                        self.dropped += 1
                    self._q.append(f)
                    self.max_queued = max(self.max_queued, len(self._q))
                    self._cv.notify_all()
        except BaseException as e:  # handed to the consumer thread
            self._error = e
        finally:
            with self._cv:
                self._done = True
                self._cv.notify_all()

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame (older queued ones are dropped), waiting for one; ``None`` once the source ended."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._q or self._done, timeout=timeout):
                raise SourceError(f"input {self.source.spec} delivered no frame for {timeout:g} s")
            if self._q:
                self.dropped += len(self._q) - 1
                f = self._q[-1]
                self._q.clear()
                return f
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            return None

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._q.clear()
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.source.close()
