"""Issue 17 hardening of the Triton path: gmg-triton refusals and writes, triton:// URLs, client timeouts,
gmg-serve start-up errors, the Python-backend model's idle eviction, and no server outliving gmg-serve."""
from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
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
    (["--threads", str(4 * (os.cpu_count() or 1) + 1)], "CPUs"), (["--threads", "0"], ">= 1"),
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
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", str(path)], capture_output=True)
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
                           timeout=300)
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
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
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
