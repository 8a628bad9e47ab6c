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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gmg_deploy.checks import check_timeout
from gmg_deploy.errors import InputError
from gmg_deploy.video.panel import column_labels, panel_geometry, render_panel
from gmg_deploy.video.preprocess import Preprocessor
from gmg_deploy.video.source import FrameSource, LatestFrameReader, SourceError, SyncReader, error_reason

DEFAULT_FPS = 30.0
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
        pct = {f"p{q}": float(np.percentile(lat, q)) if lat.size else None for q in (50, 95, 99)}
        return {
            "streams": [{"input": s.spec, "kind": s.kind, "fps": s.fps, "size": list(s.size), "frames": s.frames,
                         "dropped": s.dropped, "error": s.error} for s in self.streams],
            "horizon": self.horizon, "realtime": self.realtime, "frames": self.frames, "dropped": self.dropped,
            "steps": self.steps, "seconds": self.wall_s,
            "latency_ms": pct,
            "model_ms_per_step": self.model_s / self.model_steps * 1e3 if self.model_steps else None,
            "end_to_end_fps": self.frames / self.wall_s if self.wall_s > 0 else None,
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
) -> VideoReport:
    """Forecast every source with ``fc`` (``fc.batch_size`` slots); see the module docstring.

    ``realtime`` (default: on when any source is live) decodes in background threads and forecasts from
    the newest frame, dropping stale ones; a file is then released at its own fps, as a live source.
    The panel video (``video_out``) gets one row per source and a "true t+K" column when a source is a file.
    ``keep_preds``/``keep_observed``: keep each frame's forecast / model input in the report's streams -
    ``True`` every frame, an int ``n`` only the last ``n`` (bounded memory on a live source).
    """
    if isinstance(horizon, bool) or int(horizon) < 1:
        raise InputError(f"--horizon {horizon} must be >= 1")
    K = int(horizon)
    read_timeout = check_timeout(read_timeout, "read_timeout")
    if not sources:
        raise InputError("no video source given")
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata, fit)
    C, H, W = fc.frame_shape
    B = fc.batch_size
    live = any(s.is_live for s in sources)
    realtime = live if realtime is None else bool(realtime)
    report = VideoReport([StreamResult(s.spec, s.kind, s.fps, s.size, preds=_store(keep_preds),
                                       observed=_store(keep_observed)) for s in sources], K, realtime)
    with_truth = any(not s.is_live for s in sources)
    labels = column_labels(K, with_truth)
    delay = K if with_truth else 0
    writer = None
    if video_out is not None:
        from gmg_deploy.video.writer import VideoWriter

        fps = next((s.fps for s in sources if s.fps), None)
        if fps is None:
            fps = DEFAULT_FPS
            if note is not None:
                note(f"note: the source does not report its frame rate; writing {DEFAULT_FPS:g} fps")
        geo = panel_geometry((H, W), len(labels), len(sources))
        writer = VideoWriter(video_out, fps, geo.size, note=note)
        report.video_out, report.codec = str(video_out), writer.codec

    readers: dict[int, Any] = {}
    slots: list[int | None] = [None] * B
    waiting = collections.deque(range(len(sources)))
    # per step: one entry per source, (observed, t+1, t+K) uint8 images or None
    history: collections.deque[list[Any]] = collections.deque()

    def start(slot: int) -> None:
        si = waiting.popleft()
        src = sources[si]
        readers[si] = (LatestFrameReader(src, maxsize=queue_size, pace=not src.is_live) if realtime
                       else SyncReader(src))
        slots[slot] = si

    def finish(si: int, error: str | None = None) -> None:
        r = readers.pop(si)
        report.streams[si].dropped = r.dropped
        r.close()
        if error:
            report.streams[si].error = error

    def emit(entry: list[Any], truth_entry: list[Any] | None) -> None:
        rows = []
        for si, cells in enumerate(entry):
            if cells is None:
                rows.append([None] * len(labels))
                continue
            row = list(cells)
            if with_truth:
                t = truth_entry[si] if truth_entry is not None and not sources[si].is_live else None
                row.append(None if t is None else t[0])
            rows.append(row)
        writer.write(render_panel(rows, labels))
        report.video_frames += 1

    t_start = time.perf_counter()
    try:
        try:
            for slot in range(min(B, len(sources))):
                start(slot)
            while True:
                x = np.zeros((B, C, H, W), dtype=np.float32)
                arrived: list[tuple[int, int, float]] = []  # (slot, source, t_arrived)
                for slot in range(B):
                    while slots[slot] is not None:
                        si = slots[slot]
                        try:
                            f = readers[si].latest(timeout=read_timeout if sources[si].is_live else None)
                        except SourceError as e:
                            if report.streams[si].frames == 0 and len(sources) == 1:
                                raise
                            finish(si, str(e))
                            f = None
                        else:
                            if f is None:
                                finish(si)
                        if f is not None:
                            x[slot] = pre(f.image)
                            arrived.append((slot, si, f.t_arrived))
                            break
                        slots[slot] = None
                        if waiting:
                            start(slot)
                            fc.reset(slots=[slot])
                if not arrived:
                    break
                t0 = time.perf_counter()
                try:
                    fc.observe(x)
                    fut = fc.forecast(K)
                except Exception as e:  # the engine failed (a server gone, a runtime error): keep what was done
                    report.engine_error = (f"the {fc.backend_name} engine failed at step {report.steps + 1} "
                                           f"({error_reason(e, 300)}); the run stopped there")
                    break
                if on_step is not None:
                    on_step(report.steps)
                t1 = time.perf_counter()
                report.model_s += t1 - t0
                report.model_steps += K
                report.steps += 1
                entry: list[Any] = [None] * len(sources)
                for slot, si, t_arr in arrived:
                    res = report.streams[si]
                    res.frames += 1
                    report.latencies_s.append(t1 - t_arr)
                    if keep_preds:
                        res.preds.append(fut[slot])
                    if keep_observed:
                        res.observed.append(x[slot])
                    if writer is not None:
                        entry[si] = (pre.to_uint8(x[slot]), pre.to_uint8(fut[slot, 0]), pre.to_uint8(fut[slot, K - 1]))
                if writer is not None:
                    history.append(entry)
                    if len(history) > delay:
                        emit(history.popleft(), entry if delay else None)
                if progress is not None:
                    report.wall_s = time.perf_counter() - t_start
                    progress(report)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as errors.Terminated: keep what was processed
            report.interrupted, report.interrupt = True, e
        if writer is not None:
            while history:
                emit(history.popleft(), None)
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for si in list(readers):
            finish(si)
        for s in sources:
            s.close()
        report.wall_s = time.perf_counter() - t_start
    return report
