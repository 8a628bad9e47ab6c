"""gmg-infer's live options end to end (subprocess, real servers on 127.0.0.1): an RTSP source stopped and
restarted reconnects; --serve shows the panel in headless Chromium and /metrics agrees with the report;
--video-out rtsp:// pushes the panels to an FFmpeg listener. Synchronised on printed lines and readiness."""
from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

av = pytest.importorskip("av")

from gmg_deploy.video.panel import column_labels, panel_geometry
from live_helpers import CDP, CHROMIUM, FFMPEG, FFmpegListener, LivePage, http_get, parse_metrics, wait_for
from video_helpers import demo_frames, encode_clip, read_clip

DEADLINE_S = 90.0
INFER = [sys.executable, "-m", "gmg_deploy.cli.infer_cmd"]
_FRAMES = re.compile(r"^frames (\d+) ")


class _Run:
    """``gmg-infer`` as a child: stdout collected, stderr split into lines (on ``\\n`` and the progress
    line's ``\\r``) that :meth:`wait` reads in order; ``frames`` is the last progress count seen."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(INFER + [str(a) for a in args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.out: list[str] = []
        self.frames = 0
        self._threads = [threading.Thread(target=self._err, daemon=True),
                         threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()), daemon=True)]
        for t in self._threads:
            t.start()

    def _err(self) -> None:
        buf = ""
        for ch in iter(lambda: self.proc.stderr.read(1), ""):
            if ch in "\r\n":
                if buf:
                    self.lines.put(buf)
                buf = ""
            else:
                buf += ch
        if buf:
            self.lines.put(buf)
        self.lines.put(None)

    def wait(self, predicate, what: str) -> str:
        """The next stderr line for which ``predicate`` holds (bounded by :data:`DEADLINE_S`)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; stderr so far: {self.seen[-20:]}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"gmg-infer ended before {what}: {self.seen[-20:]}"
            self.seen.append(line)
            m = _FRAMES.match(line)
            if m:
                self.frames = int(m.group(1))
            if predicate(line):
                return line

    def finish(self, sig: int | None = None) -> tuple[int, dict, str]:
        """(exit status, the --json report, all stderr) after ``sig`` (if given) ended it."""
        if sig is not None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(DEADLINE_S)
        for t in self._threads:
            t.join(DEADLINE_S)
        while True:
            line = self.lines.get_nowait() if not self.lines.empty() else None
            if line is None:
                break
            self.seen.append(line)
        out = "".join(self.out)
        return rc, json.loads(out[out.index("{"): out.rindex("}") + 1]) if "{" in out else {}, "\n".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE_S)


@pytest.fixture
def runs():
    started: list[_Run] = []

    def start(args: list[str]) -> _Run:
        started.append(_Run(args))
        return started[-1]

    yield start
    for r in started:
        r.kill()


def _panel_size(horizon: int, with_truth: bool) -> tuple[int, int]:
    return panel_geometry((16, 16), len(column_labels(horizon, with_truth)), 1).size


# --- (a) an RTSP source stopped mid-stream and restarted on the same port -------------------------------------

def _rtsp():
    from live_helpers import RtspServer, has_gst_rtsp

    if not has_gst_rtsp():
        pytest.skip("GStreamer RTSP server not installed (apt-get install gstreamer1.0-rtsp "
                    "gir1.2-gst-rtsp-server-1.0 python3-gi)")
    return RtspServer


def test_rtsp_source_stopped_and_restarted_reconnects_and_continues(tmp_path, video_onnx_path, runs):
    RtspServer = _rtsp()
    srv = RtspServer()
    vid = tmp_path / "panel.mp4"
    try:
        run = runs(["--engine", video_onnx_path, "--input", srv.url, "--horizon", 2, "--stall-timeout", 2,
                    "--connect-timeout", 5, "--max-reconnects", 20, "--video-out", vid, "--json"])
        run.wait(lambda ln: run.frames >= 10, "10 frames before the gap")
        port = srv.port
        assert srv.stop() == 0
        run.wait(lambda ln: "source lost" in ln, "the loss to be noticed")
        before = run.frames
        srv = RtspServer(port)  # READY: it serves again, on the same port
        run.wait(lambda ln: "reconnected (#1)" in ln, "the reconnect")
        at_back = run.frames
        run.wait(lambda ln: run.frames >= at_back + 10, "10 frames after the gap")
        rc, rep, err = run.finish(signal.SIGINT)
    finally:
        srv.stop()
    assert rc == 130, err
    assert "error: interrupted" in err and "Traceback" not in err
    s = rep["streams"][0]
    assert s["reconnects"] == 1 and s["losses"] >= 1 and s["disconnected_s"] > 0, s
    assert before >= 10 and rep["frames"] >= at_back + 10 and rep["interrupted"] and rep["partial"]
    assert "1 reconnect(s)" in err and "slot reset" in err
    frames, _, size = read_clip(vid)  # the outputs kept: every panel written is in the file
    assert len(frames) == rep["video_frames"] > 0 and size == _panel_size(2, False)
    assert not list(tmp_path.glob(".*.tmp"))


# --- (b) --serve during a --realtime run on a file ------------------------------------------------------------

def test_serve_shows_the_changing_panel_and_metrics_agree_with_the_report(tmp_path, video_onnx_path, runs):
    pytest.importorskip("prometheus_client")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    clip = encode_clip(tmp_path / "long.mkv", demo_frames(1800, 16, 16, False), fps=30)  # 60 s at 30 fps
    run = runs(["--engine", video_onnx_path, "--input", clip, "--realtime", "--horizon", 2,
                "--serve", "127.0.0.1:0", "--json"])
    line = run.wait(lambda ln: "live view at" in ln, "the live view's address")
    url = re.search(r"(http://127\.0\.0\.1:\d+/)", line).group(1)
    cdp = CDP(str(tmp_path / "chromium"), 60.0)
    try:
        page = LivePage(cdp, url)
        wait_for(page.seen, "the page to show a panel", 60.0, 0.05)
        s1, a = page.shot()
        threading.Event().wait(1.0)  # two screenshots a second apart
        wait_for(lambda: page.seen() > s1 + 1, "the page to show newer panels", 60.0, 0.05)
        s2, b = page.shot()
        rect = page.panel_rect()
        m1 = parse_metrics(http_get(url + "metrics")[2].decode())
        m2 = parse_metrics(http_get(url + "metrics")[2].decode())
    finally:
        cdp.close()
    rc, rep, err = run.finish(signal.SIGINT)
    assert rc == 130 and "Traceback" not in err, err
    w, h = _panel_size(2, True)
    assert rect == [0, 0, w, h]
    assert s2 > s1 and np.abs(a[:h, :w].astype(np.int16) - b[:h, :w].astype(np.int16)).mean() > 1  # it changed
    key = f'{{stream="{clip}"}}'
    n1, n2 = m1["gmg_frames_total" + key], m2["gmg_frames_total" + key]
    # scraped during the run: counts so far, never more than the final report's
    assert 0 < n1 <= n2 <= rep["frames"]
    assert m2['gmg_latency_ms_count' + key] == n2
    assert m2["gmg_model_step_ms_count"] <= rep["steps"] and m2["gmg_model_step_ms_count"] >= n2  # 1 stream
    assert m2['gmg_dropped_frames_total' + key] <= rep["dropped"]
    assert m2['gmg_reconnects_total' + key] == 0 == rep["streams"][0]["reconnects"]
    assert m2['gmg_errors_total' + key] == 0


# --- (c) --video-out rtsp:// to an FFmpeg listener ------------------------------------------------------------

def test_video_out_rtsp_pushes_the_panels_to_an_ffmpeg_listener(tmp_path, video_onnx_path):
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (apt-get install -y ffmpeg)")
    clip = encode_clip(tmp_path / "c.mkv", demo_frames(60, 16, 16, False, seed=2), fps=30)
    got_path = tmp_path / "got.mkv"
    with FFmpegListener(got_path) as ff:
        url = ff.url
        p = subprocess.run(INFER + ["--engine", str(video_onnx_path), "--input", str(clip), "--realtime",
                                    "--horizon", "2", "--video-out", url, "--json", "--quiet"],
                           capture_output=True, text=True, timeout=DEADLINE_S * 2)
        ff.finished()
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["video_out"] == url and rep["frames"] > 0
    assert f"-> {url}" in p.stderr
    with av.open(str(got_path)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    w, h = _panel_size(2, True)
    assert len(got) == rep["video_frames"] > 0 and got[0].shape == (h, w, 3)
    assert np.ptp(np.stack(got).astype(np.int16)) > 50  # real panels (labels, digits), not a blank stream


# --- option checks -------------------------------------------------------------------------------------------

def test_which_inputs_reconnect():
    from gmg_deploy.cli.infer_video import reconnects

    assert reconnects("rtsp://127.0.0.1:1/x", None) and reconnects("/dev/video0", None)
    assert not reconnects("http://127.0.0.1:1/a.mp4", None)  # may be a finite video: only with --reconnect
    assert reconnects("http://127.0.0.1:1/a.ts", True)
    assert not reconnects("rtsp://127.0.0.1:1/x", False) and not reconnects("clip.mp4", True)


@pytest.mark.parametrize("extra, msg", [
    (["--stall-timeout", "0"], "error: --stall-timeout 0 must be a finite number of seconds > 0"),
    (["--stall-timeout", "nan"], "error: --stall-timeout nan must be a finite number of seconds > 0"),
    (["--serve", "nope"], "error: --serve nope: give HOST:PORT"),
    (["--serve", "127.0.0.1:70000"], "error: --serve 127.0.0.1:70000: give HOST:PORT"),
])
def test_bad_live_options_one_line_exit_2(tmp_path, video_onnx_path, extra, msg):
    from click.testing import CliRunner

    from gmg_deploy.cli.infer_cmd import main

    clip = encode_clip(tmp_path / "c.mkv", demo_frames(4, 16, 16, False), fps=10)
    r = CliRunner().invoke(main, ["--engine", str(video_onnx_path), "--input", str(clip), "--quiet", *extra])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1].startswith(msg), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("opt", [["--serve", "127.0.0.1:0"], ["--reconnect"], ["--max-reconnects", "3"]])
def test_live_options_refused_for_array_input(tmp_path, video_onnx_path, opt):
    from click.testing import CliRunner

    from gmg_deploy.cli.infer_cmd import main

    arr = tmp_path / "a.npy"
    np.save(arr, np.zeros((1, 10, 1, 16, 16), np.float32))
    r = CliRunner().invoke(main, ["--engine", str(video_onnx_path), "--input", str(arr), "--out",
                                  str(tmp_path / "p.npy"), *opt])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [f"error: {opt[0]} applies to video inputs (.mp4, URL, camera); "
                                             f"{arr} is not one"], r.stderr
