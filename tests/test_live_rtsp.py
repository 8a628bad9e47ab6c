"""RTSP for real: GStreamer's RTSP server on 127.0.0.1 is stopped mid-stream and restarted on the same port;
the ReconnectingSource reconnects and continues. Needs /usr/bin/python3 with gi + GstRtspServer (Debian:
gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly).
"""
from __future__ import annotations

import random
import time

import pytest

pytest.importorskip("av")

from gmg_deploy.video.reconnect import Backoff, LiveFrame, ReconnectEvent, ReconnectingSource
from gmg_deploy.video.source import FrameSource
from live_helpers import RtspServer, has_gst_rtsp



pytestmark = pytest.mark.skipif(not has_gst_rtsp(), reason="GStreamer RTSP server not installed "
                                "(apt-get install gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi)")


@pytest.fixture
def servers():
    started: list[RtspServer] = []

    def start(port: int = 0) -> RtspServer:
        started.append(RtspServer(port))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def test_pyav_reads_the_rtsp_server(servers):
    srv = servers()
    src = FrameSource(srv.url, connect_timeout=5)
    try:
        assert src.kind == "url" and src.is_live and src.size == (64, 48)
        n = 0
        for f in src:
            assert f.image.shape == (48, 64, 3)
            n += 1
            if n == 10:
                break
    finally:
        src.close()
    assert n == 10


def test_server_stopped_and_restarted_on_the_same_port_reconnects(servers):
    srv = servers()
    url = srv.url
    lines: list[str] = []

    def log(line: str) -> None:  # timestamped, shown if the test fails
        lines.append(line)
        print(f"{time.monotonic():.2f} {line}", flush=True)

    rs = ReconnectingSource(lambda: FrameSource(url, connect_timeout=3), stall_timeout=3,
                            backoff=Backoff(initial=0.05, maximum=0.5, rng=random.Random(1)),
                            max_reconnects=10, log=log)
    before = after = 0
    events = []
    restarted = False
    deadline = time.monotonic() + 90
    for item in rs:
        assert time.monotonic() < deadline, lines
        if isinstance(item, ReconnectEvent):
            events.append(item)
            continue
        assert isinstance(item, LiveFrame)
        if item.epoch == 0:
            before += 1
        else:
            after += 1
        if before == 20 and not restarted:
            assert srv.stop() == 0  # SIGTERM: the server exits 0 (mid-stream for us)
            srv = servers(srv.port)  # again on the same port; READY means it serves
            assert srv.url == url
            restarted = True
        if after == 20:
            rs.stop()
    assert restarted and before >= 20 and after == 20
    assert len(events) == 1 and events[0].epoch == 1 and rs.reconnects == 1
    assert events[0].reason.startswith(("end of stream", "decode error", "stall"))
    assert any("reconnected (#1)" in ln for ln in lines), lines
