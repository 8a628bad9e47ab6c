"""Find and run ``tritonserver`` on a model repository: from PATH or the ``nvidia-pytriton`` wheel's bundled copy.

The bundled server (``pytriton/tritonserver/bin/tritonserver``) needs the wheel's ``nvidia_pytriton.libs`` on
``LD_LIBRARY_PATH`` and a backend folder whose ``python/`` holds the Python-backend stub built for this
interpreter's version; :class:`TritonServer` prepares that folder in a temporary directory, starts the server
in its own process group, waits until it is ready and stops it (and its children: backend stubs) cleanly.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gmg_deploy.errors import ServeError

INSTALL_HINT = "pip install gmg-deploy[serve]"


def free_local_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now (bound together, then released) for a local server."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class ServerBinary:
    """The ``tritonserver`` to run, its extra library folder and backend folder (None: the server's own)."""

    path: Path
    libs: Path | None = None
    bundle: Path | None = None  # pytriton/tritonserver folder (backends, stubs)


def find_server() -> ServerBinary:
    """``tritonserver`` on PATH, else the one bundled in ``nvidia-pytriton``; one-line error naming the extra."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return ServerBinary(Path(on_path))
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        binary = root / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return ServerBinary(binary, root.parent / "nvidia_pytriton.libs", root / "tritonserver")
    raise ServeError(f"no tritonserver found (not on PATH, no nvidia-pytriton bundle); {INSTALL_HINT} "
                     "or use an NVIDIA Triton container")


def _prepare_backends(server: ServerBinary, workdir: Path) -> Path | None:
    """A backend folder for the bundled server: python backend + the stub for this Python version."""
    if server.bundle is None:
        return None
    src = server.bundle / "backends"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = server.bundle / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServeError(f"the nvidia-pytriton bundle has no Python-backend stub for Python {version}; "
                         "use a supported Python or a tritonserver on PATH")
    dst = workdir / "backends"
    for d in src.iterdir():
        if d.is_dir() and not d.name.startswith("__"):
            (dst / d.name).mkdir(parents=True)
            for f in d.iterdir():
                if f.is_file():
                    (dst / d.name / f.name).symlink_to(f)
    shutil.copy2(stub, dst / "python" / "triton_python_backend_stub")
    return dst


def server_env(server: ServerBinary) -> dict[str, str]:
    """The environment for the server: its libraries, and this interpreter's libpython and packages for the
    Python-backend stub (the bundled stub would otherwise embed the system's Python without our packages)."""
    import site
    import sysconfig

    env = dict(os.environ)
    libs = [str(server.libs)] if server.libs is not None else []
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and sysconfig.get_config_var("LIBDIR"):
        libs.insert(0, str(sysconfig.get_config_var("LIBDIR")))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    paths = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []) + paths)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def server_command(server: ServerBinary, repo: Path, *, grpc_port: int, http_port: int, metrics_port: int,
                   backends: Path | None, log_verbose: int = 0, host: str = "127.0.0.1") -> list[str]:
    cmd = [str(server.path), f"--model-repository={repo}", f"--grpc-port={grpc_port}",
           f"--http-port={http_port}", f"--metrics-port={metrics_port}", "--allow-metrics=true",
           "--allow-gpu-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
           f"--log-verbose={log_verbose}", f"--http-address={host}", f"--grpc-address={host}",
           f"--metrics-address={host}"]
    if backends is not None:
        cmd.append(f"--backend-directory={backends}")
    return cmd


class TritonServer:
    """``with TritonServer(repo, ...) as s:`` runs tritonserver until the block ends (or :meth:`stop`)."""

    def __init__(self, repo: str | Path, *, grpc_port: int = 8001, http_port: int = 8000, metrics_port: int = 8002,
                 log_file: str | Path | None = None, host: str = "127.0.0.1") -> None:
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise ServeError(f"model repository {self.repo} is not a folder; write one with gmg-triton")
        if not any((d / "config.pbtxt").is_file() for d in self.repo.iterdir() if d.is_dir()):
            raise ServeError(f"model repository {self.repo} holds no NAME/config.pbtxt; write one with gmg-triton")
        self.ports = {"grpc": int(grpc_port), "http": int(http_port), "metrics": int(metrics_port)}
        self.host = host
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self._workdir: Path | None = None

    @property
    def urls(self) -> dict[str, str]:
        h = self.host
        return {"grpc": f"{h}:{self.ports['grpc']}", "http": f"http://{h}:{self.ports['http']}",
                "metrics": f"http://{h}:{self.ports['metrics']}/metrics"}

    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        server = find_server()
        self._workdir = Path(tempfile.mkdtemp(prefix="gmg-serve-"))
        backends = _prepare_backends(server, self._workdir)
        env = server_env(server)
        cmd = server_command(server, self.repo, grpc_port=self.ports["grpc"], http_port=self.ports["http"],
                             metrics_port=self.ports["metrics"], backends=backends, host=self.host)
        log = open(self.log_file, "ab") if self.log_file else open(self._workdir / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, n: int = 15) -> str:
        p = Path(self.log_file) if self.log_file else (self._workdir / "server.log" if self._workdir else None)
        try:
            return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p else ""
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        url = self.urls["http"] + "/v2/health/ready"
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.proc is not None and self.proc.poll() is not None:
                last = self.log_tail(5).replace("\n", " | ")
                raise ServeError(f"tritonserver exited with status {self.proc.returncode} while starting; log: {last[-400:]}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ServeError(f"tritonserver was not ready within {timeout_s:.0f} s; see its log")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``timeout_s``."""
        p = self.proc
        if p is not None:
            pgid = p.pid
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGTERM)
                try:
                    p.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(OSError):  # children (python backend stubs) share the group
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                p.wait(5)
            self.proc = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
