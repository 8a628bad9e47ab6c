"""OpenVINO backend: parity with ONNX Runtime on the fixtures (step and forecast graphs), BF16/INT8 on the demo
within the SSIM-drop limits, slot isolation, options (threads, cache, precision hint), gmg-infer and gmg-doctor,
and the one-line error without openvino. (The shared streaming behaviour tests run it via tests/test_runtime.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import export_step_and_forecast, fixture_golden

from gmg_deploy.errors import InputError
from gmg_deploy.export import build_proto
from gmg_deploy.model.checkpoint import load_checkpoint
from gmg_deploy.runtime import Forecaster

ov = pytest.importorskip("openvino")
torch.set_num_threads(1)
TOL = 1e-5
ALL = ["gmg_tiny", "motionrnn_tiny", "gmg_pub9", "motionrnn_pub9"]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """name -> (step graph, forecast graph); the *_pub9 fixtures in their published warp-gate layout."""
    d = tmp_path_factory.mktemp("ov")
    return {name: export_step_and_forecast(name, d)[:2] for name in ALL}


def _rollout(fc, frames, pre, aft):
    steps = fc.observe(frames[:, :pre])
    return steps, fc.forecast(aft)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("graph", ["step", "forecast"])
def test_parity_with_onnxruntime(graphs, name, graph):
    g = fixture_golden(name)
    frames = g["frames"]
    path = graphs[name][0 if graph == "step" else 1]
    ref = Forecaster.open(path, backend="onnxruntime", batch_size=frames.shape[0], threads=1)
    got = Forecaster.open(path, backend="openvino", batch_size=frames.shape[0], threads=1)
    assert got.backend_name == "openvino" and got.backend.precision_hint == "f32"
    pre = ref.config.pre_seq_length
    aft = frames.shape[1] - pre
    for a, b in zip(_rollout(ref, frames, pre, aft), _rollout(got, frames, pre, aft)):
        assert np.abs(a - b).max() < TOL
    # a forecast longer than the forecast graph's horizon steps on through the graph
    np.testing.assert_allclose(got.forecast(aft + 2), ref.forecast(aft + 2), atol=TOL)
    for n, t in ref.state.items():
        assert torch.allclose(got.state[n], t, atol=TOL), n


def test_slot_isolation(graphs):
    """A slot's predictions do not depend on what the other slots observe."""
    frames = fixture_golden("motionrnn_tiny")["frames"]
    path = graphs["motionrnn_tiny"][0]
    a = Forecaster.open(path, backend="openvino", batch_size=2)
    b = Forecaster.open(path, backend="openvino", batch_size=2)
    other = frames[::-1].copy()
    other[0] = frames[0]  # slot 0 sees the same frames in both; slot 1 sees different ones
    pa = a.observe(frames[:, :4])
    pb = b.observe(other[:, :4])
    np.testing.assert_array_equal(pa[0], pb[0])
    np.testing.assert_array_equal(a.forecast(4)[0], b.forecast(4)[0])
    assert np.abs(pa[1] - pb[1]).max() > 1e-3


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo model: its FP32 step graph, INT8 (--target cpu) from a minmax calibration, held-out sequences."""
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.precision.qdq import quantize_graph
    from gmg_deploy.precision.ranges import collect_ranges

    d = tmp_path_factory.mktemp("ovdemo")
    p32 = build_proto(load_checkpoint(demo_checkpoint_path()), graph="step")
    doc = collect_ranges(p32, demo_dataset("train", n=8)[:, :10], method="minmax")
    onnx.save(p32, d / "fp32.onnx")
    onnx.save(quantize_graph(p32, doc, target="cpu"), d / "int8.onnx")
    onnx.save(quantize_graph(p32, doc, target="tensorrt"), d / "int8_trt.onnx")
    return d / "fp32.onnx", d / "int8.onnx", demo_dataset("test", n=8)


def _forecast(path, frames, **kw):
    fc = Forecaster.open(path, batch_size=frames.shape[0], threads=1, **kw)
    fc.observe(frames[:, :10])
    return fc.forecast(10)


@pytest.mark.parametrize("variant,limit", [("bf16", 0.002), ("f16", 0.002), ("int8", 0.01), ("int8_trt", 0.01)])
def test_reduced_precision_within_ssim_drop_limit(demo, variant, limit):
    from gmg_deploy.evaluate.accuracy import compare_predictions

    p32, p8, x = demo
    fc = Forecaster.open(p32, backend="openvino", batch_size=1)
    if variant in ("bf16", "f16") and {"bf16": "BF16", "f16": "FP16"}[variant] not in fc.backend.device_capabilities():
        pytest.skip(f"this CPU has no {variant}")
    ref = _forecast(p32, x, backend="onnxruntime")
    if variant.startswith("int8"):  # our Q/DQ layouts, --target cpu and --target tensorrt
        cand = _forecast(p8 if variant == "int8" else p8.with_name("int8_trt.onnx"), x, backend="openvino")
    else:
        cand = _forecast(p32, x, backend="openvino", precision_hint=variant)
    rep = compare_predictions(ref, cand, x[:, 10:])
    assert max(rep["max_abs"]) > 1e-4  # really reduced precision
    assert max(rep["ssim_drop"]) <= limit, rep["ssim_drop"]


def test_precision_hint_follows_the_device_capabilities(demo):
    p32, p8, _ = demo
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for hint, cap in (("bf16", "BF16"), ("f16", "FP16")):
        if cap in caps:
            fc = Forecaster.open(p32, backend="openvino", precision_hint=hint)
            want = ov.Type.bf16 if hint == "bf16" else ov.Type.f16
            assert fc.backend.compiled.get_property("INFERENCE_PRECISION_HINT") == want
        else:
            with pytest.raises(InputError, match=f"has no {cap} support"):
                Forecaster.open(p32, backend="openvino", precision_hint=hint)
    with pytest.raises(InputError, match="precision_hint 'int4' is unknown"):
        Forecaster.open(p32, backend="openvino", precision_hint="int4")
    with pytest.raises(InputError, match="applies to an FP32 graph; int8.onnx is int8"):
        Forecaster.open(p8, backend="openvino", precision_hint="bf16")
    # f32 really is f32 (OpenVINO's own CPU default is bf16 where the CPU has it)
    fc = Forecaster.open(p32, backend="openvino")
    assert fc.backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def test_threads_and_device_options(graphs):
    path = graphs["gmg_tiny"][0]
    fc = Forecaster.open(path, backend="openvino", device="cpu", threads=1)
    assert fc.backend.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert fc.backend.ov_device == "CPU" and fc.device.type == "cpu"
    with pytest.raises(InputError, match="'cuda' is not an OpenVINO device"):
        Forecaster.open(path, backend="openvino", device="cuda")
    if "NPU" not in ov.Core().available_devices:
        with pytest.raises(InputError, match="OpenVINO device NPU is not available on this machine"):
            Forecaster.open(path, backend="openvino", device="npu")
    with pytest.raises(InputError, match="threads=-1 must be an integer >= 0"):
        Forecaster.open(path, backend="openvino", threads=-1)
    fc = Forecaster.open(path, backend="openvino", device="AUTO", batch_size=2)
    assert fc.observe(np.zeros((2, 1, 16, 16), np.float32)).shape == (2, 1, 16, 16)


def test_cache_dir_keeps_the_compiled_model(graphs, tmp_path):
    """The first open writes a compiled blob into cache_dir; a second open of the same graph adds none (it is
    loaded, not recompiled); another batch size is another compile."""
    path = graphs["gmg_tiny"][0]
    cache = tmp_path / "cache"
    a = Forecaster.open(path, backend="openvino", batch_size=2, cache_dir=cache)
    blobs = sorted(cache.iterdir())
    assert blobs
    b = Forecaster.open(path, backend="openvino", batch_size=2, cache_dir=cache)
    assert sorted(cache.iterdir()) == blobs
    x = fixture_golden("gmg_tiny")["frames"][:, :4]
    np.testing.assert_array_equal(a.observe(x), b.observe(x))
    Forecaster.open(path, backend="openvino", batch_size=3, cache_dir=cache)
    assert len(list(cache.iterdir())) > len(blobs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        Forecaster.open(path, backend="openvino", cache_dir=tmp_path / "file")


def test_gmg_infer_backend_openvino_equals_onnxruntime(graphs, tmp_path):
    from gmg_deploy.cli.infer_cmd import main

    x = fixture_golden("gmg_tiny")["frames"]
    np.save(tmp_path / "x.npy", x)
    path = graphs["gmg_tiny"][0]
    outs = {}
    for be in ("onnxruntime", "openvino"):
        r = CliRunner().invoke(main, ["--engine", str(path), "--input", str(tmp_path / "x.npy"), "--out",
                                      str(tmp_path / f"{be}.npy"), "--backend", be, "--batch-size", "2",
                                      "--threads", "1", "--json"])
        assert r.exit_code == 0, r.output
        rep = json.loads(r.output)
        assert rep["backend"] == be
        outs[be] = np.load(tmp_path / f"{be}.npy")
    assert rep["device"] == "CPU"
    np.testing.assert_allclose(outs["openvino"], outs["onnxruntime"], atol=TOL)
    r = CliRunner().invoke(main, ["--engine", str(path), "--input", str(tmp_path / "x.npy"), "--out",
                                  str(tmp_path / "y.npy"), "--precision-hint", "bf16"])
    assert r.exit_code == 2 and "apply to the openvino backend" in r.output
    assert not (tmp_path / "y.npy").exists()


def test_gmg_infer_video_on_openvino(video_onnx_path, tmp_path):
    pytest.importorskip("av")
    from video_helpers import demo_frames, encode_clip

    from gmg_deploy.cli.infer_cmd import main

    clip = encode_clip(tmp_path / "c.mkv", demo_frames(6, 16, 16, False))
    preds = {}
    for be in ("onnxruntime", "openvino"):
        out = tmp_path / f"{be}.npy"
        r = CliRunner().invoke(main, ["--engine", str(video_onnx_path), "--input", str(clip), "--horizon", "2",
                                      "--out", str(out), "--backend", be, "--quiet"])
        assert r.exit_code == 0, r.output
        preds[be] = np.load(out)
    assert preds["openvino"].shape == (6, 2, 1, 16, 16)
    np.testing.assert_allclose(preds["openvino"], preds["onnxruntime"], atol=TOL)


def test_doctor_lists_openvino_devices():
    from gmg_deploy.cli.doctor_cmd import main

    r = CliRunner().invoke(main, ["--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["versions"]["openvino"]
    cpu = next(d for d in rep["openvino_devices"] if d["name"] == "CPU")
    assert "FP32" in cpu["capabilities"]
    assert rep["backends"]["openvino-cpu"]["usable"]
    text = CliRunner().invoke(main, []).output
    assert "OpenVINO CPU:" in text and "FP32" in text
    assert "fastest CPU path: --backend openvino" in text


def _without_openvino(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child interpreter where ``import openvino`` fails (sys.modules['openvino'] = None)."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.modules['openvino'] = None; " + code],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)


def test_missing_openvino_is_one_line_naming_the_extra(graphs, tmp_path):
    path = graphs["gmg_tiny"][0]
    np.save(tmp_path / "x.npy", fixture_golden("gmg_tiny")["frames"])
    p = _without_openvino("from gmg_deploy.cli.infer_cmd import main; "
                          f"main(['--engine', {str(path)!r}, '--input', {str(tmp_path / 'x.npy')!r}, "
                          f"'--out', {str(tmp_path / 'p.npy')!r}, '--backend', 'openvino'])")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [(
        "error: the OpenVINO backend needs the 'openvino' Python package, which is not installed: "
        'pip install "gmg-deploy[openvino]"')]
    assert not (tmp_path / "p.npy").exists()
    p = _without_openvino("from gmg_deploy.cli.doctor_cmd import main; main(['--json'])")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["versions"]["openvino"] is None and rep["openvino_devices"] == []
    assert not rep["backends"]["openvino-cpu"]["usable"]
    assert "pip install 'gmg-deploy[openvino]'" in rep["recommend"]["cpu"]


def test_batch_over_the_memory_budget_is_refused_before_compiling(graphs, monkeypatch):
    monkeypatch.setenv("GMG_MEMORY_BUDGET_MB", "0.01")
    with pytest.raises(InputError, match="over the budget"):
        Forecaster.open(graphs["gmg_tiny"][0], backend="openvino", batch_size=64)


def test_nan_weights_are_refused_before_compiling(graphs, tmp_path):
    """Like every other path that runs a graph: NaN/Inf weights would turn every forecast into NaN."""
    import re

    from onnx import numpy_helper

    m = onnx.load(str(graphs["gmg_tiny"][0]))
    t = next(t for t in m.graph.initializer if numpy_helper.to_array(t).size > 10)
    a = numpy_helper.to_array(t).copy()
    a.flat[3] = np.inf
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(tmp_path / "inf.onnx"))
    with pytest.raises(InputError, match=rf"inf.onnx: weight {re.escape(t.name)} holds 1 NaN or infinite value\(s\)"):
        Forecaster.open(tmp_path / "inf.onnx", backend="openvino")


@pytest.mark.parametrize("variant", ["bf16", "int8_trt"])
def test_gmg_compare_checks_the_openvino_candidate(demo, variant, tmp_path):
    """`gmg-compare FP32.onnx CANDIDATE --candidate-backend openvino --check` on the demo: bf16 (precision hint,
    the 0.002 limit) and our INT8 graph (0.01) pass, per forecast step, through the runtime."""
    import json

    from click.testing import CliRunner

    from gmg_deploy.cli.compare_cmd import main as compare

    p32, p8, x = demo
    data = tmp_path / "test.npy"
    np.save(data, x)
    if variant == "bf16":
        fc = Forecaster.open(p32, backend="openvino", batch_size=1)
        if "BF16" not in fc.backend.device_capabilities():
            pytest.skip("this CPU has no bf16")
        cand, extra = p32, ["--precision-hint", "bf16"]
    else:
        cand, extra = p8.with_name("int8_trt.onnx"), []
    r = CliRunner().invoke(compare, [str(p32), str(cand), "--data", str(data), "--candidate-backend", "openvino",
                                     *extra, "--check", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["passed"] is True and res["limit"] == (0.002 if variant == "bf16" else 0.01)
    assert res["extra"]["rollout"] == "runtime"


def test_compare_backends_are_the_runtimes():
    from gmg_deploy.cli.compare_cmd import BACKEND_CHOICES
    from gmg_deploy.runtime.forecaster import BACKENDS

    assert set(BACKEND_CHOICES) == set(BACKENDS)
