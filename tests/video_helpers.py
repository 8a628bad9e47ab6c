"""Clips the video tests encode themselves with PyAV, from the demo data (moving digits)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from gmg_deploy.data.demo import demo_dataset


def demo_frames(t: int, h: int, w: int, colour: bool, seed: int = 0) -> np.ndarray:
    """``t`` uint8 frames ``(t,h,w,3)`` (or ``(t,h,w)`` grey): demo digits resized to ``h x w`` (nearest)."""
    seqs = demo_dataset(seed=seed, n=max(1, -(-t // 20)))[:, :, 0]  # (n, 20, 32, 32) in [0,1]
    f = seqs.reshape(-1, 32, 32)[:t]
    ys, xs = (np.arange(h) * 32 // h), (np.arange(w) * 32 // w)
    f = (f[:, ys][:, :, xs] * 255).round().astype(np.uint8)
    if not colour:
        return f
    ramp = np.broadcast_to(np.linspace(60, 200, w).astype(np.uint8), f.shape)
    return np.stack([f, np.maximum(f, ramp), 255 - f], axis=-1)


def encode_clip(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write ``frames`` to ``path``: lossless FFV1 in .mkv (any size), else H.264 (.mp4, even sizes)."""
    lossless = path.suffix == ".mkv"
    with av.open(str(path), "w") as c:
        st = c.add_stream("ffv1" if lossless else "libx264", rate=fps)
        h, w = frames.shape[1:3] if len(frames) else (16, 16)
        st.width, st.height = w, h
        grey = frames.ndim == 3
        st.pix_fmt = ("gray" if grey else "bgr0") if lossless else "yuv420p"
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="gray" if grey else "rgb24")
            for p in st.encode(vf):
                c.mux(p)
        if not len(frames):
            c.start_encoding()  # header only: a valid file with 0 frames
        for p in st.encode(None):
            c.mux(p)
    return path


def read_clip(path: Path) -> tuple[np.ndarray, float, tuple[int, int]]:
    """All frames (RGB uint8), the fps and (width, height) of a video file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return np.stack(frames), float(s.average_rate), (s.codec_context.width, s.codec_context.height)


def encode_mpegts(path: Path, n: int, seed: int) -> bytes:
    """``n`` grey 32x32 demo frames as an H.264 MPEG-TS stream (what a live HTTP source sends) -> its bytes."""
    with av.open(str(path), "w", format="mpegts") as c:
        st = c.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 32, 32, "yuv420p"
        for f in demo_frames(n, 32, 32, False, seed=seed):
            rgb = np.ascontiguousarray(np.repeat(f[..., None], 3, axis=-1))
            for p in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path.read_bytes()


class PartialStreamServer:
    """127.0.0.1 HTTP server that sends the first ``send`` bytes of ``payload`` as ``video/mp2t`` and then, with
    ``end="stall"``, sends nothing more and keeps the connection open until :meth:`stop` (bounded), or with
    ``end="reset"`` resets the connection (TCP RST: a live stream dropping mid-way). ``sent`` is set once the
    part has gone out; :meth:`stop` shuts the server down."""

    def __init__(self, payload: bytes, send: int, end: str) -> None:
        import socket
        import struct
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        assert end in ("stall", "reset"), end
        self.sent, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                self.wfile.write(payload[:send])
                self.wfile.flush()
                outer.sent.set()
                if end == "stall":
                    outer.release.wait(120)  # the stall: bounded, ended by stop()
                else:
                    time.sleep(0.5)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()

            def log_message(self, *args):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/live.ts"

    def stop(self) -> None:
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(10)
