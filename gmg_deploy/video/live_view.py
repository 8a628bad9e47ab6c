"""The live view (``--serve HOST:PORT``): an HTTP page with the newest panel, per-stream stats, ``/metrics``.

The model loop only calls :meth:`LiveView.publish` (store a reference to the newest panel and bump a
sequence number - no encoding, no I/O); HTTP handler threads JPEG-encode the newest panel once per
sequence number and send it, so a slow browser misses panels instead of slowing the forecast.

Routes: ``/`` the page (the panel refreshed as panels arrive, stats once a second), ``/frame.jpg`` the
newest panel, ``/stream.mjpg`` MJPEG (``multipart/x-mixed-replace``), ``/stats.json``, ``/metrics``
(Prometheus text format), ``/healthz``. The server runs in a daemon thread and stops with :meth:`close`.
"""
from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from gmg_deploy.errors import InputError, ServeError
from gmg_deploy.video.live_metrics import LiveMetrics

DEFAULT_HOST = "127.0.0.1"
BOUNDARY = "gmgpanel"
JPEG_QUALITY = 85
#: a waiting MJPEG client re-checks for shutdown this often (seconds)
POLL_S = 0.5

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>gmg live</title>
<style>body{margin:0;background:#111;color:#eee;font:13px monospace}#panel{display:block}
table{border-collapse:collapse;margin:8px}td,th{padding:2px 10px;text-align:right}</style></head>
<body><img id="panel" alt="live panel" src="/frame.jpg">
<table id="stats"><thead><tr><th>stream</th><th>fps</th><th>p50 ms</th><th>p99 ms</th><th>frames</th>
<th>drops</th><th>reconnects</th><th>errors</th></tr></thead><tbody></tbody></table>
<script>
const img = document.getElementById("panel");
let seen = 0;
async function panels() {  // long-poll: ask for the panel after the one shown
  try {
    const r = await fetch("/frame.jpg?after=" + seen, {cache: "no-store"});
    if (r.ok) {
      seen = parseInt(r.headers.get("X-Panel-Seq") || "0");
      const url = URL.createObjectURL(await r.blob());
      const old = img.src;
      img.src = url;
      await img.decode().catch(() => {});
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    } else { await new Promise((ok) => setTimeout(ok, 300)); }
  } catch (e) { await new Promise((ok) => setTimeout(ok, 500)); }
  setTimeout(panels, 0);
}
panels();
const f = (v) => v === null ? "-" : (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : v);
async function stats() {
  try {
    const s = await (await fetch("/stats.json")).json();
    const rows = Object.entries(s.streams).map(([k, v]) => "<tr><td>" + k + "</td>" +
      [v.fps, v.p50_ms, v.p99_ms, v.frames, v.dropped, v.reconnects, v.errors].map(
        (x) => "<td>" + f(x) + "</td>").join("") + "</tr>");
    document.querySelector("#stats tbody").innerHTML = rows.join("");
  } catch (e) {}
  setTimeout(stats, 1000);
}
stats();
</script></body></html>
"""


def parse_serve(text: str) -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"`` or ``"PORT"`` -> ``(host, port)`` (host defaults to 127.0.0.1)."""
    s = str(text).strip()
    host, sep, port = s.rpartition(":")
    if not sep:
        host, port = "", s
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--serve {text}: give HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8080")
    return host, int(port)


class PanelSlot:
    """The newest panel and its sequence number; JPEG bytes made on demand, once per panel."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._panel: np.ndarray | None = None
        self.seq = 0
        self.closed = False
        self._jpeg: tuple[int, bytes] | None = None
        self._encode_lock = threading.Lock()

    def publish(self, panel: np.ndarray) -> None:
        """Replace the newest panel (RGB uint8 ``(H,W,3)``); never blocks on clients."""
        with self._cv:
            self._panel = panel
            self.seq += 1
            self._cv.notify_all()

    def wait_newer(self, seen: int, timeout: float) -> int:
        """Wait up to ``timeout`` s for a panel newer than ``seen``; the current sequence number."""
        with self._cv:
            self._cv.wait_for(lambda: self.seq > seen or self.closed, timeout=timeout)
            return self.seq

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def jpeg(self) -> tuple[int, bytes] | None:
        """``(seq, JPEG bytes)`` of the newest panel, or ``None`` before the first one."""
        with self._cv:
            panel, seq = self._panel, self.seq
        if panel is None:
            return None
        with self._encode_lock:
            if self._jpeg is None or self._jpeg[0] != seq:
                from PIL import Image

                buf = io.BytesIO()
                Image.fromarray(np.ascontiguousarray(panel)).save(buf, format="JPEG", quality=JPEG_QUALITY)
                self._jpeg = (seq, buf.getvalue())
            return self._jpeg


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive or stalled client frees its thread after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the run's output is the report
        pass

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        view = self.server.view
        path, _, query = self.path.partition("?")
        try:
            if path == "/":
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/metrics":
                self._send(200, view.metrics.exposition(), view.metrics.content_type)
            elif path == "/stats.json":
                body = json.dumps({"panels": view.slot.seq, "streams": view.metrics.snapshot()}).encode()
                self._send(200, body, "application/json")
            elif path == "/frame.jpg":
                after = parse_qs(query).get("after", [""])[0]
                self._frame(int(after) if after.isdigit() else None)
            elif path == "/stream.mjpg":
                self._mjpeg()
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except OSError:
            pass  # the browser went away or stalled past the timeout

    def _frame(self, after: int | None) -> None:
        slot = self.server.view.slot
        if after is not None:  # long-poll: the first panel after the client's (a bounded wait)
            slot.wait_newer(after, timeout=2.0)
        got = slot.jpeg()
        if got is None:
            self._send(503, b"no panel yet\n", "text/plain; charset=utf-8", {"Retry-After": "1"})
            return
        self._send(200, got[1], "image/jpeg", {"X-Panel-Seq": str(got[0])})

    def _mjpeg(self) -> None:
        slot = self.server.view.slot
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen = 0
        while not slot.closed:
            seq = slot.wait_newer(seen, timeout=POLL_S)
            if seq <= seen:
                continue
            got = slot.jpeg()
            if got is None:
                continue
            seen, data = got
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                             f"X-Panel-Seq: {seen}\r\n\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    view: "LiveView"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A viewer that goes away (reset, broken pipe) is routine: nothing said; any other failure of one
        request is one line on stderr, never a traceback on the run's output."""
        import sys

        e = sys.exc_info()[1]
        if not isinstance(e, (ConnectionError, TimeoutError)):
            print(f"note: live view: a request from {client_address[0]} failed ({type(e).__name__}: {e})",
                  file=sys.stderr)


class LiveView:
    """``LiveView("127.0.0.1", 0, metrics)`` serves at once (``url``); :meth:`publish` panels; :meth:`close`."""

    def __init__(self, host: str, port: int, metrics: LiveMetrics) -> None:
        self.metrics = metrics
        self.slot = PanelSlot()
        try:
            self._server = _Server((host, int(port)), _Handler)
        except OSError as e:
            raise ServeError(f"--serve {host}:{port}: cannot listen there ({e.strerror or e}); "
                             "give a free port (0 picks one)") from None
        self._server.view = self
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL_S},
                                        name=f"live-view:{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def publish(self, panel: np.ndarray) -> None:
        self.slot.publish(panel)

    def close(self) -> None:
        """Stop serving: open MJPEG streams end, the listening socket is closed."""
        self.slot.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
