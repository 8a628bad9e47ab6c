"""Live: gmg-serve (real tritonserver, python flavour) serving streams to Forecasters over gRPC, vs local runs."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import write_lightning_ckpt
from gmg_deploy.serve.server import free_local_ports

HAVE_SERVE = importlib.util.find_spec("tritonclient") is not None and importlib.util.find_spec("pytriton") is not None
pytestmark = pytest.mark.skipif(not HAVE_SERVE, reason="needs tritonclient + nvidia-pytriton (pip install gmg-deploy[serve])")
TOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_exited(pids: set[int], what: str, timeout_s: float = 20.0) -> None:
    """Every process in ``pids`` is gone within ``timeout_s`` (bounded wait), else fail with ``what``."""
    t_end = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < t_end:
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)], what


class Served:
    """``gmg-serve REPO`` in a subprocess on free ports; waits (bounded) for its 'serving' line."""

    def __init__(self, repo: Path, timeout_s: float = 120.0, extra: tuple[str, ...] = ()) -> None:
        self.grpc, self.http, self.metrics = free_local_ports(3)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gmg_deploy.cli.serve_cmd", str(repo), "--grpc-port", str(self.grpc),
             "--http-port", str(self.http), "--metrics-port", str(self.metrics), "--timeout", str(timeout_s), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if line.startswith("serving"):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout_s + 10) or self.proc.poll() is not None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            raise AssertionError(f"gmg-serve did not start: {self.lines} {err[-500:]}")
        self.url = f"triton://127.0.0.1:{self.grpc}"

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 40.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        for pid in descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory):
    from gmg_deploy.cli.triton_cmd import main as triton
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("live")
    model = load_checkpoint(write_lightning_ckpt("gmg_tiny", d / "g.ckpt"))
    fc = d / "fc.onnx"
    onnx.save(build_proto(model, graph="forecast"), fc)
    r = CliRunner().invoke(triton, ["--model", str(fc), "-o", str(d / "repo"), "--flavour", "python",
                                    "--max-batch", "8", "--idle-timeout", "30"])
    assert r.exit_code == 0, r.output
    return fc, d / "repo"


def _stream(remote, local, frames: np.ndarray, errs: list, reset_at: int | None = None, slot: int = 0) -> None:
    for t in range(frames.shape[1]):
        if reset_at is not None and t == reset_at:
            remote.reset([slot])
            local.reset([slot])
        a, b = remote.observe(frames[:, t]), local.observe(frames[:, t])
        errs.append(float(np.abs(a - b).max()))
        for k in (remote.backend.horizon, 2):
            errs.append(float(np.abs(remote.forecast(k) - local.forecast(k)).max()))


def test_live_streams_match_local(served_repo):
    from gmg_deploy.runtime.forecaster import Forecaster

    fc_path, repo = served_repo
    server = Served(repo)
    try:
        url = f"{server.url}/gmg"
        rng = np.random.default_rng(11)
        main_frames = rng.random((4, 6, 1, 16, 16), dtype=np.float32)
        side_frames = rng.random((2, 6, 1, 16, 16), dtype=np.float32)
        side_errs: list = []
        failure: list = []

        def side() -> None:
            try:
                with Forecaster.open(url, batch_size=2) as r, Forecaster.open(fc_path, batch_size=2, threads=1) as loc:
                    _stream(r, loc, side_frames, side_errs)
            except BaseException as e:  # reported by the main thread
                failure.append(e)

        th = threading.Thread(target=side)
        th.start()
        errs: list = []
        with Forecaster.open(url, batch_size=4) as remote:
            assert remote.backend_name == "triton" and remote.backend.horizon == 4
            local = Forecaster.open(fc_path, batch_size=4, threads=1)
            untouched = Forecaster.open(fc_path, batch_size=4, threads=1)  # same frames, never reset
            for t in range(main_frames.shape[1]):
                if t == 3:
                    remote.reset([1])
                    local.reset([1])
                a = remote.observe(main_frames[:, t])
                errs.append(float(np.abs(a - local.observe(main_frames[:, t])).max()))
                errs.append(float(np.abs(remote.forecast(4) - local.forecast(4)).max()))
                u = untouched.observe(main_frames[:, t])
                if t >= 3:  # the reset slot started over; the others are unchanged
                    assert np.abs(a[[0, 2, 3]] - u[[0, 2, 3]]).max() < TOL
                    assert np.abs(a[1] - u[1]).max() > 1e-3
            from gmg_deploy.errors import GMGError

            with pytest.raises(GMGError, match="at most K=4"):
                remote.forecast(5)
            with pytest.raises(GMGError, match="state lives in the server"):
                remote.snapshot()
        th.join(120)
        assert not th.is_alive() and not failure, failure
        assert len(errs) == 12 and max(errs) < TOL
        assert len(side_errs) == 18 and max(side_errs) < TOL
    finally:
        kids = descendants(server.proc.pid)
        assert kids, "tritonserver should run below gmg-serve"
        try:
            assert server.stop(signal.SIGINT) == 130
        finally:
            server.kill()
        assert_exited(kids, "processes left after gmg-serve stopped")


def test_infer_cli_over_triton(served_repo, tmp_path):
    from gmg_deploy.cli.infer_cmd import main as infer

    fc_path, repo = served_repo
    rng = np.random.default_rng(12)
    data = tmp_path / "seq.npy"
    np.save(data, rng.random((3, 8, 1, 16, 16), dtype=np.float32))
    server = Served(repo)
    try:
        r = CliRunner().invoke(infer, ["--engine", f"{server.url}/gmg", "--input", str(data), "--out",
                                       str(tmp_path / "remote.npy"), "--batch-size", "2", "--metrics"])
        assert r.exit_code == 0, r.output
        assert "with triton on cpu" in r.output
    finally:
        try:
            assert server.stop(signal.SIGTERM) == 0
        finally:
            server.kill()
    r = CliRunner().invoke(infer, ["--engine", str(fc_path), "--input", str(data), "--out",
                                   str(tmp_path / "local.npy"), "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert np.abs(np.load(tmp_path / "remote.npy") - np.load(tmp_path / "local.npy")).max() < TOL
    r = CliRunner().invoke(infer, ["--engine", f"{server.url}/gmg", "--input", str(data), "--out",
                                   str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "gmg-serve" in r.output  # server gone: one line


def test_two_quick_ctrl_c_still_stop_the_whole_server(served_repo):
    """A second SIGINT arriving while gmg-serve shuts down must not leave tritonserver or its stubs running."""
    _, repo = served_repo
    server = Served(repo)
    kids = descendants(server.proc.pid)
    try:
        assert kids, "tritonserver should run below gmg-serve"
        server.proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # the second arrives while gmg-serve waits for the server to stop
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(60) == 130
    finally:
        server.kill()
    assert_exited(kids, "processes left after two Ctrl-C")
