"""Forecast video streams: one slot per source in one batch, a forecast at every frame, panels to a video.

For every step each active slot observes its newest frame, then ``Forecaster.forecast(K)`` branches K
steps ahead without touching the observed state. A source that ends frees its slot (reset) for the next
waiting source; the others go on. ``on_step(step)`` is called after the model's work on every step (a
public hook, e.g. to slow the backend down in tests of the drop policy). Ctrl-C (or SIGTERM, raised as
``errors.Terminated``) stops cleanly: what was processed is kept and the report says ``interrupted``. An
engine that fails mid-run stops the run the same way (``engine_error``), as a failing source ends its stream.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gmg_deploy.checks import check_timeout
from gmg_deploy.errors import InputError
from gmg_deploy.video.live_out import is_live_output
from gmg_deploy.video.live_session import LiveSession
from gmg_deploy.video.panel import column_labels, panel_geometry, render_panel
from gmg_deploy.video.preprocess import Preprocessor
from gmg_deploy.video.reconnect import DOWN, ReconnectingSource
from gmg_deploy.video.source import FrameSource, LatestFrameReader, SourceError, SyncReader, error_reason

DEFAULT_FPS = 30.0
#: How long the loop waits when every stream is down (reconnecting) before it looks again
IDLE_WAIT_S = 0.05
#: Latency percentiles cover the most recent frames only, so a days-long live run keeps bounded memory.
LATENCY_WINDOW = 100_000


def _store(keep: bool | int) -> Any:
    """Where a stream keeps its per-frame arrays: ``True`` all of them, an int ``n`` only the last ``n``."""
    if isinstance(keep, bool):
        return []
    return collections.deque(maxlen=int(keep))


@dataclass
class StreamResult:
    """What happened to one source: frames forecast, frames dropped, its error if it failed."""

    spec: str
    kind: str
    fps: float | None
    size: tuple[int, int]
    frames: int = 0
    dropped: int = 0
    error: str | None = None
    #: a reconnecting source: comebacks after a loss (each resets the stream's slot) and the time it was down
    reconnects: int = 0
    losses: int = 0
    disconnected_s: float = 0.0
    preds: Any = field(default_factory=list)     # (K,C,H,W) per frame, model units (a list, or a bounded deque)
    observed: Any = field(default_factory=list)  # (C,H,W) per frame, model units (likewise)


@dataclass
class VideoReport:
    """Timings and counts of a :func:`run_streams` call; :meth:`summary` is the JSON report."""

    streams: list[StreamResult]
    horizon: int
    realtime: bool
    #: decode-to-forecast latency of the last :data:`LATENCY_WINDOW` frames
    latencies_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    model_s: float = 0.0
    model_steps: int = 0
    steps: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    #: the KeyboardInterrupt (or its SIGTERM subclass ``errors.Terminated``) that stopped the run
    interrupt: BaseException | None = None
    #: why the engine failed mid-run (the run stopped there; what was processed is kept)
    engine_error: str | None = None
    video_out: str | None = None
    video_frames: int = 0
    codec: str | None = None
    #: seconds every stream was down at once (reconnecting): not counted in ``end_to_end_fps``
    all_down_s: float = 0.0

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.streams)

    @property
    def partial(self) -> bool:
        return self.interrupted or self.engine_error is not None or any(s.error for s in self.streams)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_s, dtype=np.float64) * 1e3
        up = self.wall_s - self.all_down_s
        pct = {f"p{q}": float(np.percentile(lat, q)) if lat.size else None for q in (50, 95, 99)}
        return {
            "streams": [{"input": s.spec, "kind": s.kind, "fps": s.fps, "size": list(s.size), "frames": s.frames,
                         "dropped": s.dropped, "error": s.error, "reconnects": s.reconnects,
                         "losses": s.losses, "disconnected_s": s.disconnected_s} for s in self.streams],
            "horizon": self.horizon, "realtime": self.realtime, "frames": self.frames, "dropped": self.dropped,
            "steps": self.steps, "seconds": self.wall_s,
            "latency_ms": pct,
            "model_ms_per_step": self.model_s / self.model_steps * 1e3 if self.model_steps else None,
            "end_to_end_fps": self.frames / up if up > 0 else None, "all_down_s": self.all_down_s,
            "model_only_fps": self.frames / self.model_s if self.model_s > 0 else None,
            "partial": self.partial, "interrupted": self.interrupted, "engine_error": self.engine_error,
            "video_out": self.video_out, "video_frames": self.video_frames, "codec": self.codec,
        }


def open_sources(specs: list[str], connect_timeout: float = 10.0) -> list[FrameSource]:
    """Open every source up front (so a bad one fails before any work); closes the opened ones on error."""
    out: list[FrameSource] = []
    try:
        for s in specs:
            out.append(FrameSource(s, connect_timeout=connect_timeout))
    except BaseException:
        for src in out:
            src.close()
        raise
    return out


def _frame_rate(sources: list[Any], note: Callable[[str], None] | None) -> float:
    """The output frame rate: the first source's that reports one, else :data:`DEFAULT_FPS` (with a note)."""
    fps = next((s.fps for s in sources if s.fps), None)
    if fps is None:
        fps = DEFAULT_FPS
        if note is not None:
            note(f"note: the source does not report its frame rate; writing {DEFAULT_FPS:g} fps")
    return fps


class _Panels:
    """Where panels go: the ``--video-out`` file, the live session (view, RTSP push); rows held back
    ``delay`` steps so a file's row can show its true frame t+K. The live session also exists for
    reconnecting sources alone (it tells when a slot must be reset)."""

    def __init__(self, sources: list[Any], K: int, hw: tuple[int, int], report: VideoReport,
                 video_out: str | Path | None, serve: tuple[str, int] | None,
                 note: Callable[[str], None] | None) -> None:
        self.sources, self.report = sources, report
        self.with_truth = any(not s.is_live for s in sources)
        self.labels = column_labels(K, self.with_truth)
        self.delay = K if self.with_truth else 0
        self.history: collections.deque[list[Any]] = collections.deque()
        self.writer: Any = None
        self.live: LiveSession | None = None
        push = video_out is not None and is_live_output(str(video_out))
        fps = _frame_rate(sources, note) if video_out is not None else DEFAULT_FPS
        size = panel_geometry(hw, len(self.labels), len(sources)).size
        if serve is not None or push or any(isinstance(s, ReconnectingSource) for s in sources):
            self.live = LiveSession([s.spec for s in sources], serve=serve,
                                    push=(str(video_out), fps, size) if push else None, note=note)
        if video_out is not None:
            report.video_out, report.codec = str(video_out), "h264 (rtsp push)"
        if video_out is not None and not push:
            from gmg_deploy.video.writer import VideoWriter

            try:
                self.writer = VideoWriter(video_out, fps, size, note=note)
            except BaseException:
                self.abort()
                raise
            report.codec = self.writer.codec
        live = self.live
        self.wanted = self.writer is not None or (live is not None and (live.view or live.pusher) is not None)

    def add(self, entry: list[Any]) -> None:
        """One step's cells (one entry per source: (observed, t+1, t+K) images or None)."""
        self.history.append(entry)
        if len(self.history) > self.delay:
            self._emit(self.history.popleft(), entry if self.delay else None)

    def _emit(self, entry: list[Any], truth_entry: list[Any] | None) -> None:
        rows = []
        for si, cells in enumerate(entry):
            if cells is None:
                rows.append([None] * len(self.labels))
                continue
            row = list(cells)
            if self.with_truth:
                t = truth_entry[si] if truth_entry is not None and not self.sources[si].is_live else None
                row.append(None if t is None else t[0])
            rows.append(row)
        panel = render_panel(rows, self.labels)
        if self.writer is not None:
            self.writer.write(panel)
            self.report.video_frames += 1
        if self.live is not None:
            self.live.panel(panel)

    def close(self) -> None:
        """The held-back rows (without their truth), then publish the file and end the push."""
        while self.history and self.wanted:
            self._emit(self.history.popleft(), None)
        if self.writer is not None:
            self.writer.close()
        if self.live is not None:
            pusher = self.live.pusher
            self.live.close()  # raises the push's OutputError
            if pusher is not None:
                self.report.video_frames = pusher.frames

    def abort(self) -> None:
        """No partial file left; the live view and push stopped (their own errors give way to the first)."""
        if self.writer is not None:
            self.writer.abort()
        if self.live is not None:
            try:
                self.live.close()
            except Exception:
                pass


class _Slots:
    """The slot table: which source each of the batch's slots reads, its reader, the sources waiting."""

    def __init__(self, fc: Any, sources: list[Any], report: VideoReport, live: LiveSession | None, *,
                 realtime: bool, queue_size: int, read_timeout: float) -> None:
        self.fc, self.sources, self.report, self.live = fc, sources, report, live
        self.realtime, self.queue_size, self.read_timeout = realtime, queue_size, read_timeout
        self.slots: list[int | None] = [None] * fc.batch_size
        self.waiting = collections.deque(range(len(sources)))
        self.readers: dict[int, Any] = {}

    def fill(self) -> None:
        for slot in range(min(len(self.slots), len(self.sources))):
            self.start(slot)

    def start(self, slot: int) -> None:
        si = self.waiting.popleft()
        src = self.sources[si]
        if self.live is not None and (self.realtime or isinstance(src, ReconnectingSource)):
            self.readers[si] = self.live.reader(src, self.queue_size, pace=not src.is_live)
        elif self.realtime:
            self.readers[si] = LatestFrameReader(src, maxsize=self.queue_size, pace=not src.is_live)
        else:
            self.readers[si] = SyncReader(src)
        self.slots[slot] = si

    def finish(self, si: int, error: str | None = None) -> None:
        r = self.readers.pop(si)
        res, src = self.report.streams[si], self.sources[si]
        res.dropped = r.dropped
        r.close()
        res.reconnects, res.losses = getattr(src, "reconnects", 0), getattr(src, "losses", 0)
        res.disconnected_s = getattr(src, "disconnected_s", 0.0)
        if error:
            res.error = error
            if self.live is not None:
                self.live.stream_error(si)

    def finish_all(self) -> None:
        for si in list(self.readers):
            self.finish(si)

    def read(self, slot: int) -> tuple[int, Any] | None:
        """``(source, frame or DOWN)`` for ``slot``; a source that ends hands the slot (reset) to a waiting
        one; ``None`` when the slot is left empty."""
        while self.slots[slot] is not None:
            si = self.slots[slot]
            try:
                f = self.readers[si].latest(timeout=self.read_timeout if self.sources[si].is_live else None)
            except SourceError as e:
                if self.report.streams[si].frames == 0 and len(self.sources) == 1:
                    raise
                self.finish(si, str(e))
                f = None
            else:
                if f is None:
                    self.finish(si)
            if f is not None:
                return si, f
            self.slots[slot] = None
            if self.waiting:
                self.start(slot)
                self.fc.reset(slots=[slot])
        return None


class _Run:
    """One :func:`run_streams` call: each step decodes (:meth:`decode`), runs the model (:meth:`step`) and
    records and emits the results (:meth:`record`); :meth:`loop` schedules them."""

    def __init__(self, fc: Any, sources: list[Any], report: VideoReport, pre: Preprocessor, panels: _Panels,
                 slots: _Slots, keep: tuple[bool | int, bool | int],
                 hooks: tuple[Callable[[int], None] | None, Callable[[VideoReport], None] | None]) -> None:
        self.fc, self.sources, self.report, self.pre = fc, sources, report, pre
        self.panels, self.slots, self.live = panels, slots, panels.live
        self.keep_preds, self.keep_observed = keep
        self.on_step, self.progress = hooks
        self.idle = threading.Event()  # waited on (never set) while every stream is down: Ctrl-C still works
        self.t_start = time.perf_counter()

    def decode(self, x: np.ndarray) -> tuple[list[tuple[int, int, float]], bool]:
        """Fill ``x`` with each slot's newest frame -> ``[(slot, source, t_arrived)]``, and whether a
        stream is down (reconnecting). A stream back after a loss has its slot reset first."""
        arrived: list[tuple[int, int, float]] = []
        down = False
        for slot in range(len(self.slots.slots)):
            got = self.slots.read(slot)
            if got is None:
                continue
            si, f = got
            if f is DOWN:  # the slot stays this stream's; its zero input is harmless: reset on comeback
                down = True
                continue
            if self.live is not None and self.live.frame(si, f):
                self.fc.reset(slots=[slot])
            x[slot] = self.pre(f.image)
            arrived.append((slot, si, f.t_arrived))
        return arrived, down

    def step(self, x: np.ndarray) -> np.ndarray | None:
        """Observe ``x`` and forecast; ``None`` when the engine failed (the run stops, what was done kept)."""
        rep, K = self.report, self.report.horizon
        t0 = time.perf_counter()
        try:
            self.fc.observe(x)
            fut = self.fc.forecast(K)
        except Exception as e:  # the engine failed (a server gone, a runtime error): keep what was done
            rep.engine_error = (f"the {self.fc.backend_name} engine failed at step {rep.steps + 1} "
                                f"({error_reason(e, 300)}); the run stopped there")
            return None
        if self.on_step is not None:
            self.on_step(rep.steps)
        t1 = time.perf_counter()
        rep.model_s += t1 - t0
        rep.model_steps += K
        rep.steps += 1
        self.t_model = (t0, t1)
        return fut

    def record(self, x: np.ndarray, fut: np.ndarray, arrived: list[tuple[int, int, float]]) -> None:
        """Count, keep and emit the step's frames; feed the live metrics; the progress hook."""
        rep, K, pre = self.report, self.report.horizon, self.pre
        t0, t1 = self.t_model
        entry: list[Any] = [None] * len(self.sources)
        for slot, si, t_arr in arrived:
            res = rep.streams[si]
            res.frames += 1
            rep.latencies_s.append(t1 - t_arr)
            if self.keep_preds:
                res.preds.append(fut[slot])
            if self.keep_observed:
                res.observed.append(x[slot])
            if self.panels.wanted:
                entry[si] = (pre.to_uint8(x[slot]), pre.to_uint8(fut[slot, 0]), pre.to_uint8(fut[slot, K - 1]))
        if self.live is not None:
            self.live.step(t1 - t0, [(si, t1 - ta) for _, si, ta in arrived],
                           {si: r.dropped for si, r in self.slots.readers.items()})
        if self.panels.wanted:
            self.panels.add(entry)
        if self.progress is not None:
            rep.wall_s = time.perf_counter() - self.t_start
            self.progress(rep)

    def loop(self) -> None:
        """Steps until every source ended (or the engine failed); waits while every stream is down."""
        fc = self.fc
        C, H, W = fc.frame_shape
        self.slots.fill()
        while True:
            x = np.zeros((fc.batch_size, C, H, W), dtype=np.float32)
            arrived, down = self.decode(x)
            if not arrived:
                if not down:
                    return
                t = time.perf_counter()
                self.idle.wait(IDLE_WAIT_S)
                self.report.all_down_s += time.perf_counter() - t
                continue
            fut = self.step(x)
            if fut is None:
                return
            self.record(x, fut, arrived)

    def run(self) -> None:
        """:meth:`loop`, stopped cleanly by Ctrl-C/SIGTERM; outputs published, or aborted on an error."""
        rep = self.report
        try:
            try:
                self.loop()
            except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as errors.Terminated: keep what was processed
                rep.interrupted, rep.interrupt = True, e
            finally:
                self.slots.finish_all()
                for s in self.sources:
                    s.close()
            self.panels.close()
        except BaseException:
            self.panels.abort()
            raise
        finally:
            rep.wall_s = time.perf_counter() - self.t_start


def run_streams(
    fc: Any,
    sources: list[FrameSource],
    *,
    horizon: int,
    fit: str = "crop",
    realtime: bool | None = None,
    video_out: str | Path | None = None,
    keep_preds: bool | int = False,
    keep_observed: bool | int = False,
    on_step: Callable[[int], None] | None = None,
    progress: Callable[[VideoReport], None] | None = None,
    note: Callable[[str], None] | None = None,
    queue_size: int = 2,
    read_timeout: float = 10.0,
    serve: tuple[str, int] | None = None,
    preprocessor: Preprocessor | None = None,
) -> VideoReport:
    """Forecast every source with ``fc`` (``fc.batch_size`` slots); see the module docstring.

    ``realtime`` (default: on when any source is live) decodes in background threads and forecasts from
    the newest frame, dropping stale ones; a file is then released at its own fps, as a live source.
    The panel video (``video_out``: a file, or an ``rtsp://`` URL to push to) gets one row per source and
    a "true t+K" column when a source is a file; ``serve`` (host, port) shows it live with /metrics.
    ``keep_preds``/``keep_observed``: keep each frame's forecast / model input in the report's streams -
    ``True`` every frame, an int ``n`` only the last ``n`` (bounded memory on a live source).
    A reconnecting source (:func:`~gmg_deploy.video.reconnect.reconnecting`) that is down holds nobody up;
    its slot is reset when it comes back, and the time every stream was down is not run time.
    ``preprocessor``: the one the caller already built for ``fc`` (default: from ``fc.metadata`` and ``fit``).
    """
    if isinstance(horizon, bool) or int(horizon) < 1:
        raise InputError(f"--horizon {horizon} must be >= 1")
    K = int(horizon)
    read_timeout = check_timeout(read_timeout, "read_timeout")
    if not sources:
        raise InputError("no video source given")
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata, fit) if preprocessor is None else preprocessor
    realtime = any(s.is_live for s in sources) if realtime is None else bool(realtime)
    report = VideoReport([StreamResult(s.spec, s.kind, s.fps, s.size, preds=_store(keep_preds),
                                       observed=_store(keep_observed)) for s in sources], K, realtime)
    try:
        panels = _Panels(sources, K, fc.frame_shape[1:], report, video_out, serve, note)
    except BaseException:
        for s in sources:
            s.close()
        raise
    slots = _Slots(fc, sources, report, panels.live, realtime=realtime, queue_size=queue_size,
                   read_timeout=read_timeout)
    _Run(fc, sources, report, pre, panels, slots, (keep_preds, keep_observed), (on_step, progress)).run()
    return report
