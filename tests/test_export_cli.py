"""gmg-export CLI (click CliRunner and one subprocess) and the TensorRT lint."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from gmg_deploy.cli.export_cmd import main
from gmg_deploy.export import check_tensorrt_compat, read_metadata
from gmg_deploy.export.trt_lint import TensorRTCompatError


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_json_summary(tmp_path, motionrnn_ckpt):
    out = tmp_path / "m.onnx"
    r = _run("--ckpt", motionrnn_ckpt, "-o", out, "--graph", "sequence", "--warp", "gather", "--batch", "2",
             "--batch-mode", "reference", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["path"] == str(out) and summary["graph"] == "sequence" and summary["batch"] == 2
    assert summary["node_count"] == sum(summary["op_types"].values()) and summary["file_size"] == out.stat().st_size
    meta = read_metadata(out)
    assert (meta["warp"], meta["batch_mode"], meta["batch"]) == ("gather", "reference", 2)
    assert "chaining 7 steps" in r.stderr
    assert check_tensorrt_compat(out) == []


def test_cli_subprocess_human_summary(tmp_path, gmg_ckpt):
    out = tmp_path / "g.onnx"
    p = subprocess.run([sys.executable, "-m", "gmg_deploy.cli.export_cmd", "--ckpt", str(gmg_ckpt), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"wrote {out} (step graph, ") and "Conv 39" in p.stdout
    assert "exporting step" in p.stderr and "Traceback" not in p.stderr
    assert read_metadata(out)["config"]["arch"] == "gmg"


def _err(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_cli_without_ckpt_exports_the_demo_model(tmp_path):
    from gmg_deploy.data.demo import demo_checkpoint_path
    from gmg_deploy.export import read_metadata
    from gmg_deploy.model import load_checkpoint

    r = _run("-o", tmp_path / "demo.onnx")
    assert r.exit_code == 0, r.output
    meta = read_metadata(tmp_path / "demo.onnx")
    assert meta["config"] == load_checkpoint(demo_checkpoint_path()).config.to_dict()
    assert "shipped demo model" in r.stderr
    assert "give it with --ckpt" in _err(_run("-o", tmp_path / "x.onnx", "--pre", "4"))


def test_cli_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    msg = _err(_run("--ckpt", bad, "-o", tmp_path / "x.onnx"))
    assert "cannot be read" in msg and str(bad) in msg
    assert not (tmp_path / "x.onnx").exists()


def test_cli_config_file_mismatch(tmp_path, motionrnn_ckpt):
    cfg = tmp_path / "MotionRNN.py"
    cfg.write_text("method = 'MotionRNN'\nnum_hidden = '64,64'\nfilter_size = 3\nstride = 1\npatch_size = 2\n"
                   "layer_norm = 0\n")
    msg = _err(_run("--ckpt", motionrnn_ckpt, "--config-file", cfg, "--in-shape", "4,1,16,16", "--pre", 4,
                    "--aft", 4, "-o", tmp_path / "x.onnx"))
    assert "does not match the configuration" in msg and "num_hidden=[64, 64]" in msg


def test_cli_wrong_in_shape(tmp_path, motionrnn_ckpt):
    msg = _err(_run("--ckpt", motionrnn_ckpt, "--in-shape", "4,2,16,16", "-o", tmp_path / "x.onnx"))
    assert "mis-shaped" in msg
    assert "T,C,H,W" in _err(_run("--ckpt", motionrnn_ckpt, "--in-shape", "4,16,16", "-o", tmp_path / "x.onnx"))


def test_cli_odd_grid(tmp_path, motionrnn_ckpt):
    msg = _err(_run("--ckpt", motionrnn_ckpt, "--in-shape", "4,1,18,18", "-o", tmp_path / "x.onnx"))
    assert "grid (H/p, W/p)=(9,9) must be even" in msg


def test_cli_unwritable_output_leaves_nothing(tmp_path, motionrnn_ckpt):
    msg = _err(_run("--ckpt", motionrnn_ckpt, "-o", tmp_path / "missing" / "x.onnx"))
    assert "does not exist; create it first" in msg
    assert not (tmp_path / "missing").exists()
    r = _run("--ckpt", motionrnn_ckpt, "-o", tmp_path)  # click's own usage error, also exit 2
    assert r.exit_code == 2 and "is a directory" in r.stderr


def test_cli_failed_export_leaves_no_partial_file(tmp_path, motionrnn_ckpt):
    msg = _err(_run("--ckpt", motionrnn_ckpt, "-o", tmp_path / "x.onnx", "--opset", "12"))
    assert "opset 12" in msg
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cli_existing_output_without_force(tmp_path, motionrnn_ckpt):
    out = tmp_path / "x.onnx"
    out.write_bytes(b"keep")
    assert "pass --force" in _err(_run("--ckpt", motionrnn_ckpt, "-o", out))
    assert out.read_bytes() == b"keep"
    r = _run("--ckpt", motionrnn_ckpt, "-o", out, "--force", "--json")
    assert r.exit_code == 0 and read_metadata(out)["graph"] == "step"


def test_cli_batch_and_dynamic_batch_conflict(tmp_path, motionrnn_ckpt):
    assert "exclude each other" in _err(_run("--ckpt", motionrnn_ckpt, "-o", tmp_path / "x.onnx",
                                             "--batch", 2, "--dynamic-batch"))


# ------------------------------------------------------------------ TensorRT lint
def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape=(1, 2, 4, 4), t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_lint_rejects_unique_naming_the_node():
    m = _model([helper.make_node("Unique", ["x"], ["y"], name="my_unique")], [_vi("x", (5,))], [_vi("y", None)])
    with pytest.raises(TensorRTCompatError, match="node 'my_unique' \\(Unique\\): not supported"):
        check_tensorrt_compat(m)
    findings = check_tensorrt_compat(m, raise_on_error=False)
    assert [(f.node, f.op) for f in findings] == [("my_unique", "Unique")]


def test_lint_rejects_loop():
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [_vi("i", (), TensorProto.INT64), _vi("cond_in", (), TensorProto.BOOL)],
                             [_vi("cond_out", (), TensorProto.BOOL)])
    loop = helper.make_node("Loop", ["n", "c"], [], name="the_loop", body=body)
    m = _model([loop], [_vi("n", (), TensorProto.INT64), _vi("c", (), TensorProto.BOOL)], [])
    with pytest.raises(TensorRTCompatError, match="node 'the_loop' \\(Loop\\): control flow"):
        check_tensorrt_compat(m)


def test_lint_gridsample_and_qdq_rules():
    nodes = [
        helper.make_node("GridSample", ["x", "g"], ["y"], name="gs_cubic", mode="bicubic"),
        helper.make_node("GridSample", ["x", "g"], ["y2"], name="gs_ok", mode="bilinear", padding_mode="zeros"),
        helper.make_node("QuantizeLinear", ["y2", "s", "zp"], ["q"], name="q_zp"),
        helper.make_node("Cast", ["y2"], ["d"], name="to_double", to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["y2"], ["h"], name="to_half", to=TensorProto.FLOAT16),
    ]
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("zp", TensorProto.INT8, [], [3])]
    m = _model(nodes, [_vi("x"), _vi("g", (1, 4, 4, 2))], [_vi("y", None), _vi("q", None), _vi("d", None),
                                                          _vi("h", None)], inits, opset=19)
    found = {f.node: f.reason for f in check_tensorrt_compat(m, raise_on_error=False)}
    assert set(found) == {"gs_cubic", "q_zp", "to_double"}
    assert "mode='bicubic'" in found["gs_cubic"] and "zero point" in found["q_zp"]


def test_lint_accepts_symmetric_per_channel_weights():
    w = helper.make_tensor("w", TensorProto.INT8, [3, 2, 1, 1], np.ones(6, np.int8).tolist())
    s = helper.make_tensor("s", TensorProto.FLOAT, [3], [0.1, 0.2, 0.3])
    zp = helper.make_tensor("zp", TensorProto.INT8, [3], [0, 0, 0])
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "zp"], ["wf"], name="dq_w", axis=0),
             helper.make_node("Conv", ["x", "wf"], ["y"], name="conv")]
    m = _model(nodes, [_vi("x")], [_vi("y", None)], [w, s, zp])
    # Conv weights produced by DQ are not an initializer: TensorRT 10 accepts that for Q/DQ graphs
    findings = check_tensorrt_compat(m, raise_on_error=False)
    assert [f.node for f in findings if f.node == "dq_w"] == []


def test_lint_on_a_path(tmp_path):
    m = _model([helper.make_node("Unique", ["x"], ["y"], name="u")], [_vi("x", (5,))], [_vi("y", None)])
    onnx.save(m, tmp_path / "u.onnx")
    with pytest.raises(TensorRTCompatError, match=f"{tmp_path / 'u.onnx'}: node 'u'"):
        check_tensorrt_compat(tmp_path / "u.onnx")


def test_failed_precision_pass_keeps_existing_output(tmp_path, gmg_ckpt, motionrnn_ckpt):
    """The INT8 pass runs in memory before the one write: refusing another model's ranges leaves the old file."""

    from precision_helpers import fp32_step, sequences

    from gmg_deploy.precision.ranges import collect_ranges, save_ranges

    ranges = tmp_path / "gmg_ranges.json"
    save_ranges(collect_ranges(fp32_step("gmg_tiny"), sequences(2, 1)), ranges)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    r = _run("--ckpt", motionrnn_ckpt, "-o", out, "--precision", "int8", "--calibration", ranges, "--force")
    assert "calibrated on a different graph" in _err(r)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gmg_ranges.json", "m.onnx"]
    r = _run("--ckpt", gmg_ckpt, "-o", out, "--precision", "int8", "--calibration", ranges, "--force", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["op_types"]["DequantizeLinear"] > 0  # the summary describes the INT8 graph written
