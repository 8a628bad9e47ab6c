"""gmg-triton: config.pbtxt of both flavours parsed with Triton's own protobuf schema; refusals; gmg-serve errors."""
from __future__ import annotations

import json
import sys

import onnx
import pytest
from click.testing import CliRunner

from conftest import write_lightning_ckpt
from gmg_deploy.cli.serve_cmd import main as serve
from gmg_deploy.cli.triton_cmd import main as triton
from gmg_deploy.export import build_proto, read_metadata
from gmg_deploy.model.checkpoint import load_checkpoint

pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (pip install gmg-deploy[serve])")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tr")
    model = load_checkpoint(write_lightning_ckpt("gmg_tiny", d / "g.ckpt"))
    out = {}
    for key, kw in {"fc": {"graph": "forecast"}, "fc20": {"graph": "forecast", "opset": 20, "horizon": 1},
                    "fixed": {"graph": "forecast", "batch": 2, "horizon": 1}, "step": {"graph": "step"}}.items():
        out[key] = d / f"{key}.onnx"
        onnx.save(build_proto(model, **kw), out[key])
    return out


def parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _run(*args):
    return CliRunner().invoke(triton, [str(a) for a in args])


def test_implicit_config(graphs, tmp_path):
    repo = tmp_path / "repo"
    r = _run("--model", graphs["fc"], "-o", repo, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"path": str(repo / "gmg"), "platform": "onnxruntime_onnx", "max_batch": 8,
                                    "horizon": 4, "states": 7}
    assert (repo / "gmg" / "1" / "model.onnx").read_bytes() == graphs["fc"].read_bytes()
    c = parse(repo / "gmg" / "config.pbtxt")
    meta = read_metadata(graphs["fc"])
    assert c.name == "gmg" and c.platform == "onnxruntime_onnx" and c.max_batch_size == 8
    assert [(i.name, list(i.dims), i.data_type) for i in c.input] == [("frame", [1, 16, 16], model_config_pb2.TYPE_FP32)]
    assert [(o.name, list(o.dims)) for o in c.output] == [("forecast", [4, 1, 16, 16])]
    sb = c.sequence_batching
    assert len(sb.control_input) == 0 and sb.HasField("oldest") and sb.oldest.max_candidate_sequences == 64
    assert sb.max_sequence_idle_microseconds == 60_000_000
    want = {"state_in." + s["name"]: ("state_out." + s["name"], s["shape"][1:]) for s in meta["state"]}
    assert len(sb.state) == len(want) == 7
    for st in sb.state:
        assert (st.output_name, list(st.dims)) == want[st.input_name]
        assert st.data_type == model_config_pb2.TYPE_FP32 and len(st.initial_state) == 1 and st.initial_state[0].zero_data
        assert list(st.initial_state[0].dims) == list(st.dims)
    # Triton pairs states by sorted position (server issue #8586): the sorted lists must pair X with X
    ins, outs = sorted(s.input_name for s in sb.state), sorted(s.output_name for s in sb.state)
    assert [i.split(".", 1)[1] for i in ins] == [o.split(".", 1)[1] for o in outs]
    assert json.loads(c.parameters["gmg_deploy_metadata"].string_value) == meta
    assert c.instance_group[0].count == 1


def test_python_flavour_and_options(graphs, tmp_path):
    repo = tmp_path / "repo"
    r = _run("--model", graphs["fc"], "-o", repo, "--flavour", "python", "--name", "gmg_py", "--max-batch", "4",
             "--instances", "2", "--strategy", "direct", "--idle-timeout", "2.5", "--threads", "2")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (repo / "gmg_py" / "1").iterdir()) == ["model.onnx", "model.py"]
    c = parse(repo / "gmg_py" / "config.pbtxt")
    assert c.backend == "python" and not c.platform and c.max_batch_size == 4
    assert c.instance_group[0].count == 2 and c.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    sb = c.sequence_batching
    assert sb.HasField("direct") and sb.max_sequence_idle_microseconds == 2_500_000 and len(sb.state) == 0
    kinds = {ci.name: ci.control[0].kind for ci in sb.control_input}
    K = model_config_pb2.ModelSequenceBatching.Control
    assert kinds == {"START": K.CONTROL_SEQUENCE_START, "END": K.CONTROL_SEQUENCE_END,
                     "READY": K.CONTROL_SEQUENCE_READY, "CORRID": K.CONTROL_SEQUENCE_CORRID}
    assert c.parameters["intra_op_threads"].string_value == "2"
    assert [o.name for o in c.output] == ["forecast"] and [i.name for i in c.input] == ["frame"]


def test_refusals_leave_nothing(graphs, tmp_path):
    repo = tmp_path / "repo"
    r = _run("--model", graphs["fixed"], "-o", repo)
    assert r.exit_code == 2 and "fixed batch of 2" in r.output and "without --batch" in r.output
    r = _run("--model", graphs["step"], "-o", repo)
    assert r.exit_code == 2 and "--graph forecast" in r.output
    r = _run("--model", tmp_path / "missing.onnx", "-o", repo)
    assert r.exit_code == 2 and "does not exist" in r.output
    for bad in (["--name", "a/b"], ["--max-streams", "0"], ["--instances", "0"], ["--idle-timeout", "0"]):
        r = _run("--model", graphs["fc"], "-o", repo, *bad)
        assert r.exit_code == 2 and r.output.startswith("error: "), (bad, r.output)
    assert not repo.exists() or list(repo.iterdir()) == []
    assert _run("--model", graphs["fc"], "-o", repo).exit_code == 0
    r = _run("--model", graphs["fc"], "-o", repo, "--flavour", "python")
    assert r.exit_code == 2 and "--force" in r.output
    assert _run("--model", graphs["fc"], "-o", repo, "--flavour", "python", "--force").exit_code == 0
    assert parse(repo / "gmg" / "config.pbtxt").backend == "python"
    assert sorted(p.name for p in repo.iterdir()) == ["gmg"]  # no temporary folders left


def test_state_pairing_check():
    from gmg_deploy.errors import InputError
    from gmg_deploy.serve.triton_config import check_state_pairing

    check_state_pairing(["state_in.h.0", "state_in.c.0", "state_in.h.1"], ["state_out.c.0", "state_out.h.1", "state_out.h.0"])
    with pytest.raises(InputError, match="#8586"):
        check_state_pairing(["state_in.a", "state_in.b"], ["state_out.b", "state_out.a_"])


def _fake_engine(tmp_path, onnx_path, max_batch=16):
    """A .plan file with the gmg-build sidecar (TensorRT is not here: the bytes are not an engine)."""
    from gmg_deploy.trt.profile import BatchRange
    from gmg_deploy.trt.sidecar import build_sidecar, write_sidecar

    plan = tmp_path / f"{onnx_path.stem}.plan"
    plan.write_bytes(b"not built here")
    side = build_sidecar(read_metadata(onnx_path), onnx_path=str(onnx_path), trt_version="10.3", gpu_name="-",
                         compute_capability=(9, 0), batch=BatchRange(1, 1, max_batch), io=[], workspace_mib=None)
    write_sidecar(plan, side)
    return plan


def test_tensorrt_plan_config_and_opset_rule(graphs, tmp_path):
    repo = tmp_path / "repo"
    plan = _fake_engine(tmp_path, graphs["fc"])
    r = _run("--model", plan, "-o", repo, "--name", "trt")
    assert r.exit_code == 0, r.output
    c = parse(repo / "trt" / "config.pbtxt")
    assert c.platform == "tensorrt_plan" and c.max_batch_size == 16
    assert c.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (repo / "trt" / "1" / "model.plan").read_bytes() == b"not built here"
    r = _run("--model", plan, "-o", repo, "--name", "trt2", "--max-batch", "32")
    assert r.exit_code == 2 and "profile maximum 16" in r.output
    r = _run("--model", plan, "-o", repo, "--name", "trt3", "--flavour", "python")
    assert r.exit_code == 2 and "forecast .onnx" in r.output
    r = _run("--model", _fake_engine(tmp_path, graphs["fc20"]), "-o", repo, "--name", "trt4")
    assert r.exit_code == 2 and "opset 20" in r.output and "#4646" in r.output
    assert sorted(p.name for p in repo.iterdir()) == ["trt"]


def test_serve_errors(tmp_path, monkeypatch, graphs):
    r = CliRunner().invoke(serve, [str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "not a folder" in r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(serve, [str(tmp_path / "empty")])
    assert r.exit_code == 2 and "gmg-triton" in r.output
    repo = tmp_path / "repo"
    assert _run("--model", graphs["fc"], "-o", repo, "--flavour", "python").exit_code == 0
    r = CliRunner().invoke(serve, [str(repo), "--grpc-port", "9000", "--http-port", "9000"])
    assert r.exit_code == 2 and "must differ" in r.output
    # no server anywhere: not on PATH and nvidia-pytriton not importable
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "pytriton", None)
    r = CliRunner().invoke(serve, [str(repo)])
    assert r.exit_code == 2 and "pip install gmg-deploy[serve]" in r.output and len(r.output.splitlines()) == 1


def test_triton_url_errors(monkeypatch):
    from gmg_deploy.errors import GMGError
    from gmg_deploy.runtime.forecaster import Forecaster, pick_backend

    assert pick_backend("triton://127.0.0.1:8001/gmg") == "triton"
    for bad in ("triton://127.0.0.1/gmg", "triton://127.0.0.1:8001/", "triton://h:1/a/b"):
        with pytest.raises(GMGError, match="triton://HOST:PORT/NAME"):
            Forecaster.open(bad)
    with pytest.raises(GMGError, match="not a file for backend"):
        pick_backend("triton://127.0.0.1:8001/gmg", "onnxruntime")
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    with pytest.raises(GMGError, match=r"pip install gmg-deploy\[serve\]"):
        Forecaster.open("triton://127.0.0.1:8001/gmg")


def test_server_listens_on_the_host_asked_for(tmp_path):
    """gmg-serve --host reaches every tritonserver address option (default: loopback only)."""
    from pathlib import Path

    from gmg_deploy.serve.server import ServerBinary, server_command

    binary = ServerBinary(Path("/x/tritonserver"))
    for host in ("127.0.0.1", "0.0.0.0"):
        cmd = server_command(binary, tmp_path, grpc_port=1, http_port=2, metrics_port=3, backends=None, host=host)
        assert {c for c in cmd if "-address=" in c} == {f"--{k}-address={host}" for k in ("http", "grpc", "metrics")}
    r = CliRunner().invoke(serve, ["--help"])
    assert "--host" in r.output and "127.0.0.1" in r.output


def test_repository_entry_gets_plain_mkdir_permissions(graphs, tmp_path):
    """The entry folder is made in a temp dir (0700) and renamed: it must end with 0777 minus the umask."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        args = ["--model", str(graphs["fc"]), "-o", str(tmp_path / "repo"), "--flavour", "python"]
        r = CliRunner().invoke(triton, args)
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    entry = tmp_path / "repo" / "gmg"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    assert stat.S_IMODE((entry / "config.pbtxt").stat().st_mode) == 0o644
