"""What the live options add to a stream loop, as a few calls at fixed points: :class:`LiveSession`.

``--serve`` (live view + metrics), ``--video-out rtsp://`` (push) and reconnecting sources (a slot reset
when a stream comes back) in one object, so :func:`~gmg_deploy.video.stream.run_streams` only calls
:meth:`LiveSession.reader`, :meth:`LiveSession.frame`, :meth:`LiveSession.step`,
:meth:`LiveSession.panel`, :meth:`LiveSession.stream_error` and :meth:`LiveSession.close`.
"""
from __future__ import annotations

from typing import Any, Callable

from gmg_deploy.video.reconnect import LiveFrame, ReconnectingReader, ReconnectingSource
from gmg_deploy.video.source import LatestFrameReader


class LiveSession:
    """``LiveSession(specs, serve=("127.0.0.1", 8080), push=(url, fps, (w, h)))``; all parts optional."""

    def __init__(self, specs: list[str], *, serve: tuple[str, int] | None = None,
                 push: tuple[str, float, tuple[int, int]] | None = None,
                 note: Callable[[str], None] | None = None) -> None:
        self.specs = list(specs)
        self.metrics: Any = None
        self.view: Any = None
        self.pusher: Any = None
        self._epochs: dict[int, int] = {}
        self._drops: dict[int, int] = {}
        self.resets = 0
        try:
            if serve is not None:
                from gmg_deploy.video.live_metrics import LiveMetrics
                from gmg_deploy.video.live_view import LiveView

                self.metrics = LiveMetrics(self.specs)
                self.view = LiveView(serve[0], serve[1], self.metrics)
                if note is not None:
                    note(f"note: live view at {self.view.url} (metrics at {self.view.url}metrics)")
            if push is not None:
                from gmg_deploy.video.live_out import RtspPusher

                self.pusher = RtspPusher(push[0], push[1], push[2])
        except BaseException:
            self.close()
            raise

    def reader(self, source: Any, queue_size: int, pace: bool) -> Any:
        """The reader for a stream: :class:`ReconnectingReader` for a reconnecting source."""
        if isinstance(source, ReconnectingSource):
            return ReconnectingReader(source, maxsize=queue_size)
        return LatestFrameReader(source, maxsize=queue_size, pace=pace)

    def frame(self, si: int, frame: Any) -> bool:
        """Before ``frame`` of stream ``si`` is observed: ``True`` when its slot must be reset first (the
        stream came back after a loss: its recurrent state would join two unrelated moments)."""
        epoch = frame.epoch if isinstance(frame, LiveFrame) else 0
        last = self._epochs.get(si)
        self._epochs[si] = epoch
        if last is None or last == epoch:
            return False
        self.resets += 1
        if self.metrics is not None:
            self.metrics.reconnect(self.specs[si])
        return True

    def step(self, model_s: float, latencies: list[tuple[int, float]], drops: dict[int, int]) -> None:
        """After a model step: its time, ``(stream, decode-to-forecast seconds)`` per frame, and every
        stream's drop count so far (the reader's ``dropped``)."""
        if self.metrics is None:
            return
        self.metrics.model_step(model_s)
        for si, lat in latencies:
            self.metrics.frame(self.specs[si], lat)
        for si, n in drops.items():
            self.metrics.dropped(self.specs[si], n - self._drops.get(si, 0))
            self._drops[si] = n

    def stream_error(self, si: int) -> None:
        if self.metrics is not None:
            self.metrics.error(self.specs[si])

    def panel(self, rgb: Any) -> None:
        """The newest panel: to the live view's slot and the push's slot (neither waits on a client)."""
        if self.view is not None:
            self.view.publish(rgb)
        if self.pusher is not None:
            self.pusher.publish(rgb)

    def close(self) -> None:
        """Stop serving and end the push (raises the push's OutputError if it failed)."""
        view, self.view = self.view, None
        pusher, self.pusher = self.pusher, None
        try:
            if pusher is not None:
                pusher.close()
        finally:
            if view is not None:
                view.close()
