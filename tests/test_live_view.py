"""The live view: a real headless Chromium shows the changing panel; /metrics, /healthz, MJPEG, errors."""
from __future__ import annotations

import functools
import io
import json
import socket
import threading
import urllib.request

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from gmg_deploy.errors import InputError, ServeError
from gmg_deploy.video.live_metrics import LiveMetrics
from gmg_deploy.video.live_view import BOUNDARY, LiveView, parse_serve
from gmg_deploy.video.panel import column_labels, render_panel
from live_helpers import CDP, CHROMIUM, LivePage, http_get, parse_metrics
from live_helpers import wait_for as _wait

DEADLINE_S = 60.0
wait_for = functools.partial(_wait, deadline_s=DEADLINE_S, poll_s=0.05)


def _panel(seq: int) -> np.ndarray:
    """A panel that differs strongly from one sequence number to the next (flat colours, a moving block)."""
    cells = []
    for c in range(3):
        cell = np.full((32, 32, 3), (seq * 37 + c * 60) % 200 + 30, np.uint8)
        x = (seq * 5) % 24
        cell[8:16, x:x + 8] = (255, 40, 40)
        cells.append(cell)
    return render_panel([cells], column_labels(4, False))


class _Producer(threading.Thread):
    """Publishes a new panel and one frame of metrics every ~20 ms until stopped (a stand-in model loop)."""

    def __init__(self, view: LiveView, metrics: LiveMetrics) -> None:
        super().__init__(daemon=True)
        self.view, self.metrics = view, metrics
        self.panels: dict[int, np.ndarray] = {}
        self.published = threading.Event()
        self.halt = threading.Event()
        self.frames = self.drops = 0

    def run(self) -> None:
        seq = 0
        while not self.halt.is_set():
            seq += 1
            p = _panel(seq)
            self.panels[seq] = p
            self.view.publish(p)
            self.metrics.frame("cam0", 0.004)
            self.metrics.model_step(0.003)
            self.frames += 1
            if seq % 10 == 0:
                self.metrics.dropped("cam0", 2)
                self.drops += 2
            self.published.set()
            self.halt.wait(0.02)


@pytest.fixture
def served():
    metrics = LiveMetrics(["cam0"])
    view = LiveView("127.0.0.1", 0, metrics)
    prod = _Producer(view, metrics)
    prod.start()
    assert prod.published.wait(10)
    try:
        yield view, metrics, prod
    finally:
        prod.halt.set()
        prod.join(10)
        view.close()


def _best_match(shot: np.ndarray, panels: dict[int, np.ndarray]) -> tuple[int, float]:
    errs = {s: float(np.abs(shot.astype(np.int16) - p.astype(np.int16)).mean()) for s, p in list(panels.items())}
    seq = min(errs, key=errs.get)
    return seq, errs[seq]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_browser_shows_the_panel_and_it_changes(served, tmp_path):
    view, metrics, prod = served
    cdp = CDP(str(tmp_path / "chromium"), DEADLINE_S)
    try:
        page = LivePage(cdp, view.url)
        first_seen = wait_for(page.seen, "the page to show a panel")
        s1, a = page.shot()
        threading.Event().wait(1.0)  # two screenshots a second apart
        wait_for(lambda: page.seen() > s1 + 1, "the page to show newer panels")
        s2, b = page.shot()
        h, w = _panel(1).shape[:2]
        assert page.panel_rect() == [0, 0, w, h]
        cells = wait_for(lambda: page.value(
            "Array.from(document.querySelectorAll('#stats tbody td')).map((td) => td.textContent)"),
            "the stats table")
    finally:
        cdp.close()
    pa, pb = a[:h, :w], b[:h, :w]
    seq_a, err_a = _best_match(pa, prod.panels)
    seq_b, err_b = _best_match(pb, prod.panels)
    assert err_a < 6 and err_b < 6, (err_a, err_b)  # it is a published panel (JPEG-close)
    assert seq_b > seq_a and s2 > s1 >= first_seen
    # and it changed: the second shot is measurably not the first panel
    stale = float(np.abs(pb.astype(np.int16) - prod.panels[seq_a].astype(np.int16)).mean())
    assert stale > err_b + 1 and np.abs(pa.astype(np.int16) - pb.astype(np.int16)).mean() > 1
    assert cells[0] == "cam0" and float(cells[2]) == 4.0 and int(cells[4]) > 0  # stream, p50 ms, frames


def test_metrics_healthz_and_stats_agree_with_what_was_published(served):
    view, metrics, prod = served
    code, _, body = http_get(view.url + "healthz")
    assert code == 200 and body == b"ok\n"
    metrics.reconnect("cam0")
    metrics.error("cam0")
    prod.halt.set()
    prod.join(10)
    code, headers, body = http_get(view.url + "metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    m = parse_metrics(body.decode())
    assert m['gmg_frames_total{stream="cam0"}'] == prod.frames > 0
    assert m['gmg_dropped_frames_total{stream="cam0"}'] == prod.drops
    assert m['gmg_reconnects_total{stream="cam0"}'] == 1
    assert m['gmg_errors_total{stream="cam0"}'] == 1
    assert m['gmg_latency_ms_count{stream="cam0"}'] == prod.frames
    assert m['gmg_latency_ms_bucket{le="5.0",stream="cam0"}'] == prod.frames  # 4 ms each
    assert m['gmg_latency_ms_bucket{le="2.0",stream="cam0"}'] == 0
    assert m["gmg_model_step_ms_count"] == prod.frames
    stats = json.loads(http_get(view.url + "stats.json")[2])
    s = stats["streams"]["cam0"]
    assert s["frames"] == prod.frames and s["dropped"] == prod.drops and s["reconnects"] == 1
    assert s["p50_ms"] == pytest.approx(4.0) and s["p99_ms"] == pytest.approx(4.0)
    assert stats["panels"] == max(prod.panels)


def test_mjpeg_stream_sends_successive_panels(served):
    from PIL import Image

    view, _, prod = served
    with socket.create_connection((view.host, view.port), timeout=10) as s:
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += f.readline()
        assert f"boundary={BOUNDARY}".encode() in head
        seqs = []
        for _ in range(3):
            assert f.readline() == f"--{BOUNDARY}\r\n".encode()
            hdr = {}
            while (line := f.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                hdr[k.strip()] = v.strip()
            jpg = f.read(int(hdr["Content-Length"]))
            f.readline()
            im = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))
            seq = int(hdr["X-Panel-Seq"])
            assert np.abs(im.astype(np.int16) - prod.panels[seq].astype(np.int16)).mean() < 6
            seqs.append(seq)
        assert seqs == sorted(set(seqs))


def test_close_ends_open_streams_and_frees_the_port():
    metrics = LiveMetrics(["a"])
    view = LiveView("127.0.0.1", 0, metrics)
    view.publish(_panel(1))
    s = socket.create_connection((view.host, view.port), timeout=10)
    s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    f = s.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    port = view.port
    view.close()
    rest = f.read()  # the server ends the stream: EOF, not a hang (the socket has a 10 s timeout)
    assert isinstance(rest, bytes)
    s.close()
    with pytest.raises(ServeError, match="cannot listen"):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            LiveView("127.0.0.1", busy.getsockname()[1], metrics)
        finally:
            busy.close()
    LiveView("127.0.0.1", port, metrics).close()  # the port is free again


def test_parse_serve():
    assert parse_serve("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_serve(":9000") == ("127.0.0.1", 9000)
    assert parse_serve("9000") == ("127.0.0.1", 9000)
    assert parse_serve("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("host:", "x:99999", "a:b"):
        with pytest.raises(InputError, match="--serve"):
            parse_serve(bad)


def test_frame_before_any_panel_is_503():
    view = LiveView("127.0.0.1", 0, LiveMetrics())
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            http_get(view.url + "frame.jpg")
        assert e.value.code == 503
    finally:
        view.close()


def test_missing_prometheus_client_is_one_line_naming_the_extra():
    import subprocess
    import sys

    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from gmg_deploy.errors import GMGError\n"
            "from gmg_deploy.video.live_metrics import LiveMetrics\n"
            "try:\n    LiveMetrics()\nexcept GMGError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("--serve needs prometheus-client, which is not installed; "
                                "run: pip install gmg-deploy[live]")
