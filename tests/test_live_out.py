"""Live output: RtspPusher pushes panels to a real FFmpeg RTSP listener on 127.0.0.1; what arrives is decoded."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

av = pytest.importorskip("av")

from gmg_deploy.errors import InputError
from gmg_deploy.io import OutputError
from gmg_deploy.video.live_out import RtspPusher, is_live_output

FFMPEG = shutil.which("ffmpeg")
DEADLINE_S = 30.0
W, H = 96, 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:port? (read from /proc: no probe connection, which the
    one-shot FFmpeg listener would take for the stream)"""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return any(ln.split()[1] == want and ln.split()[3] == "0A" for ln in fh.readlines()[1:])


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)  # a readiness poll with a deadline


def _frame(i: int) -> np.ndarray:
    f = np.full((H, W, 3), 20 + 5 * i, np.uint8)
    f[:, : (i % W)] = 240
    return f


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install -y ffmpeg)")
def test_push_to_an_ffmpeg_listener_and_decode_what_arrived(tmp_path):
    port = _free_port()
    out = tmp_path / "got.mkv"
    url = f"rtsp://127.0.0.1:{port}/live"
    ff = subprocess.Popen([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-listen_timeout", "30",
                           "-i", url, "-c", "copy", "-y", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _listening(port) or ff.poll() is not None, "ffmpeg to listen")
        assert ff.poll() is None, ff.stderr.read()
        n = 30
        with RtspPusher(url, 15, (W, H)) as p:
            for i in range(n):
                p.publish(_frame(i))
                _wait_for(lambda: p.frames == i + 1 or p.failed, "the pusher to send the panel")  # no drops here
            assert p.dropped == 0
        assert ff.wait(DEADLINE_S) == 0, ff.stderr.read()
    finally:
        if ff.poll() is None:
            ff.kill()
            ff.wait()
        ff.stderr.close()
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(got) == n and got[0].shape == (H, W, 3)
    for i, g in enumerate(got):
        assert np.abs(g.astype(np.int16) - _frame(i).astype(np.int16)).mean() < 4, i


def test_no_server_is_one_output_error():
    port = _free_port()
    with pytest.raises(OutputError, match=rf"cannot push to rtsp://127.0.0.1:{port}/live \(.*\); is a media"):
        RtspPusher(f"rtsp://127.0.0.1:{port}/live", 15, (W, H), timeout=5)


def test_refuses_bad_arguments():
    assert is_live_output("rtsp://h/x") and not is_live_output("out.mp4")
    with pytest.raises(InputError, match="rtsp://"):
        RtspPusher("out.mp4", 15, (W, H))
    with pytest.raises(InputError, match="frame rate"):
        RtspPusher("rtsp://127.0.0.1:9/x", 0, (W, H))


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install -y ffmpeg)")
def test_the_server_going_away_is_one_output_error_on_the_next_publish(tmp_path):
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    ff = subprocess.Popen([FFMPEG, "-nostdin", "-loglevel", "quiet", "-listen_timeout", "30", "-i", url,
                           "-c", "copy", "-y", str(tmp_path / "x.mkv")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _listening(port) or ff.poll() is not None, "ffmpeg to listen")
        p = RtspPusher(url, 15, (W, H), timeout=5)
        p.publish(_frame(0))
        _wait_for(lambda: p.frames == 1, "the first panel to be sent")
        ff.kill()
        ff.wait()
        i = 1
        deadline = time.monotonic() + DEADLINE_S
        with pytest.raises(OutputError, match=rf"pushing to {url} failed after \d+ frame\(s\)"):
            while time.monotonic() < deadline:  # the loop goes on until the push reports the loss
                p.publish(_frame(i % 40))
                i += 1
                threading.Event().wait(0.01)
        with pytest.raises(OutputError):
            p.close()
    finally:
        if ff.poll() is None:
            ff.kill()
            ff.wait()
