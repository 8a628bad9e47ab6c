"""Live output: RtspPusher pushes panels to a real FFmpeg RTSP listener on 127.0.0.1; what arrives is decoded."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

av = pytest.importorskip("av")

from gmg_deploy.errors import InputError
from gmg_deploy.io import OutputError
from gmg_deploy.video.live_out import RtspPusher, is_live_output
from live_helpers import FFMPEG, FFmpegListener, free_port, wait_for

DEADLINE_S = 30.0
W, H = 96, 64


def _frame(i: int) -> np.ndarray:
    f = np.full((H, W, 3), 20 + 5 * i, np.uint8)
    f[:, : (i % W)] = 240
    return f


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install -y ffmpeg)")
def test_push_to_an_ffmpeg_listener_and_decode_what_arrived(tmp_path):
    out = tmp_path / "got.mkv"
    n = 30
    with FFmpegListener(out, DEADLINE_S) as ff:
        with RtspPusher(ff.url, 15, (W, H)) as p:
            for i in range(n):
                p.publish(_frame(i))
                wait_for(lambda: p.frames == i + 1 or p.failed, "the pusher to send the panel")  # no drops here
            assert p.dropped == 0
        ff.finished()
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(got) == n and got[0].shape == (H, W, 3)
    for i, g in enumerate(got):
        assert np.abs(g.astype(np.int16) - _frame(i).astype(np.int16)).mean() < 4, i


def test_no_server_is_one_output_error():
    port = free_port()
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
    with FFmpegListener(tmp_path / "x.mkv", DEADLINE_S) as ff:
        url = ff.url
        p = RtspPusher(url, 15, (W, H), timeout=5)
        p.publish(_frame(0))
        wait_for(lambda: p.frames == 1, "the first panel to be sent")
        ff.kill()
        i = 1
        deadline = time.monotonic() + DEADLINE_S
        with pytest.raises(OutputError, match=rf"pushing to {url} failed after \d+ frame\(s\)"):
            while time.monotonic() < deadline:  # the loop goes on until the push reports the loss
                p.publish(_frame(i % 40))
                i += 1
                threading.Event().wait(0.01)
        with pytest.raises(OutputError):
            p.close()
