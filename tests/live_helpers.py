"""Shared by the live-video tests: free ports, readiness waits, an FFmpeg RTSP listener, headless Chromium (CDP).

Every wait has a deadline and polls a condition (never a bare sleep); every process started here is stopped by
the context manager or ``close()`` that started it.
"""
from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

FFMPEG = shutil.which("ffmpeg")
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PY = "/usr/bin/python3"  # Debian's python3-gi (GStreamer's RTSP server) lives there
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:port? (read from /proc: no probe connection, which the
    one-shot FFmpeg listener would take for the stream)"""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return any(ln.split()[1] == want and ln.split()[3] == "0A" for ln in fh.readlines()[1:])


def wait_for(predicate: Callable[[], Any], what: str, deadline_s: float = 30.0, poll_s: float = 0.02) -> Any:
    """``predicate()``'s first true value, polled until ``deadline_s`` (then the test fails naming ``what``)."""
    deadline = time.monotonic() + deadline_s
    while True:
        v = predicate()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(poll_s)  # a readiness poll with a deadline


def http_get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


class FFmpegListener:
    """A one-shot FFmpeg RTSP listener on a free 127.0.0.1 port saving what it receives to ``out`` (stream
    copy). Entering waits until it listens; :meth:`finished` waits for it to end by itself with status 0 (the
    stream closed); leaving kills it if it still runs."""

    def __init__(self, out: Path, deadline_s: float = 30.0) -> None:
        assert FFMPEG is not None
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.deadline_s = deadline_s
        self.proc = subprocess.Popen([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-listen_timeout",
                                      str(int(deadline_s)), "-i", self.url, "-c", "copy", "-y", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> "FFmpegListener":
        wait_for(lambda: listening(self.port) or self.proc.poll() is not None, "ffmpeg to listen", self.deadline_s)
        assert self.proc.poll() is None, self.proc.stderr.read()
        return self

    def finished(self) -> None:
        assert self.proc.wait(self.deadline_s) == 0, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __exit__(self, *exc: Any) -> None:
        self.kill()
        self.proc.stderr.close()


class CDP:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe`` (fds 3/4, NUL-separated JSON)."""

    def __init__(self, user_dir: str, deadline_s: float = 60.0) -> None:
        assert CHROMIUM is not None
        self.deadline_s = deadline_s
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # above 9 (bash redirects those), so "3<&a 4>&b" cannot overwrite one end with the other
        to_child_r, from_child_w = (self._high(fd) for fd in (to_child_r, from_child_w))

        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                f"--user-data-dir={user_dir}", "--window-size=800,400", "about:blank"]
        # the pipe ends become the child's fds 3 (commands in) and 4 (answers out)
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$@" 3<&{to_child_r} 4>&{from_child_w}', "bash", *args],
            pass_fds=(to_child_r, from_child_w), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0

    @staticmethod
    def _high(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.deadline_s
        while True:
            while b"\0" not in self._buf:
                assert time.monotonic() < deadline, f"no DevTools answer to {method}"
                chunk = os.read(self._r, 1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(15)
        os.close(self._w)
        os.close(self._r)


class LivePage:
    """The live view's page opened in headless Chromium (:class:`CDP`): how many panels it has shown, screenshots,
    values of expressions evaluated in it."""

    def __init__(self, cdp: CDP, url: str) -> None:
        self.cdp = cdp
        target = cdp.call("Target.createTarget", url=url)["targetId"]
        self.session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def value(self, expression: str) -> Any:
        return self.cdp.call("Runtime.evaluate", self.session, returnByValue=True,
                             expression=expression)["result"].get("value")

    def seen(self) -> int:
        """Panels the page has shown (its ``seen`` counter; 0 before the script ran)."""
        return int(self.value("typeof seen === 'undefined' ? 0 : seen") or 0)

    def shot(self) -> tuple[int, Any]:
        """``(seen, RGB screenshot as a NumPy array)``."""
        import numpy as np
        from PIL import Image

        s = self.seen()
        png = base64.b64decode(self.cdp.call("Page.captureScreenshot", self.session, format="png")["data"])
        return s, np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def panel_rect(self) -> list[float]:
        """``[x, y, width, height]`` of the page's panel image."""
        return self.value("(() => {const r = document.getElementById('panel').getBoundingClientRect();"
                          " return [r.x, r.y, r.width, r.height];})()")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> ``{"name{labels}": value}`` (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def has_gst_rtsp() -> bool:
    try:
        r = subprocess.run([SYSTEM_PY, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


class RtspServer:
    """``tests/rtsp_server.py`` as a child process; ``port`` once it printed READY."""

    def __init__(self, port: int = 0, fps: int = 30, deadline_s: float = 30.0) -> None:
        self.deadline_s = deadline_s
        self.proc = subprocess.Popen([SYSTEM_PY, str(RTSP_SERVER), "--port", str(port), "--fps", str(fps)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + deadline_s
        line = ""
        try:
            while not line.endswith("\n"):
                left = deadline - time.monotonic()
                assert left > 0 and sel.select(left), "the RTSP server printed no READY line"
                ch = os.read(self.proc.stdout.fileno(), 256).decode()  # unbuffered: select() sees it all
                assert ch, f"the RTSP server ended before READY ({line!r})"
                line += ch
        except BaseException:
            self.stop()
            raise
        finally:
            sel.close()
        assert line.startswith("READY "), line
        self.port = int(line.split()[1])
        self.url = f"rtsp://127.0.0.1:{self.port}/x"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.deadline_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(self.deadline_s)
        self.proc.stdout.close()
        return self.proc.returncode
