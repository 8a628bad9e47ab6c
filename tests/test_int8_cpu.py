"""INT8 ``--target cpu``: u8/s8 Q/DQ layout that ORT CPU fuses to integer kernels; build/lint refuse it;
ORT thread/spin options."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from gmg_deploy.precision.qdq import quantize_graph
from gmg_deploy.precision.ranges import CalibrationError, asymmetric_range, collect_ranges, save_ranges
from gmg_deploy.evaluate.accuracy import compare_graphs
from gmg_deploy.export.metadata import metadata_from_proto
from precision_helpers import fp32_step, sequences

NAMES = ["gmg_tiny", "motionrnn_tiny"]


@pytest.fixture(scope="module")
def cpu_graphs():
    out = {}
    for name in NAMES:
        p = fp32_step(name)
        doc = collect_ranges(p, sequences(12, 1), method="minmax")
        out[name] = (p, doc, quantize_graph(p, doc, target="cpu"))
    return out


def _optimized_ops(model, tmp_path) -> dict[str, int]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


@pytest.mark.parametrize("name", NAMES)
def test_ort_fuses_integer_kernels(cpu_graphs, name, tmp_path):
    p, _, q = cpu_graphs[name]
    ops = _optimized_ops(q, tmp_path)
    quantized_convs = metadata_from_proto(q)["calibration"]["weights_quantized"]
    assert quantized_convs > 0
    # every quantized Conv became a QLinearConv (ORT fuses DQ -> Conv -> Q); float Convs stay only where kept
    assert ops.get("QLinearConv", 0) >= quantized_convs - sum(
        1 for n in p.graph.node if n.op_type in ("MatMul", "Gemm"))
    assert ops.get("QLinearConv", 0) > 0
    # the TensorRT layout (no Q on outputs) lets ORT fuse almost nothing (only a Conv feeding a Conv)
    trt = quantize_graph(p, cpu_graphs[name][1], target="tensorrt")
    assert _optimized_ops(trt, tmp_path).get("QLinearConv", 0) < ops["QLinearConv"] // 3


@pytest.mark.parametrize("name", NAMES)
def test_cpu_layout_structure_and_metadata(cpu_graphs, name):
    p, doc, q = cpu_graphs[name]
    g = q.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    keep = set(doc["keep_float"])
    n_conv = 0
    for n in g.node:
        if n.op_type != "Conv" or n.name in keep:
            continue
        a, w = producer[n.input[0]], producer[n.input[1]]
        assert a.op_type == "DequantizeLinear" and inits[a.input[2]].dtype == np.uint8  # u8 asymmetric
        assert w.op_type == "DequantizeLinear" and inits[w.input[0]].dtype == np.int8
        assert inits[w.input[1]].shape == (inits[w.input[0]].shape[0],)  # per output channel
        assert not inits[w.input[2]].any()  # symmetric weights
        if len(n.input) > 2:
            b = producer[n.input[2]]
            assert inits[b.input[0]].dtype == np.int32
            np.testing.assert_allclose(inits[b.input[1]], inits[a.input[1]] * inits[w.input[1]], rtol=1e-6)
        (r,) = readers[n.output[0]]  # the output's only reader is its QuantizeLinear
        assert r.op_type == "QuantizeLinear"
        n_conv += 1
    assert n_conv > 0
    for k in keep:  # kept-float nodes read no DQ
        node = next(n for n in g.node if n.name == k)
        assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in node.input)
    cal = metadata_from_proto(q)["calibration"]
    assert cal["target"] == "cpu" and cal["fingerprint"] == doc["fingerprint"] and cal["outputs_quantized"] > 0
    assert metadata_from_proto(quantize_graph(p, doc))["calibration"]["target"] == "tensorrt"


def test_asymmetric_range_and_output_ranges(cpu_graphs):
    p, doc, _ = cpu_graphs["gmg_tiny"]
    outs = {k for k, v in doc["tensors"].items() if v.get("quantized_output")}
    assert outs == {n.output[0] for n in p.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    assert asymmetric_range({"amax": 2.0, "min": -5.0, "max": 1.0}) == (-2.0, 1.0)
    assert asymmetric_range({"amax": 3.0, "min": 0.5, "max": 1.0}) == (0.0, 1.0)  # 0 always representable


@pytest.mark.parametrize("name", NAMES)
def test_cpu_target_accuracy_on_fixtures(cpu_graphs, name):
    """Measured: worst SSIM drop 6e-6 (gmg_tiny) and < 0 (motionrnn_tiny) on 32 held-out sequences."""
    p, _, q = cpu_graphs[name]
    c = compare_graphs(p, q, sequences(16, 2), threads=1, spin=False)
    assert c.passed is True and max(c.ssim_drop) < 2e-3, c.ssim_drop
    assert 0 < max(c.max_abs) < 5e-2  # really quantized, and close


def test_old_ranges_file_without_outputs_refused_for_cpu(cpu_graphs):
    p, doc, _ = cpu_graphs["motionrnn_tiny"]
    old = dict(doc, tensors={k: v for k, v in doc["tensors"].items() if not v.get("quantized_output")
                             or v.get("quantized_input")})
    quantize_graph(p, old)  # the TensorRT target still works with it
    with pytest.raises(CalibrationError, match="no output ranges.*--target cpu needs; re-run gmg-calibrate"):
        quantize_graph(p, old, target="cpu")
    with pytest.raises(CalibrationError, match="target 'gpu' is unknown"):
        quantize_graph(p, doc, target="gpu")


def test_build_and_lint_refuse_cpu_graph(cpu_graphs, tmp_path):
    from gmg_deploy.cli.build_cmd import main as build
    from gmg_deploy.export import check_tensorrt_compat
    from gmg_deploy.export.trt_lint import TensorRTCompatError

    p, doc, q = cpu_graphs["gmg_tiny"]
    path = tmp_path / "cpu.onnx"
    onnx.save(q, path)
    r = CliRunner().invoke(build, [str(path), "-o", str(tmp_path / "e.plan")])
    assert r.exit_code == 2
    line = r.output.strip()
    assert "\n" not in line and line.startswith("error: ") and "--target tensorrt" in line
    assert not (tmp_path / "e.plan").exists()
    with pytest.raises(TensorRTCompatError, match="INT8 graph for ONNX Runtime CPU"):
        check_tensorrt_compat(q)
    assert check_tensorrt_compat(q, raise_on_error=False)[0].op == "metadata"
    assert check_tensorrt_compat(quantize_graph(p, doc), raise_on_error=False) == []


def test_export_cli_target(tmp_path, motionrnn_ckpt):
    from gmg_deploy.cli.export_cmd import main as export

    ranges = tmp_path / "r.json"
    save_ranges(collect_ranges(fp32_step("motionrnn_tiny"), sequences(4, 1)), ranges)
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(export, ["--ckpt", str(motionrnn_ckpt), "-o", str(out), "--precision", "int8",
                                    "--calibration", str(ranges), "--target", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    meta = metadata_from_proto(onnx.load(out))
    assert meta["precision"] == "int8" and meta["calibration"]["target"] == "cpu"
    assert json.loads(r.stdout)["op_types"]["QuantizeLinear"] > 0
    r = CliRunner().invoke(export, ["--ckpt", str(motionrnn_ckpt), "-o", str(tmp_path / "x.onnx"),
                                    "--target", "cpu"])
    assert r.exit_code == 2 and "--target cpu applies to --precision int8 only" in r.output
    assert not (tmp_path / "x.onnx").exists()


def test_threads_and_spin_options(cpu_graphs, tmp_path, motionrnn_ckpt):
    from gmg_deploy.cli.compare_cmd import main as compare
    from gmg_deploy.cli.infer_cmd import main as infer
    from gmg_deploy.evaluate.ort_session import make_session, session_options
    from gmg_deploy.runtime.ort_backend import OrtBackend

    o = session_options(3, spin=False)
    assert o.intra_op_num_threads == 3 and o.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(1).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    p, _, q = cpu_graphs["motionrnn_tiny"]
    s = make_session(q, threads=2, spin=False)
    assert s.get_session_options().intra_op_num_threads == 2
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(p, a)
    onnx.save(q, b)
    be = OrtBackend(b, threads=1, spin=False)
    assert be.session.get_session_options().intra_op_num_threads == 1
    data = tmp_path / "d.npy"
    np.save(data, sequences(4, 5))
    r = CliRunner().invoke(compare, [str(a), str(b), "--data", str(data), "--check", "--json",
                                     "--threads", "2", "--no-spin"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["passed"] is True
    preds = tmp_path / "p.npy"
    r = CliRunner().invoke(infer, ["--engine", str(b), "--input", str(data), "--out", str(preds),
                                   "--threads", "1", "--no-spin"])
    assert r.exit_code == 0, r.output
    assert np.load(preds).shape == (4, 4, 1, 16, 16)
    r = CliRunner().invoke(infer, ["--engine", str(motionrnn_ckpt), "--input", str(data),
                                   "--out", str(tmp_path / "q.npy"), "--threads", "2"])
    assert r.exit_code == 2 and "--threads/--no-spin apply to the onnxruntime backend" in r.output


def test_demo_model_cpu_target_within_half_the_limit():
    """Demo model, 16 train-split calibration rollouts, 16 held-out sequences: measured worst drop 3.2e-3."""
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    p = build_proto(load_checkpoint(demo_checkpoint_path()), graph="step")
    q = quantize_graph(p, collect_ranges(p, demo_dataset("train", n=16)), target="cpu")
    c = compare_graphs(p, q, demo_dataset("test", n=16))
    assert c.passed is True and max(c.ssim_drop) <= 0.005, c.ssim_drop
