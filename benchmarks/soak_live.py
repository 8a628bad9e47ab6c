"""Soak the live path: a looping live source at high fps, a forced drop every N seconds, for --minutes.

The source is a short H.264 clip released at ``--fps`` as a live camera; it ends every ``--drop-every``
seconds (the clip's length), so the :class:`ReconnectingSource` loses it and reopens it (a forced
disconnect with backoff). The loop is the live loop the stream integration will run: newest frame
(:class:`ReconnectingReader`: stale frames dropped, ``DOWN`` while disconnected), a slot reset at every
new epoch, the demo model (torch, CPU, one thread) observing and forecasting K ahead, a panel rendered
and published to the live view (polled by a client thread the whole time) and metrics recorded.

Every ``--sample`` seconds: RSS, open fds, threads, frames, drops, reconnects, latency p50/p99 of the
window. At the end, one JSON line: totals and the drift from the first sample after warm-up.

    python benchmarks/soak_live.py [--minutes 3] [--fps 60] [--drop-every 10] [--horizon 5]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import torch

from gmg_deploy import load_checkpoint
from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
from gmg_deploy.runtime import Forecaster
from gmg_deploy.video.live_metrics import LiveMetrics
from gmg_deploy.video.live_view import LiveView
from gmg_deploy.video.panel import column_labels, render_panel
from gmg_deploy.video.preprocess import Preprocessor
from gmg_deploy.video.reconnect import DOWN, Backoff, LiveFrame, ReconnectingReader, ReconnectingSource
from gmg_deploy.video.source import FrameSource


def make_clip(path: Path, frames: int, fps: int) -> None:
    seqs = demo_dataset("test", n=-(-frames // 20))[:, :, 0].reshape(-1, 32, 32)[:frames]
    ys, xs = np.arange(96) * 32 // 96, np.arange(128) * 32 // 128
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 128, 96, "yuv420p"
        for f in seqs:
            g = (f[ys][:, xs] * 255).astype(np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(np.stack([g, g, g], -1), format="rgb24")):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


class PacedClip:
    """A clip released at ``fps`` in real time, as a camera would (then EOF: the forced drop)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.src = FrameSource(str(path))
        self.spec, self.kind, self.fps, self.size = f"live:{path.name}", "url", fps, self.src.size
        self.is_live = True

    def __iter__(self):
        t0 = time.perf_counter()
        for f in self.src:
            delay = t0 + f.index / self.fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            f.t_arrived = time.perf_counter()
            yield f

    def close(self) -> None:
        self.src.close()


def proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    return {"rss_kb": out["VmRSS"], "threads": out["Threads"], "fds": len(os.listdir("/proc/self/fd"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--drop-every", type=float, default=10.0, help="seconds between forced disconnects")
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds before the drift reference sample")
    args = ap.parse_args()
    torch.set_num_threads(1)
    fc = Forecaster.from_model(load_checkpoint(demo_checkpoint_path()), batch_size=1)
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata, "crop")
    K = args.horizon
    labels = column_labels(K, False)
    metrics = LiveMetrics(["cam0"])
    view = LiveView("127.0.0.1", 0, metrics)
    halt = threading.Event()
    polled = [0]

    def browser() -> None:  # a viewer polling the page's panel and metrics the whole run
        while not halt.is_set():
            for path in ("frame.jpg?after=0", "metrics"):
                try:
                    with urllib.request.urlopen(view.url + path, timeout=5) as r:
                        r.read()
                    polled[0] += 1
                except OSError:
                    pass
            halt.wait(0.1)

    viewer = threading.Thread(target=browser, daemon=True)
    viewer.start()
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "loop.mp4"
        make_clip(clip, max(2, int(args.drop_every * args.fps)), args.fps)
        lines: list[str] = []
        rs = ReconnectingSource(lambda: PacedClip(clip, args.fps), stall_timeout=5.0, yield_events=False,
                                backoff=Backoff(initial=0.05, maximum=1.0, rng=random.Random(0)),
                                log=lambda s: lines.append(s) if len(lines) < 50 else None)
        reader = ReconnectingReader(rs, maxsize=2)
        samples = []
        window: list[float] = []
        t_start = time.perf_counter()
        t_next = t_start
        epoch, frames, resets, reported_drops, down_polls = 0, 0, 0, 0, 0
        try:
            while True:
                now = time.perf_counter()
                if now >= t_next:
                    lat = np.asarray(window) * 1e3
                    samples.append(dict(t_s=round(now - t_start, 1), **proc_status(), frames=frames,
                                        dropped=reader.dropped, reconnects=rs.reconnects, resets=resets,
                                        p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
                                        p99_ms=float(np.percentile(lat, 99)) if lat.size else None))
                    print(json.dumps(samples[-1]), flush=True)
                    window = []
                    t_next += args.sample
                if now - t_start >= args.minutes * 60:
                    break
                f = reader.latest()
                if f is None:
                    break
                if f is DOWN:  # disconnected: nothing to observe (other streams would go on)
                    down_polls += 1
                    halt.wait(0.01)
                    continue
                if isinstance(f, LiveFrame) and f.epoch != epoch:  # a new, unrelated piece of video
                    fc.reset(slots=[0])
                    epoch = f.epoch
                    resets += 1
                    metrics.reconnect("cam0")
                x = pre(f.image)[None]
                t0 = time.perf_counter()
                fc.observe(x)
                fut = fc.forecast(K)
                t1 = time.perf_counter()
                metrics.model_step(t1 - t0)
                metrics.frame("cam0", t1 - f.t_arrived)
                metrics.dropped("cam0", reader.dropped - reported_drops)
                reported_drops = reader.dropped
                window.append(t1 - f.t_arrived)
                frames += 1
                view.publish(render_panel([[pre.to_uint8(x[0]), pre.to_uint8(fut[0, 0]),
                                            pre.to_uint8(fut[0, K - 1])]], labels))
        finally:
            rs.stop()
            reader.close()
            halt.set()
            viewer.join(10)
            view.close()
    ref = next((s for s in samples if s["t_s"] >= args.warmup), samples[-1])
    last = samples[-1]
    print(json.dumps({
        "minutes": args.minutes, "fps": args.fps, "drop_every_s": args.drop_every, "frames": frames,
        "dropped": reader.dropped, "reconnects": rs.reconnects, "resets": resets, "down_polls": down_polls,
        "disconnected_s": round(rs.disconnected_s, 2), "viewer_requests": polled[0],
        "rss_kb_drift": last["rss_kb"] - ref["rss_kb"], "fds": sorted({s["fds"] for s in samples}),
        "threads": sorted({s["threads"] for s in samples}),
        "p99_ms_max": max((s["p99_ms"] for s in samples if s["p99_ms"] is not None), default=None),
        "log_head": lines[:4],
    }), flush=True)


if __name__ == "__main__":
    main()
