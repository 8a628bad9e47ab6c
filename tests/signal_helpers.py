"""Test helpers for signal tests: wait for what a process printed, or for its signal handlers - never sleep."""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


class Output:
    """Collects a child's stdout and stderr while waiting for lines (non-blocking reads, bounded waits)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.text = {"stdout": "", "stderr": ""}
        self._sel = selectors.DefaultSelector()
        for name in ("stdout", "stderr"):
            stream = getattr(proc, name)
            if stream is not None:
                os.set_blocking(stream.fileno(), False)
                self._sel.register(stream.fileno(), selectors.EVENT_READ, name)

    def _pump(self, timeout: float) -> bool:
        got = False
        for key, _ in self._sel.select(timeout):
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self._sel.unregister(key.fd)
                continue
            self.text[key.data] += chunk.decode(errors="replace")
            got = True
        return got

    def wait_for(self, pred: Callable[[dict[str, str]], bool], timeout: float = 120.0) -> bool:
        """Read until ``pred(texts)`` holds; False if the process ended (or the deadline passed) first."""
        deadline = time.monotonic() + timeout
        while not pred(self.text):
            if not self._sel.get_map():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._pump(min(left, 0.5))
        return True

    def finish(self, timeout: float = 300.0) -> tuple[int, str, str]:
        """Read everything to EOF and reap the process: (returncode, stdout, stderr)."""
        deadline = time.monotonic() + timeout
        while self._sel.get_map() and time.monotonic() < deadline:
            self._pump(0.5)
        rc = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return rc, self.text["stdout"], self.text["stderr"]


def caught_signals(pid: int) -> set[int]:
    """The signals a process has handlers for (``SigCgt`` in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return set()
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
    return {s for s in range(1, 65) if mask >> (s - 1) & 1}


def wait_for_handlers(proc: subprocess.Popen, sigs=(signal.SIGINT, signal.SIGTERM), timeout: float = 60.0) -> bool:
    """Poll until the process handles every one of ``sigs`` (its own handlers are installed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if set(sigs) <= caught_signals(proc.pid):
            return True
        time.sleep(0.002)  # a poll of a condition, not a timing assumption
    return False
