"""INT8: calibration over rollouts (states at every step), ranges file, Q/DQ structure, ORT accuracy, CLIs."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from gmg_deploy.precision.qdq import quantize_graph
from gmg_deploy.precision.ranges import (CalibrationError, collect_ranges, load_ranges, quantizable_inputs,
                                           save_ranges)
from gmg_deploy.evaluate.accuracy import compare_graphs
from gmg_deploy.export.metadata import metadata_from_proto
from precision_helpers import fp32_step, sequences

NAMES = ["gmg_tiny", "motionrnn_tiny"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    out = {}
    for name in NAMES:
        p = fp32_step(name)
        doc = collect_ranges(p, sequences(12, 1), method="minmax")
        path = d / f"{name}.json"
        save_ranges(doc, path)
        out[name] = (p, load_ranges(path), quantize_graph(p, load_ranges(path)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_ranges_file_round_trip_and_states(calibrated, name):
    p, doc, _ = calibrated[name]
    assert doc["format"] == "gmg-deploy-ranges" and doc["method"] == "minmax"
    assert doc["sequences"] == 12 and doc["steps_per_sequence"] == 7
    assert set(quantizable_inputs(p)) <= set(doc["tensors"])
    states = {k: v for k, v in doc["tensors"].items() if v["kind"] == "state"}
    assert len(states) == len(metadata_from_proto(p)["state"])
    for k, v in states.items():
        per = v["per_step_amax"]
        assert len(per) == 7
        assert per[0] == 0.0  # zeros start
        assert max(per[1:]) > 0.0, k  # states from step 1 on are real, non-zero
        assert v["amax"] == pytest.approx(max(per))
    assert doc["metadata"]["config"] == metadata_from_proto(p)["config"]


@pytest.mark.parametrize("name", NAMES)
def test_qdq_structure(calibrated, name):
    p, doc, q = calibrated[name]
    g = q.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:  # symmetric: every zero point is int8 0
        zp = numpy_helper.to_array(inits[n.input[2]])
        assert zp.dtype == np.int8 and not zp.any()
    float_nodes = set(doc["keep_float"])
    # default policy: the three motion-GRU convs (they read the offset state) and the output head stay float
    assert len(float_nodes) == 4
    assert sum("/motion_list.0/" in k for k in float_nodes) == 3 and "/conv_last/Conv" in float_nodes
    for n in g.node:
        if n.name in float_nodes:
            assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in n.input), n.name
        elif n.op_type in ("Conv", "ConvTranspose"):
            a, w = producer[n.input[0]], producer[n.input[1]]
            assert a.op_type == "DequantizeLinear" and w.op_type == "DequantizeLinear"
            axis = {x.name: x.i for x in w.attribute}.get("axis")
            assert axis == (1 if n.op_type == "ConvTranspose" else 0)
            wq = inits[w.input[0]]
            assert wq.data_type == onnx.TensorProto.INT8
            scale = numpy_helper.to_array(inits[w.input[1]])
            assert scale.shape == (wq.dims[axis],)  # per channel
            assert numpy_helper.to_array(inits[a.input[1]]).shape == ()  # per tensor activations
        if n.op_type in ("GridSample", "Softmax", "Sigmoid", "Tanh", "Mul", "Add"):
            assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in n.input), n.name
    meta = metadata_from_proto(q)
    assert meta["precision"] == "int8" and meta["calibration"]["fingerprint"] == doc["fingerprint"]
    assert meta["calibration"]["float_nodes"] == sorted(float_nodes)
    assert meta["calibration"]["weights_quantized"] == sum(
        1 for n in p.graph.node if n.op_type in ("Conv", "ConvTranspose")
    ) - len(float_nodes) + sum(1 for n in p.graph.node if n.op_type in ("Gemm", "MatMul") and n.input[1] in
            {t.name for t in p.graph.initializer})


@pytest.mark.parametrize("name", NAMES)
def test_int8_lint_and_accuracy(calibrated, name):
    """Measured on 8 held-out sequences: max |err| ~2.5e-3, SSIM drop <= 1e-3 (limit 1e-2)."""
    from gmg_deploy.export import check_tensorrt_compat

    p, _, q = calibrated[name]
    assert check_tensorrt_compat(q, raise_on_error=False) == []
    c = compare_graphs(p, q, sequences(8, 5))
    assert max(c.max_abs) < 1e-2, c.max_abs
    assert max(c.ssim_drop) < 2e-3 and c.passed is True
    assert min(c.ssim_vs_reference) > 0.995


def test_mismatched_ranges_refused(calibrated):
    _, doc_gmg, _ = calibrated["gmg_tiny"]
    with pytest.raises(CalibrationError, match=r"calibrated on a different graph: .*config arch"):
        quantize_graph(fp32_step("motionrnn_tiny"), doc_gmg)


def test_methods_and_bad_inputs(tmp_path):
    p = fp32_step("motionrnn_tiny")
    mm = collect_ranges(p, sequences(4, 1), method="minmax")
    pc = collect_ranges(p, sequences(4, 1), method="percentile")
    k = "state_in.c.0"
    assert 0 < pc["tensors"][k]["amax"] <= mm["tensors"][k]["amax"] + 1e-6
    with pytest.raises(CalibrationError, match="unknown"):
        collect_ranges(p, sequences(4, 1), method="max")
    from gmg_deploy.errors import InputError

    with pytest.raises(InputError, match="expected"):
        collect_ranges(p, np.zeros((2, 8, 1, 8, 8), np.float32))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(CalibrationError, match="not a gmg-deploy ranges file"):
        load_ranges(bad)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_ranges(tmp_path / "none.json")


def test_calibrate_and_compare_cli(tmp_path, motionrnn_ckpt):
    from gmg_deploy.cli.calibrate_cmd import main as calibrate
    from gmg_deploy.cli.compare_cmd import main as compare
    from gmg_deploy.precision import convert

    data = tmp_path / "calib.npy"
    np.save(data, sequences(6, 1))
    ranges = tmp_path / "ranges.json"
    r = CliRunner().invoke(calibrate, ["--ckpt", str(motionrnn_ckpt), "--data", str(data), "-o", str(ranges),
                                       "--max-sequences", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sequences"] == 4
    a = tmp_path / "a.onnx"
    onnx.save(fp32_step("motionrnn_tiny"), a)
    b = tmp_path / "b.onnx"
    onnx.save(fp32_step("motionrnn_tiny"), b)
    convert(b, b, "int8", str(ranges))
    test = tmp_path / "test.npy"
    np.save(test, sequences(4, 5))
    r = CliRunner().invoke(compare, [str(a), str(b), "--data", str(test), "--json", "--check"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["precision"] == "int8" and len(res["mse"]) == 4 and res["passed"] is True
    r = CliRunner().invoke(calibrate, ["--data", str(data), "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "exactly one of --ckpt or --onnx" in r.output
    r = CliRunner().invoke(calibrate, ["--ckpt", str(motionrnn_ckpt), "--data", str(data), "-o", str(ranges)])
    assert r.exit_code == 2 and "already exists" in r.output


def test_keep_float_policy_none_and_named(tmp_path, motionrnn_ckpt):
    from gmg_deploy.cli.calibrate_cmd import main as calibrate

    p = fp32_step("motionrnn_tiny")
    data = sequences(3, 1)
    none = collect_ranges(p, data, keep_float="none")
    assert none["keep_float"] == []
    q = quantize_graph(p, none)
    convs = sum(1 for n in p.graph.node if n.op_type in ("Conv", "ConvTranspose"))
    assert metadata_from_proto(q)["calibration"]["weights_quantized"] == convs  # every conv quantized
    named = collect_ranges(p, data, keep_float=["/conv_last/Conv"])
    q = quantize_graph(p, named)
    assert metadata_from_proto(q)["calibration"]["float_nodes"] == ["/conv_last/Conv"]
    np.save(tmp_path / "d.npy", data)
    r = CliRunner().invoke(calibrate, ["--ckpt", str(motionrnn_ckpt), "--data", str(tmp_path / "d.npy"),
                                       "-o", str(tmp_path / "r.json"), "--keep-float", "/no/such/Conv"])
    assert r.exit_code == 2 and "'/no/such/Conv', which is not a node of the step graph" in r.output
    assert not (tmp_path / "r.json").exists()
    bad = dict(named, keep_float=["/gone/Conv"])
    with pytest.raises(CalibrationError, match="keep_float names nodes not in this graph"):
        quantize_graph(p, bad)


def test_npz_with_several_arrays_needs_a_frames_entry(tmp_path):
    from gmg_deploy.errors import InputError
    from gmg_deploy.evaluate.rollout import load_frames_npy

    data = sequences(2, 1)
    np.savez(tmp_path / "two.npz", a=data, b=data)
    with pytest.raises(InputError, match=r"holds arrays \['a', 'b'\]; keep one, or name the frames 'frames'"):
        load_frames_npy(tmp_path / "two.npz")
    np.savez(tmp_path / "named.npz", frames=data, extra=data[:1])
    assert load_frames_npy(tmp_path / "named.npz").shape == data.shape
    np.savez(tmp_path / "one.npz", x=data)
    assert load_frames_npy(tmp_path / "one.npz").shape == data.shape
