"""Forecast graph (observe one frame, forecast K in one call) vs the step graph; Forecaster on it; passes, lint."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from conftest import export_step_and_forecast
from gmg_deploy.export import build_proto, check_tensorrt_compat, read_metadata
from gmg_deploy.export.metadata import metadata_from_proto
from gmg_deploy.export.trt_lint import TensorRTCompatError
from gmg_deploy.runtime.forecaster import Forecaster

torch.set_num_threads(1)
TOL = 1e-5
NAMES = ["gmg_tiny", "motionrnn_tiny"]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """name -> (step path, forecast path (horizon 4 = aft), model)."""
    d = tmp_path_factory.mktemp("fc")
    return {name: export_step_and_forecast(name, d) for name in NAMES}


def _sess(p) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    return ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])


def _run(sess, feed):
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def _next_state(outs):
    return {k.replace("state_out.", "state_in."): v for k, v in outs.items() if k.startswith("state_out.")}


def check_forecast_matches_step(step_sess, fc_sess, frames: np.ndarray) -> float:
    """Feed ``frames (B,T,C,H,W)`` through both graphs; the largest difference of any forecast or state."""
    B = frames.shape[0]
    state = {i.name: np.zeros([B] + list(i.shape[1:]), np.float32) for i in step_sess.get_inputs()[1:]}
    worst = 0.0
    for t in range(frames.shape[1]):
        f = _run(fc_sess, {"frame": frames[:, t], **state})
        s = _run(step_sess, {"frame": frames[:, t], **state})
        worst = max(worst, float(np.abs(f["forecast"][:, 0] - s["next_frame"]).max()))
        worst = max(worst, max(float(np.abs(f[k] - s[k]).max()) for k in s if k.startswith("state_out.")))
        x, st = s["next_frame"], _next_state(s)
        for j in range(1, f["forecast"].shape[1]):
            r = _run(step_sess, {"frame": x, **st})
            worst = max(worst, float(np.abs(r["next_frame"] - f["forecast"][:, j]).max()))
            x, st = r["next_frame"], _next_state(r)
        state = _next_state(s)
    return worst


@pytest.mark.parametrize("name", NAMES)
def test_forecast_graph_equals_step_rollout(graphs, name):
    sp, fp, model = graphs[name]
    meta = read_metadata(fp)
    assert meta["graph"] == "forecast" and meta["horizon"] == model.config.aft_seq_length == 4
    assert meta["inputs"] == read_metadata(sp)["inputs"]
    assert meta["outputs"] == ["forecast"] + read_metadata(sp)["outputs"][1:]
    fc = _sess(fp)
    assert [o.name for o in fc.get_outputs()] == meta["outputs"]
    assert fc.get_outputs()[0].shape == ["batch", 4, 1, 16, 16]
    frames = np.random.default_rng(3).random((3, 5, 1, 16, 16), dtype=np.float32)
    assert check_forecast_matches_step(_sess(sp), fc, frames) < TOL


def test_horizons_one_and_beyond_aft(graphs):
    sp, _, model = graphs["gmg_tiny"]
    frames = np.random.default_rng(4).random((2, 3, 1, 16, 16), dtype=np.float32)
    for k in (1, 6):
        p = build_proto(model, graph="forecast", horizon=k)
        assert metadata_from_proto(p)["horizon"] == k
        sess = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
        assert sess.get_outputs()[0].shape[1] == k
        assert check_forecast_matches_step(_sess(sp), sess, frames) < TOL
    from gmg_deploy.errors import InputError

    with pytest.raises(InputError, match="horizon"):
        build_proto(model, graph="forecast", horizon=0)
    with pytest.raises(InputError, match="forecast graph only"):
        build_proto(model, graph="step", horizon=3)


@pytest.mark.parametrize("io_binding", [True, False])
def test_forecaster_uses_the_stored_rollout(graphs, io_binding):
    sp, fp, _ = graphs["motionrnn_tiny"]
    a = Forecaster.open(fp, batch_size=3, io_binding=io_binding, threads=1)
    b = Forecaster.open(sp, batch_size=3, io_binding=io_binding, threads=1)
    assert a.backend.horizon == 4 and b.backend.horizon is None
    calls = []
    run = a.backend.run
    a.backend.run = lambda *args: (calls.append(args), run(*args))[1]  # count engine calls (real engine runs)
    rng = np.random.default_rng(5)
    for t in range(5):
        x = rng.random((3, 1, 16, 16), dtype=np.float32)
        n0 = len(calls)
        assert np.abs(a.observe(x) - b.observe(x)).max() < TOL
        assert len(calls) == n0 + 1
        for k in (4, 1, 3):
            assert np.abs(a.forecast(k) - b.forecast(k)).max() < TOL
        assert len(calls) == n0 + 1  # k <= horizon: no engine call
        if t == 2:
            a.reset([1])
            b.reset([1])
            assert np.abs(a.forecast(3) - b.forecast(3)).max() < TOL  # after a reset: stepped, still equal
        if t == 3:
            assert np.abs(a.forecast(6) - b.forecast(6)).max() < TOL  # beyond the horizon: stepped
            assert np.abs(a.forecast(2) - b.forecast(2)).max() < TOL
    seq = rng.random((3, 2, 1, 16, 16), dtype=np.float32)
    assert np.abs(a.observe(seq) - b.observe(seq)).max() < TOL
    assert np.abs(a.forecast(4) - b.forecast(4)).max() < TOL


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_passes_and_lint_accept_the_forecast_graph(graphs, precision, tmp_path):
    _, _, model = graphs["gmg_tiny"]
    if precision == "fp16":
        from gmg_deploy.precision.fp16 import convert_to_fp16

        tf = convert_to_fp16
    else:
        from gmg_deploy.precision.qdq import quantize_graph
        from gmg_deploy.precision.ranges import collect_ranges
        from precision_helpers import fp32_step, sequences

        ranges = collect_ranges(fp32_step("gmg_tiny"), sequences(4, 1), method="minmax")
        tf = lambda p: quantize_graph(p, ranges)  # noqa: E731
    step = tf(build_proto(model, graph="step"))
    fc = build_proto(model, graph="forecast", horizon=3, step_transform=tf)
    meta = metadata_from_proto(fc)
    assert meta["precision"] == precision and meta["graph"] == "forecast" and meta["horizon"] == 3
    assert check_tensorrt_compat(fc) == []
    frames = np.random.default_rng(6).random((2, 3, 1, 16, 16), dtype=np.float32)
    o = ort.SessionOptions()  # no fusions: ORT may fuse the Casts between chained FP16 copies differently
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(step.SerializeToString(), o, providers=["CPUExecutionProvider"])
    f = ort.InferenceSession(fc.SerializeToString(), o, providers=["CPUExecutionProvider"])
    assert check_forecast_matches_step(s, f, frames) < TOL  # same graph chained: same numbers


def test_lint_refuses_gridsample_at_opset_20(graphs):
    _, _, model = graphs["gmg_tiny"]
    assert check_tensorrt_compat(build_proto(model, graph="forecast", opset=19)) == []
    p20 = build_proto(model, graph="forecast", opset=20, horizon=1)
    findings = check_tensorrt_compat(p20, raise_on_error=False)
    assert findings and all(f.op == "GridSample" for f in findings)
    assert "#4646" in findings[0].reason
    with pytest.raises(TensorRTCompatError, match="opset 20"):
        check_tensorrt_compat(p20)


def test_export_and_build_cli_accept_forecast(tmp_path, gmg_ckpt):
    from gmg_deploy.cli.build_cmd import main as build
    from gmg_deploy.cli.export_cmd import main as export
    from gmg_deploy.trt.profile import BatchRange, profile_shapes

    out = tmp_path / "fc.onnx"
    r = CliRunner().invoke(export, ["--ckpt", str(gmg_ckpt), "-o", str(out), "--graph", "forecast",
                                    "--horizon", "3", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["graph"] == "forecast" and summary["horizon"] == 3
    meta = read_metadata(out)
    prof = profile_shapes(meta, BatchRange(1, 2, 8))
    assert list(prof) == meta["inputs"] and prof["frame"][2] == (8, 1, 16, 16)
    r = CliRunner().invoke(export, ["--ckpt", str(gmg_ckpt), "-o", str(tmp_path / "s.onnx"), "--horizon", "3"])
    assert r.exit_code == 2 and "--horizon applies to --graph forecast only" in r.output
    r = CliRunner().invoke(export, ["--ckpt", str(gmg_ckpt), "-o", str(tmp_path / "s.onnx"), "--graph", "forecast",
                                    "--horizon", "0"])
    assert r.exit_code == 2 and "must be >= 1" in r.output
    r = CliRunner().invoke(build, [str(out), "-o", str(tmp_path / "fc.plan")])
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:  # metadata accepted; stops only at the missing TensorRT
        assert r.exit_code == 2 and "tensorrt" in r.output.lower()
