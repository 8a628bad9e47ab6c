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

from gmg_deploy.errors import InputError, ServeError

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
                   backends: Path | None, log_verbose: int = 0, host: str = "127.0.0.1",
                   shm_prefix: str | None = None) -> list[str]:
    cmd = [str(server.path), f"--model-repository={repo}", f"--grpc-port={grpc_port}",
           f"--http-port={http_port}", f"--metrics-port={metrics_port}", "--allow-metrics=true",
           "--allow-gpu-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
           f"--log-verbose={log_verbose}", f"--http-address={host}", f"--grpc-address={host}",
           f"--metrics-address={host}"]
    if backends is not None:
        cmd.append(f"--backend-directory={backends}")
    if shm_prefix:  # the Python backend's shared-memory regions get a name this run can clean up
        cmd.append(f"--backend-config=python,shm-region-prefix-name={shm_prefix}")
    return cmd


def shm_prefix_for(workdir: Path) -> str:
    """The prefix of the Python backend's ``/dev/shm`` regions of the server run in ``workdir``."""
    return f"{workdir.name}-shm-"


def remove_shm_regions(prefix: str) -> None:
    """Remove ``/dev/shm/PREFIX*`` (a server that exits while starting leaves its regions behind)."""
    from gmg_deploy.serve.janitor import remove_shm

    remove_shm(prefix)


_PLATFORM_BACKEND = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
                     "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow"}


def repository_backends(repo: Path) -> dict[str, str]:
    """``{model name: backend}`` of every ``NAME/config.pbtxt`` in ``repo``; a config Triton's schema rejects is
    one error naming the file (checked here, before a server is started)."""
    import re

    from gmg_deploy.serve.triton_config import parse_config_text

    out: dict[str, str] = {}
    for d in sorted(repo.iterdir()):
        cfg = d / "config.pbtxt"
        if not d.is_dir() or not cfg.is_file():
            continue
        try:
            text = cfg.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ServeError(f"cannot read {cfg} ({getattr(e, 'strerror', None) or e}); rewrite it with gmg-triton") from None
        try:
            msg = parse_config_text(text, str(cfg))
        except InputError as e:
            raise ServeError(f"{e}; rewrite it with gmg-triton or remove the folder {d.name}") from None
        if msg is not None:
            backend, platform = msg.backend, msg.platform
        else:  # no tritonclient: the two fields by pattern
            b = re.search(r'^\s*backend\s*:\s*"([^"]*)"', text, re.M)
            p = re.search(r'^\s*platform\s*:\s*"([^"]*)"', text, re.M)
            backend, platform = (b.group(1) if b else ""), (p.group(1) if p else "")
        out[d.name] = backend or _PLATFORM_BACKEND.get(platform, platform)
    return out


def backend_folder(server: ServerBinary) -> Path | None:
    """The folder holding the server's backends (None: unknown, not checked)."""
    if server.bundle is not None:
        return server.bundle / "backends"
    guess = server.path.resolve().parent.parent / "backends"  # /opt/tritonserver/{bin,backends}
    return guess if guess.is_dir() else None


def check_backends(server: ServerBinary, models: dict[str, str], repo: Path) -> None:
    """Every model's backend is one the server has (the nvidia-pytriton bundle has only ``python``)."""
    folder = backend_folder(server)
    if folder is None:
        return
    have = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("_"))
    for name, backend in models.items():
        if backend and backend not in have:
            fix = ("write it with gmg-triton --flavour python (ONNX Runtime inside the Python backend)"
                   if backend in ("onnxruntime", "tensorrt") else "rewrite it for a backend this server has")
            raise ServeError(f"model {name!r} in {repo} needs Triton's {backend!r} backend, which {server.path} does "
                             f"not have (it has: {', '.join(have) or 'none'}); {fix}, or serve the repository with a "
                             f"Triton container that has the {backend!r} backend")


#: Known causes in a tritonserver log: (pattern, what to say with its groups); the first match wins.
_LOG_CAUSES = (
    (r"Socket '([^']+)' already in use",
     "{0} is already in use (another server?); pick free ports with --grpc-port/--http-port/--metrics-port"),
    (r"failed to read text proto from (\S+)",
     "{0} is not a valid model config (text protobuf); rewrite it with gmg-triton"),
    (r"unable to find backend library for backend '([^']+)'",
     ("this tritonserver has no {0!r} backend; write the model with gmg-triton --flavour python, or use a Triton "
      "container with that backend")),
    (r"failed to load '([^']+)' version \d+: ([^\n]+)", "model {0!r} failed to load: {1}"),
)

#: E-level lines a CPU-only server always logs: not a cause.
_LOG_NOISE = ("CudaDriverHelper has not been initialized", "Unable to get GPU", "DCGM", "cudaGetDeviceCount")


def log_cause(text: str) -> str:
    """The cause of a failed start in a tritonserver log: a known pattern, else the first error (E) line's
    message, else the log's last line."""
    import re

    for pattern, say in _LOG_CAUSES:
        m = re.search(pattern, text)
        if m:
            return say.format(*(" ".join(g.split("\\n")[0].split())[:200] for g in m.groups()))
    for line in text.splitlines():
        m = re.match(r"E\d{4} [\d:.]+\s+\d+\s+\S+\] (.+)", line.strip())
        if m and not any(n in m.group(1) for n in _LOG_NOISE):
            return " ".join(m.group(1).strip('"').split())[:300]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = " ".join(lines[-1].split())[-300:] if lines else "its log is empty"
    return f"{last} (the whole log: gmg-serve --log FILE)"


def _start_janitor(pid: int, workdir: Path, grace_s: float = 30.0) -> subprocess.Popen:
    """The watchdog that stops the server group and removes ``workdir`` once this process is gone."""
    from gmg_deploy.serve import janitor

    cmd = [sys.executable, "-I", janitor.__file__, str(pid), janitor.start_time(pid), str(workdir), str(grace_s),
           shm_prefix_for(workdir)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


class TritonServer:
    """``with TritonServer(repo, ...) as s:`` runs tritonserver until the block ends (or :meth:`stop`)."""

    def __init__(self, repo: str | Path, *, grpc_port: int = 8001, http_port: int = 8000, metrics_port: int = 8002,
                 log_file: str | Path | None = None, host: str = "127.0.0.1") -> None:
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise ServeError(f"model repository {self.repo} is not a folder; write one with gmg-triton")
        self.models = repository_backends(self.repo)
        if not self.models:
            raise ServeError(f"model repository {self.repo} holds no NAME/config.pbtxt; write one with gmg-triton")
        self.ports = {"grpc": int(grpc_port), "http": int(http_port), "metrics": int(metrics_port)}
        self.host = host
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._janitor: subprocess.Popen | None = None
        self._log_offset = 0

    @property
    def urls(self) -> dict[str, str]:
        h = self.host
        return {"grpc": f"{h}:{self.ports['grpc']}", "http": f"http://{h}:{self.ports['http']}",
                "metrics": f"http://{h}:{self.ports['metrics']}/metrics"}

    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        """Start tritonserver (after checking it has every model's backend) and wait until it is ready.

        The server runs in its own process group; a janitor process (:mod:`.janitor`) watches this process
        and, should it die without :meth:`stop` (``kill -9`` included), stops that group and removes the
        temporary work folder (backends, log)."""
        server = find_server()
        check_backends(server, self.models, self.repo)
        self._workdir = Path(tempfile.mkdtemp(prefix="gmg-serve-"))
        try:
            backends = _prepare_backends(server, self._workdir)
            env = server_env(server)
            cmd = server_command(server, self.repo, grpc_port=self.ports["grpc"], http_port=self.ports["http"],
                                 metrics_port=self.ports["metrics"], backends=backends, host=self.host,
                                 shm_prefix=shm_prefix_for(self._workdir))
            try:
                log = open(self.log_file, "ab") if self.log_file else open(self._workdir / "server.log", "wb")
            except OSError as e:
                raise ServeError(f"cannot open the server log {self.log_path()} ({e.strerror or e}); give a "
                                 "writable --log file") from None
            self._log_offset = log.seek(0, os.SEEK_END)
            with log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True)
            self._janitor = _start_janitor(self.proc.pid, self._workdir)
            self.wait_ready(timeout_s)
        except BaseException as e:
            self.stop()
            if isinstance(e, OSError):
                raise ServeError(f"cannot start tritonserver ({e.strerror or e})") from None
            raise
        return self

    def log_path(self) -> Path | None:
        return Path(self.log_file) if self.log_file else (self._workdir / "server.log" if self._workdir else None)

    def log_tail(self, n: int = 15) -> str:
        p = self.log_path()
        try:
            return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p else ""
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        url = self.urls["http"] + "/v2/health/ready"
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServeError(f"tritonserver exited with status {self.proc.returncode} while starting: "
                                 f"{self.failure_cause()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ServeError(f"tritonserver was not ready within {timeout_s:.0f} s (gmg-serve --timeout): "
                         f"{self.failure_cause()}")

    def failure_cause(self) -> str:
        """Why the server failed, from its log (:func:`log_cause`)."""
        p = self.log_path()
        try:
            with open(p, "rb") as fh:  # an appended --log: only this run's part, at most its first 4 MB
                fh.seek(self._log_offset)
                text = fh.read(4 << 20).decode(errors="replace")
        except (OSError, TypeError):
            text = ""
        return log_cause(text)

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
            remove_shm_regions(shm_prefix_for(self._workdir))
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        j, self._janitor = self._janitor, None
        if j is not None:  # EOF on its stdin: it finds the server gone and exits
            with contextlib.suppress(OSError):
                j.stdin.close()
            try:
                j.wait(10)
            except subprocess.TimeoutExpired:
                j.kill()
                j.wait(5)

    def __enter__(self) -> "TritonServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
