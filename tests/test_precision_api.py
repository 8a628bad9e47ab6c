"""The precision stage's public API: ``calibrate(step_onnx, frames) -> ranges`` and ``convert(src, dst, ...)``."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from gmg_deploy.errors import GMGError
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import rollout
from gmg_deploy.export.metadata import metadata_from_proto
from gmg_deploy.precision import calibrate, convert
from gmg_deploy.precision.qdq import quantize_graph
from gmg_deploy.precision.ranges import CalibrationError, collect_ranges
from precision_helpers import fp32_step, sequences


@pytest.fixture(scope="module")
def step_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("api") / "step.onnx"
    onnx.save(fp32_step("gmg_tiny"), p)
    return p


def test_calibrate_from_a_path_equals_collect_ranges_and_writes_the_file(step_file, tmp_path):
    out = tmp_path / "ranges.json"
    doc = calibrate(step_file, sequences(6, 1), output=out)
    ref = collect_ranges(fp32_step("gmg_tiny"), sequences(6, 1))
    assert doc["fingerprint"] == ref["fingerprint"] and doc["sequences"] == 6
    assert {k: v["amax"] for k, v in doc["tensors"].items()} == {k: v["amax"] for k, v in ref["tensors"].items()}
    assert json.loads(out.read_text())["tensors"] == json.loads(json.dumps(doc["tensors"]))
    assert [p.name for p in tmp_path.iterdir()] == ["ranges.json"]  # no temp file left


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_convert_int8_both_targets_match_quantize_graph(step_file, tmp_path, target):
    doc = calibrate(step_file, sequences(6, 1))
    dst = tmp_path / f"int8_{target}.onnx"
    assert convert(step_file, dst, "int8", ranges=doc, target=target) == dst
    got = onnx.load(str(dst))
    want = quantize_graph(fp32_step("gmg_tiny"), doc, where="ranges", target=target)
    meta = metadata_from_proto(got)
    assert meta["precision"] == "int8" and meta["calibration"]["target"] == target
    assert [n.op_type for n in got.graph.node] == [n.op_type for n in want.graph.node]
    x = sequences(2, 5)
    a = rollout(make_session(got), metadata_from_proto(got), x)
    b = rollout(make_session(want), metadata_from_proto(want), x)
    np.testing.assert_array_equal(a, b)


def test_convert_int8_from_a_ranges_file_in_place(step_file, tmp_path):
    ranges = tmp_path / "r.json"
    calibrate(step_file, sequences(6, 1), output=ranges)
    g = tmp_path / "g.onnx"
    g.write_bytes(step_file.read_bytes())
    convert(g, g, "int8", ranges)
    assert metadata_from_proto(onnx.load(str(g)))["precision"] == "int8"


def test_convert_fp16_from_a_proto(tmp_path):
    dst = tmp_path / "fp16.onnx"
    convert(fp32_step("gmg_tiny"), dst, "fp16", state_dtype="fp16")
    m = onnx.load(str(dst))
    meta = metadata_from_proto(m)
    assert meta["precision"] == "fp16" and meta["state_dtype"] == "float16"
    assert {i.name: i.type.tensor_type.elem_type for i in m.graph.input}["frame"] == onnx.TensorProto.FLOAT


def test_convert_refusals_leave_no_output(step_file, tmp_path):
    dst = tmp_path / "x.onnx"
    with pytest.raises(GMGError, match="unknown"):
        convert(step_file, dst, "int4")
    with pytest.raises(GMGError, match="applies to precision='int8' only"):
        convert(step_file, dst, "fp16", target="cpu")
    with pytest.raises(GMGError, match="only used with precision='int8'"):
        convert(step_file, dst, "fp16", ranges={})
    with pytest.raises(CalibrationError, match="needs calibration ranges"):
        convert(step_file, dst, "int8")
    with pytest.raises(GMGError, match="does not exist"):
        convert(tmp_path / "none.onnx", dst, "fp16")
    assert not dst.exists()
    # in place: a failed conversion never leaves the FP32 file where an INT8 one was asked
    g = tmp_path / "g.onnx"
    g.write_bytes(step_file.read_bytes())
    other = collect_ranges(fp32_step("motionrnn_tiny"), sequences(4, 1))
    with pytest.raises(CalibrationError, match="different graph"):
        convert(g, g, "int8", other)
    assert not g.exists()
