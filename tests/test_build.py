"""gmg-build around TensorRT: profile shapes from metadata, batch-range validation, sidecar, error paths."""
from __future__ import annotations

import importlib.util
import json

import onnx
import pytest
from click.testing import CliRunner

from gmg_deploy.cli.build_cmd import main as build
from gmg_deploy.trt.profile import BatchRange, BuildError, batch_range, profile_shapes
from gmg_deploy.trt.sidecar import build_sidecar, sidecar_path, write_sidecar
from gmg_deploy.export.metadata import metadata_from_proto
from precision_helpers import fp32_step

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_profile_shapes_from_metadata():
    meta = metadata_from_proto(fp32_step("gmg_tiny"))
    prof = profile_shapes(meta, BatchRange(1, 2, 8))
    assert prof["frame"] == ((1, 1, 16, 16), (2, 1, 16, 16), (8, 1, 16, 16))
    assert prof["state_in.h.0"] == ((1, 128, 8, 8), (2, 128, 8, 8), (8, 128, 8, 8))
    assert prof["state_in.offset.0"] == ((1, 18, 4, 4), (2, 18, 4, 4), (8, 18, 4, 4))
    assert list(prof) == meta["inputs"]
    seq = dict(meta, graph="sequence")
    assert profile_shapes(seq, BatchRange(1, 1, 4)) == {"frames": ((1, 4, 1, 16, 16), (1, 4, 1, 16, 16), (4, 4, 1, 16, 16))}


def test_batch_range_validation():
    meta = {"batch": None}
    assert batch_range(meta, None, None, None) == BatchRange(1, 1, 8)
    assert batch_range(meta, 2, 4, 16) == BatchRange(2, 4, 16)
    with pytest.raises(BuildError, match="1 <= min <= opt <= max"):
        batch_range(meta, 4, None, 2)
    with pytest.raises(BuildError, match="must be >= 1"):
        batch_range(meta, 0, None, 2)
    assert batch_range({"batch": 4}, None, None, None) == BatchRange(4, 4, 4)
    with pytest.raises(BuildError, match="fixed batch of 4"):
        batch_range({"batch": 4}, None, None, 8)


def test_sidecar_content(tmp_path):
    meta = metadata_from_proto(fp32_step("motionrnn_tiny"))
    io = [{"name": "frame", "mode": "input", "shape": [-1, 1, 16, 16], "dtype": "FLOAT"}]
    side = build_sidecar(dict(meta, precision="int8"), onnx_path="m.onnx", trt_version="10.9.0", gpu_name="H100",
                         compute_capability=(9, 0), batch=BatchRange(1, 2, 4), io=io, workspace_mib=1024)
    assert side["gpu"] == {"name": "H100", "compute_capability": "9.0"}
    assert side["precision"] == "int8" and side["strongly_typed"] is True
    assert side["batch"] == {"min": 1, "opt": 2, "max": 4} and side["io"] == io
    assert side["metadata"]["config"]["arch"] == "motionrnn"
    plan = tmp_path / "m.plan"
    assert sidecar_path(plan).name == "m.plan.json"
    write_sidecar(plan, side)
    assert json.loads(sidecar_path(plan).read_text())["tensorrt_version"] == "10.9.0"


def test_network_flags_by_version():
    from gmg_deploy.trt.trt_engine import network_flags

    class Flag:
        STRONGLY_TYPED = 1

    class T10:
        __version__ = "10.9.0.34"
        NetworkDefinitionCreationFlag = Flag

    class T11(T10):
        __version__ = "11.0.1"

    assert network_flags(T10) == 2 and network_flags(T11) == 0


@pytest.mark.skipif(HAS_TRT, reason="TensorRT installed: the missing-TensorRT path cannot be shown")
def test_build_without_tensorrt_exits_2(tmp_path):
    m = tmp_path / "m.onnx"
    onnx.save(fp32_step("motionrnn_tiny"), m)
    r = CliRunner().invoke(build, [str(m), "-o", str(tmp_path / "m.plan")])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and 'pip install "gmg-deploy[trt]"' in lines[0]
    assert not (tmp_path / "m.plan").exists()


def test_build_user_errors(tmp_path):
    r = CliRunner().invoke(build, [str(tmp_path / "none.onnx"), "-o", str(tmp_path / "m.plan")])
    assert r.exit_code == 2 and "does not exist" in r.output
    m = tmp_path / "m.onnx"
    onnx.save(fp32_step("motionrnn_tiny"), m)
    r = CliRunner().invoke(build, [str(m), "-o", str(tmp_path / "m.plan"), "--min-batch", "4", "--max-batch", "2"])
    assert r.exit_code == 2 and "min <= opt <= max" in r.output
    r = CliRunner().invoke(build, [str(m), "-o", str(tmp_path / "m.plan"), "--workspace", "0"])
    assert r.exit_code == 2 and "--workspace" in r.output
