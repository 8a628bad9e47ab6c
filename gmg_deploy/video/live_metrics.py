"""Live-run metrics: Prometheus counters/histograms (own registry, ``stream`` label) and rolling per-stream stats.

prometheus-client is the ``[live]`` extra; it is imported only when :class:`LiveMetrics` is made.
Everything here is bounded: rolling windows keep the last :data:`WINDOW` frames per stream.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from gmg_deploy.errors import InputError

LIVE_HINT = "pip install gmg-deploy[live]"
#: frames per stream kept for the page's fps and latency percentiles
WINDOW = 512
#: milliseconds; histogram buckets for model time per step and decode-to-forecast latency
MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def require_prometheus() -> Any:
    """``import prometheus_client`` or one :class:`InputError` naming the ``[live]`` extra."""
    try:
        import prometheus_client
    except ImportError:
        raise InputError(f"--serve needs prometheus-client, which is not installed; run: {LIVE_HINT}") from None
    return prometheus_client


class _Rolling:
    """The last ``WINDOW`` frames of one stream: arrival times and latencies."""

    def __init__(self) -> None:
        self.t: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self.lat_ms: collections.deque[float] = collections.deque(maxlen=WINDOW)


class LiveMetrics:
    """Counters ``gmg_frames_total``, ``gmg_dropped_frames_total``, ``gmg_reconnects_total``,
    ``gmg_errors_total`` and histograms ``gmg_latency_ms`` (decode to forecast) per ``stream``;
    ``gmg_model_step_ms`` (one batched step for all streams). Thread-safe; :meth:`exposition` is the
    Prometheus text format, :meth:`snapshot` the page's per-stream numbers.
    """

    def __init__(self, streams: list[str] | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        pc = require_prometheus()
        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        lab = ["stream"]
        self.frames = pc.Counter("gmg_frames", "frames forecast", lab, registry=self.registry)
        self.drops = pc.Counter("gmg_dropped_frames", "frames dropped (stale)", lab, registry=self.registry)
        self.reconnects = pc.Counter("gmg_reconnects", "times a source came back", lab, registry=self.registry)
        self.errors = pc.Counter("gmg_errors", "source errors", lab, registry=self.registry)
        self.latency = pc.Histogram("gmg_latency_ms", "decode-to-forecast latency (ms)", lab,
                                    buckets=MS_BUCKETS, registry=self.registry)
        self.model = pc.Histogram("gmg_model_step_ms", "model time per step, all streams (ms)",
                                  buckets=MS_BUCKETS, registry=self.registry)
        self.clock = clock
        self._lock = threading.Lock()
        self._roll: dict[str, _Rolling] = {}
        self._counts: dict[str, dict[str, int]] = {}
        for s in streams or []:
            self._stream(s)

    def _stream(self, s: str) -> dict[str, int]:
        if s not in self._counts:
            self._counts[s] = {"frames": 0, "dropped": 0, "reconnects": 0, "errors": 0}
            self._roll[s] = _Rolling()
            for c in (self.frames, self.drops, self.reconnects, self.errors):
                c.labels(stream=s)  # exported at 0 from the start
        return self._counts[s]

    def frame(self, stream: str, latency_s: float) -> None:
        """One forecast frame of ``stream``, ``latency_s`` from its decode to its forecast."""
        ms = float(latency_s) * 1e3
        with self._lock:
            c = self._stream(stream)
            c["frames"] += 1
            r = self._roll[stream]
            r.t.append(self.clock())
            r.lat_ms.append(ms)
        self.frames.labels(stream=stream).inc()
        self.latency.labels(stream=stream).observe(ms)

    def dropped(self, stream: str, n: int = 1) -> None:
        if n <= 0:
            return
        with self._lock:
            self._stream(stream)["dropped"] += n
        self.drops.labels(stream=stream).inc(n)

    def reconnect(self, stream: str) -> None:
        with self._lock:
            self._stream(stream)["reconnects"] += 1
        self.reconnects.labels(stream=stream).inc()

    def error(self, stream: str) -> None:
        with self._lock:
            self._stream(stream)["errors"] += 1
        self.errors.labels(stream=stream).inc()

    def model_step(self, seconds: float) -> None:
        self.model.observe(float(seconds) * 1e3)

    def exposition(self) -> bytes:
        """``/metrics``: the Prometheus text format of this registry only."""
        return self._pc.generate_latest(self.registry)

    @property
    def content_type(self) -> str:
        return str(self._pc.CONTENT_TYPE_LATEST)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per stream: counts, fps over the window, latency p50/p99 (ms) over the window."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for s, c in self._counts.items():
                r = self._roll[s]
                t = list(r.t)
                lat = np.asarray(r.lat_ms, dtype=np.float64)
                fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else None
                out[s] = dict(c, fps=fps,
                              p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
                              p99_ms=float(np.percentile(lat, 99)) if lat.size else None)
        return out
