"""Issue 17 hardening of the Triton path: gmg-triton refusals and writes, triton:// URLs, client timeouts,
gmg-serve start-up errors, the Python-backend model's idle eviction, and no server outliving gmg-serve."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import write_lightning_ckpt
from gmg_deploy.cli.triton_cmd import main as triton

pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (pip install gmg-deploy[serve])")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fc_graph(tmp_path_factory) -> Path:
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("hard")
    model = load_checkpoint(write_lightning_ckpt("gmg_tiny", d / "g.ckpt"))
    onnx.save(build_proto(model, graph="forecast"), d / "fc.onnx")
    return d / "fc.onnx"


def _run(*args):
    return CliRunner().invoke(triton, [str(a) for a in args])


def _one_error(r, *needles):
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# ---------------------------------------------------------------- 13/14: option ranges
@pytest.mark.parametrize("args,needle", [
    (["--idle-timeout", "inf"], "finite"), (["--idle-timeout", "nan"], "finite"),
    (["--idle-timeout", "1e300"], "outside"), (["--idle-timeout", "1e-9"], "outside"),
    (["--idle-timeout", "-1"], "outside"),
    (["--max-batch", "99999999999999"], "int32"), (["--max-batch", "2147483648"], "int32"),
    (["--max-streams", "2147483648"], "int32"), (["--instances", "2147483648"], "int32"),
    (["--threads", str(4 * (os.cpu_count() or 1) + 1)], "CPUs"), (["--threads", "-1"], ">= 0"),
])
def test_out_of_range_options_are_refused(fc_graph, tmp_path, args, needle):
    repo = tmp_path / "repo"
    _one_error(_run("--model", fc_graph, "-o", repo, "--flavour", "python", *args), args[0], needle)
    assert not repo.exists()


def test_limits_that_fit_are_written_and_parse(fc_graph, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    r = _run("--model", fc_graph, "-o", repo, "--max-batch", "2147483647", "--idle-timeout", "1e-6",
             "--threads", str(4 * (os.cpu_count() or 1)), "--flavour", "python")
    assert r.exit_code == 0, r.output
    c = text_format.Parse((repo / "gmg" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert c.max_batch_size == 2147483647 and c.sequence_batching.max_sequence_idle_microseconds == 1


def test_config_text_is_parsed_before_publishing(fc_graph, tmp_path, monkeypatch):
    """A config.pbtxt that Triton's schema rejects is never published (here: a broken text builder)."""
    import gmg_deploy.serve.triton_repo as tr

    monkeypatch.setattr(tr, "config_text", lambda *a, **k: "max_batch_size: 99999999999999\n")
    _one_error(_run("--model", fc_graph, "-o", tmp_path / "repo"), "not a valid Triton model config")
    assert not (tmp_path / "repo").exists()


# ---------------------------------------------------------------- 17: non-finite weights
def test_nan_weight_graph_is_not_packaged(fc_graph, tmp_path):
    from onnx import numpy_helper

    proto = onnx.load(str(fc_graph))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    a = numpy_helper.to_array(init).copy()
    a.flat[3] = np.nan
    init.CopyFrom(numpy_helper.from_array(a, init.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(proto, bad)
    _one_error(_run("--model", bad, "-o", tmp_path / "repo"), init.name, "NaN")
    assert not (tmp_path / "repo").exists()


# ---------------------------------------------------------------- 12: unwritable outputs
def test_output_is_a_file(fc_graph, tmp_path):
    target = tmp_path / "repo"
    target.write_text("keep me")
    _one_error(_run("--model", fc_graph, "-o", target), "is a file")
    assert target.read_text() == "keep me" and _listing(tmp_path) == ["repo"]


@contextlib.contextmanager
def _tmpfs(path: Path, *opts: str):
    """A small tmpfs mounted at ``path`` (root only: mount needs CAP_SYS_ADMIN)."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", str(path)], capture_output=True,
                       check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_read_only_folder(fc_graph, tmp_path):
    if os.geteuid() != 0:  # a plain user: permissions say no
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cm = contextlib.nullcontext(ro)
    else:  # root ignores permissions: a read-only mount
        cm = _tmpfs(tmp_path / "ro", "ro", "size=1m")
    with cm as ro:
        for target in (ro / "repo", ro):  # a new repository in it, an entry in it as the repository
            _one_error(_run("--model", fc_graph, "-o", target), "cannot write", "Read-only file system"
                       if os.geteuid() == 0 else "Permission denied")
            assert _listing(ro) == []


def test_full_disk_leaves_nothing(fc_graph, tmp_path):
    with _tmpfs(tmp_path / "small", "size=1m") as small:
        (small / "repo").mkdir()
        (small / "repo" / "other").mkdir()
        for target in (small / "new", small / "repo"):
            _one_error(_run("--model", fc_graph, "-o", target), "cannot write", "No space left", "free some space")
        assert _listing(small) == ["repo", "repo/other"]


def test_file_size_limit_leaves_nothing_and_keeps_the_old_entry(fc_graph, tmp_path):
    repo = tmp_path / "repo"
    assert _run("--model", fc_graph, "-o", repo, "--flavour", "python").exit_code == 0
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for target, extra in ((tmp_path / "new", []), (repo, ["--force"])):
        r = subprocess.run([sys.executable, "-m", "gmg_deploy.cli.triton_cmd", "--model", str(fc_graph), "-o",
                            str(target), *extra], capture_output=True, text=True, preexec_fn=limit, env=env,
                           timeout=300, check=False)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: cannot write") and "File too large" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "new").exists()
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in repo.iterdir()) == ["gmg"]


# ---------------------------------------------------------------- 16: triton:// URLs
@pytest.mark.parametrize("url", ["triton://127.0.0.1:99999/gmg", "triton://127.0.0.1:abc/gmg", "triton://[::1/gmg",
                                 "triton://127.0.0.1:0/gmg", "triton://127.0.0.1:8001/gmg?x=1"])
def test_bad_triton_urls_are_one_error(url, tmp_path):
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.errors import InputError
    from gmg_deploy.runtime.forecaster import Forecaster

    with pytest.raises(InputError, match="not a valid Triton URL"):
        Forecaster.open(url)
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((1, 4, 1, 16, 16), np.float32))
    r = CliRunner().invoke(infer, ["--engine", url, "--input", str(data), "--out", str(tmp_path / "o.npy")])
    _one_error(r, "not a valid Triton URL", "triton://HOST:PORT/NAME")


def test_ipv6_url_keeps_its_brackets():
    from gmg_deploy.runtime.triton_backend import parse_url

    assert parse_url("triton://[::1]:8001/gmg") == ("[::1]:8001", "gmg")
    assert parse_url("triton://127.0.0.1:8001/gmg") == ("127.0.0.1:8001", "gmg")


# ---------------------------------------------------------------- 10: --timeout values
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e300"])
def test_bad_timeouts_are_refused(value, tmp_path):
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.errors import InputError
    from gmg_deploy.runtime.forecaster import Forecaster

    with pytest.raises(InputError, match="timeout"):
        Forecaster.open("triton://127.0.0.1:8001/gmg", timeout=float(value))
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((1, 4, 1, 16, 16), np.float32))
    r = CliRunner().invoke(infer, ["--engine", "triton://127.0.0.1:8001/gmg", "--input", str(data),
                                   "--out", str(tmp_path / "o.npy"), "--timeout", value])
    _one_error(r, "timeout")


def test_timeout_is_for_remote_engines_only(fc_graph, tmp_path):
    from gmg_deploy.cli.infer_cmd import main as infer

    data = tmp_path / "x.npy"
    np.save(data, np.zeros((1, 4, 1, 16, 16), np.float32))
    r = CliRunner().invoke(infer, ["--engine", str(fc_graph), "--input", str(data), "--out", str(tmp_path / "o.npy"),
                                   "--timeout", "5"])
    _one_error(r, "--timeout applies to a remote engine")


# ================================================================ live: a real tritonserver (nvidia-pytriton)
HAVE_SERVER = importlib.util.find_spec("pytriton") is not None
live = pytest.mark.skipif(not HAVE_SERVER, reason="needs nvidia-pytriton (pip install gmg-deploy[serve])")


def _server_pids(served) -> tuple[int, list[int]]:
    """(tritonserver pid, every pid below gmg-serve) of a running :class:`Served`."""
    from test_triton_live import descendants

    kids = descendants(served.proc.pid)
    triton_pid = [p for p in kids if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(b"tritonserver")]
    assert len(triton_pid) == 1, kids
    return triton_pid[0], sorted(kids)


def _wait_for(cond, what: str, timeout_s: float = 60.0, every_s: float = 0.2):
    """Poll ``cond()`` until it returns something true (returned), failing with ``what`` after ``timeout_s``."""
    t_end = time.monotonic() + timeout_s
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < t_end, what
        time.sleep(every_s)


@pytest.fixture(scope="module")
def live_repo(fc_graph, tmp_path_factory) -> Path:
    """Two python-flavour entries: ``gmg`` (idle timeout 2 s) and ``gmg_short`` (Triton keeps a sequence 60 s,
    the model evicts its state after 1 s: a request Triton still accepts finds no state)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path_factory.mktemp("live") / "repo"
    for name, idle in (("gmg", "2"), ("gmg_short", "60")):
        r = _run("--model", fc_graph, "-o", repo, "--flavour", "python", "--name", name, "--idle-timeout", idle,
                 "--max-streams", "256")
        assert r.exit_code == 0, r.output
    cfg = repo / "gmg_short" / "config.pbtxt"
    c = text_format.Parse(cfg.read_text(), model_config_pb2.ModelConfig())
    c.parameters["state_idle_timeout_s"].string_value = "1"
    cfg.write_text(text_format.MessageToString(c))
    return repo


@pytest.fixture(scope="module")
def live_server(live_repo, tmp_path_factory):
    from test_triton_live import Served, assert_exited, descendants

    log = tmp_path_factory.mktemp("log") / "server.log"
    served = Served(live_repo, extra=("--log", str(log)))
    served.log = log
    kids = descendants(served.proc.pid)
    try:
        yield served
    finally:
        try:
            assert served.stop(signal.SIGTERM) == 143
        finally:
            served.kill()
        assert_exited(kids, "processes left after gmg-serve stopped")


def _request(port: int, model: str, cid: int, frame: np.ndarray, *, start: bool = False, end: bool = False):
    import tritonclient.grpc as g

    client = g.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        inp = g.InferInput("frame", list(frame.shape), "FP32")
        inp.set_data_from_numpy(frame)
        return client.infer(model, [inp], sequence_id=cid, sequence_start=start, sequence_end=end,
                            client_timeout=30).as_numpy("forecast")
    finally:
        client.close()


def _log_lines(served, model: str) -> list[str]:
    return [ln for ln in served.log.read_text(errors="replace").splitlines() if f"gmg[{model}]:" in ln]


@live
def test_sequences_without_end_are_evicted_after_the_idle_timeout(live_server):
    """Item 11: STARTs without END no longer pile up in the Python-backend model: after the idle timeout
    every one is evicted (the model logs how many, and how many stay live)."""
    n = 40
    zero = np.zeros((1, 1, 16, 16), np.float32)
    for cid in range(1, n + 1):
        _request(live_server.grpc, "gmg", cid, zero, start=True)
    fresh = iter(range(10_000, 20_000))

    def all_evicted():
        _request(live_server.grpc, "gmg", next(fresh), zero, start=True, end=True)  # a request runs the eviction
        found = [re.search(r"evicted (\d+) sequence\(s\) idle for more than 2 s; (\d+) live", ln)
                 for ln in _log_lines(live_server, "gmg")]
        found = [m for m in found if m]
        return found if sum(int(m.group(1)) for m in found) >= n and found[-1].group(2) == "0" else None

    found = _wait_for(all_evicted, "the 40 idle sequences were not evicted")
    assert sum(int(m.group(1)) for m in found) == n


@live
def test_request_on_an_evicted_sequence_starts_from_zero_and_says_so(live_server):
    rng = np.random.default_rng(3)
    frame = rng.random((1, 1, 16, 16), dtype=np.float32)
    first = _request(live_server.grpc, "gmg_short", 7, frame, start=True)
    second = _request(live_server.grpc, "gmg_short", 7, frame)  # state carried: a different forecast
    assert np.abs(second - first).max() > 1e-4
    fresh = iter(range(30_000, 40_000))

    def evicted():
        _request(live_server.grpc, "gmg_short", next(fresh), frame, start=True, end=True)
        return any("evicted" in ln for ln in _log_lines(live_server, "gmg_short"))

    _wait_for(evicted, "sequence 7 was not evicted")
    again = _request(live_server.grpc, "gmg_short", 7, frame, end=True)  # Triton still holds the sequence: no START
    assert np.abs(again - first).max() < 1e-6  # zero state, as after START
    assert any("sequence 7 has no state" in ln and "zero state" in ln for ln in _log_lines(live_server, "gmg_short"))


@live
def test_stopped_server_is_one_error_within_the_timeout(live_server, tmp_path):
    """Item 10: a SIGSTOPped server: each request gives up after --timeout with one ServeError naming the
    server and the timeout, and close() sends no END after that (it returns at once)."""
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.errors import ServeError
    from gmg_deploy.runtime.forecaster import Forecaster

    triton_pid, _ = _server_pids(live_server)
    url = f"{live_server.url}/gmg"
    addr = f"127.0.0.1:{live_server.grpc}"
    frame = np.zeros((2, 1, 16, 16), np.float32)
    data = tmp_path / "seq.npy"
    np.save(data, np.zeros((2, 6, 1, 16, 16), np.float32))
    fc = Forecaster.open(url, batch_size=2, timeout=1.5)
    fc.observe(frame)
    os.kill(triton_pid, signal.SIGSTOP)
    try:
        with pytest.raises(ServeError) as e:
            fc.observe(frame)
        assert addr in str(e.value) and "1.5 s timeout" in str(e.value)
        fc.close()
        assert "no END sent" in fc.backend.end_error
        r = CliRunner().invoke(infer, ["--engine", url, "--input", str(data), "--out", str(tmp_path / "o.npy"),
                                       "--timeout", "1.5"])
        line = _one_error(r, addr, "1.5 s timeout")
        assert "connecting" in line
        assert not (tmp_path / "o.npy").exists()
    finally:
        os.kill(triton_pid, signal.SIGCONT)
    with Forecaster.open(url, batch_size=2, timeout=30) as fc2:  # the server answers again
        fc2.observe(frame)


@live
def test_gmg_serve_busy_port_says_so(live_repo, tmp_path, monkeypatch):
    """Item 15: the cause from the server log, not its last 400 characters."""
    import tempfile

    from gmg_deploy.cli.serve_cmd import main as serve
    from gmg_deploy.serve.server import free_local_ports

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server's work folder goes here
    shm_before = set(Path("/dev/shm").glob("gmg-serve-*"))
    grpc, http, metrics = free_local_ports(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", grpc))
        busy.listen()
        r = CliRunner().invoke(serve, [str(live_repo), "--grpc-port", str(grpc), "--http-port", str(http),
                                       "--metrics-port", str(metrics)])
    _one_error(r, f"127.0.0.1:{grpc} is already in use", "--grpc-port")
    assert not list(tmp_path.glob("gmg-serve-*"))
    assert _orphan_shm(shm_before) == set()  # the server's shared-memory regions went too


def test_gmg_serve_checks_configs_and_backends_up_front(fc_graph, tmp_path):
    """Item 15: a garbage config.pbtxt, or a model whose backend the server lacks, is refused before a server
    starts, naming the file / model, the backend and the fix."""
    from gmg_deploy.cli.serve_cmd import main as serve
    from gmg_deploy.serve.server import backend_folder, find_server

    repo = tmp_path / "repo"
    assert _run("--model", fc_graph, "-o", repo, "--flavour", "python").exit_code == 0
    (repo / "junk").mkdir()
    (repo / "junk" / "config.pbtxt").write_text("garbage {{\n")
    _one_error(CliRunner().invoke(serve, [str(repo)]), "junk/config.pbtxt is not a valid Triton model config")
    (repo / "junk" / "config.pbtxt").unlink()
    (repo / "junk").rmdir()
    folder = backend_folder(find_server()) if HAVE_SERVER else None
    if folder is None or (folder / "onnxruntime").is_dir():
        pytest.skip("needs a tritonserver without the onnxruntime backend (the nvidia-pytriton bundle)")
    assert _run("--model", fc_graph, "-o", repo, "--name", "gmg_ort").exit_code == 0  # implicit: onnxruntime_onnx
    _one_error(CliRunner().invoke(serve, [str(repo)]), "'gmg_ort'", "'onnxruntime' backend", "--flavour python",
               "Triton container")


def test_log_cause_table():
    from gmg_deploy.serve.server import log_cause

    noise = 'E1201 20:57:07.483586 19506 server.cc:241] "CudaDriverHelper has not been initialized."\n'
    assert "no 'onnxruntime' backend" in log_cause(
        noise + "E1201 1.0 1 m.cc:1] unable to find backend library for backend 'onnxruntime', try ...")
    assert "m/config.pbtxt is not a valid model config" in log_cause("... failed to read text proto from m/config.pbtxt")
    assert log_cause(noise + 'E1201 20:57:10.0 1 x.cc:2] "something odd"\nI1201 last') == "something odd"
    assert "last line" in log_cause("I1201 first\nlast line")


@live
def test_server_does_not_outlive_a_killed_gmg_serve(live_repo, tmp_path, monkeypatch):
    """Item 18: kill -9 gmg-serve: its janitor stops tritonserver (and the stubs) and removes the work folder."""
    from test_triton_live import Served, alive

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    served = Served(live_repo)
    pids: list[int] = []
    try:
        triton_pid, pids = _server_pids(served)
        args = Path(f"/proc/{triton_pid}/cmdline").read_bytes().decode().split("\0")
        workdir = Path(next(a for a in args if a.startswith("--backend-directory=")).split("=", 1)[1]).parent
        assert workdir.parent == tmp_path and workdir.is_dir()

        def regions() -> list[Path]:
            return list(Path("/dev/shm").glob(workdir.name + "-shm-*"))

        assert regions(), "the Python backend's shared memory should carry the run's prefix"
        served.proc.send_signal(signal.SIGKILL)
        assert served.proc.wait(10) == -signal.SIGKILL
        _wait_for(lambda: not any(alive(p) for p in pids) and not workdir.exists() and not regions(),
                  "tritonserver, its stubs or the janitor outlived gmg-serve, or its work folder or shm stayed")
    finally:
        for p in pids:  # only if the test failed: the processes this test started
            with contextlib.suppress(OSError):
                if alive(p):
                    os.kill(p, signal.SIGKILL)
        served.kill()


def _orphan_shm(before: set) -> set:
    """``/dev/shm/gmg-serve-*`` regions made since ``before`` by no running server: left behind (another
    tritonserver running meanwhile, e.g. a module fixture's, owns the regions named in its command line)."""
    running = ""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                running += (proc / "cmdline").read_bytes().decode(errors="replace") + "\n"
            except OSError:
                pass
    return {p for p in set(Path("/dev/shm").glob("gmg-serve-*")) - before
            if p.name.split("-shm-", 1)[0] + "-shm-" not in running}
