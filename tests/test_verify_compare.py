"""gmg-compare through the runtime: checkpoint vs step ONNX vs forecast ONNX, a bad INT8 candidate, named MSE
flavours, one-line errors (a missing file, a .plan without TensorRT)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import fixture_golden, write_lightning_ckpt
from gmg_deploy.cli.compare_cmd import main as compare
from gmg_deploy.errors import InputError

ALL_FIXTURES = ("gmg_tiny", "motionrnn_tiny", "gmg_pub9", "motionrnn_pub9")
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``{name: (ckpt, step.onnx, forecast.onnx, data.npy)}`` for every fixture (data: its golden frames)."""
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("verify_models")
    out = {}
    for name in ALL_FIXTURES:
        ck = write_lightning_ckpt(name, d / f"{name}.ckpt")
        step, fc, data = d / f"{name}_step.onnx", d / f"{name}_forecast.onnx", d / f"{name}.npy"
        onnx.save(build_proto(load_checkpoint(ck), graph="step"), step)
        onnx.save(build_proto(load_checkpoint(ck), graph="forecast"), fc)
        np.save(data, fixture_golden(name)["frames"])
        out[name] = (ck, step, fc, data)
    return out


def _one_error(r) -> str:
    assert "Traceback" not in r.output, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and r.stderr.rstrip("\n").splitlines()[-1] == errors[0], r.stderr
    return errors[0]


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_checkpoint_step_and_forecast_graphs_agree_through_the_runtime(models, name):
    from gmg_deploy.runtime.verify import compare_models

    ck, step, fc, data = models[name]
    frames = np.load(data)
    for a, b, kinds in ((ck, step, ("torch", "onnxruntime")), (step, fc, ("onnxruntime", "onnxruntime")),
                        (ck, fc, ("torch", "onnxruntime"))):
        c = compare_models(str(a), str(b), frames, batch_size=2)
        assert (c.extra["reference_backend"], c.extra["candidate_backend"]) == kinds
        assert c.extra["rollout"] == "runtime"  # a checkpoint or a forecast graph: the Forecaster rollout
        assert max(c.max_abs) < 1e-5, (a.name, b.name, c.max_abs)
        assert max(abs(x) for x in c.ssim_drop) < 1e-6 and c.passed is True and c.first_failing_step is None
        assert c.precision == "fp32" and c.max_abs_limit == 1e-4 and c.limit == 1e-6


def test_onnx_batch_path_and_runtime_rollout_give_the_same_forecasts(models, tmp_path):
    """Step graphs stream through the runtime like every backend; a sequence graph (not streamable) takes the
    batched ORT rollout; both rollouts of one step graph give the same forecasts."""
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.evaluate.rollout import graph_metadata, rollout
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint
    from gmg_deploy.runtime.forecaster import Forecaster
    from gmg_deploy.runtime.verify import compare_models, forecast_sequences

    ck, step, _, data = models["gmg_tiny"]
    frames = np.concatenate([np.load(data)] * 3)  # 6 sequences: batch 4 leaves a padded chunk of 2
    c = compare_models(str(step), str(step), frames, batch_size=4)
    assert c.extra["rollout"] == "runtime" and max(c.max_abs) == 0.0
    seq = tmp_path / "seq.onnx"
    onnx.save(build_proto(load_checkpoint(ck), graph="sequence"), seq)
    c = compare_models(str(step), str(seq), frames, batch_size=4)
    assert c.extra["rollout"] == "onnxruntime batch" and max(c.max_abs) < 1e-5 and c.passed is True
    with pytest.raises(InputError, match="a sequence graph runs in ONNX Runtime's batch rollout only"):
        compare_models(str(ck), str(seq), frames)
    batched = rollout(make_session(step), graph_metadata(step), frames, batch_size=4)
    with Forecaster.open(step, batch_size=4, threads=1) as fc:
        streamed = forecast_sequences(fc, frames)
    assert streamed.shape == batched.shape == (6, 4, 1, 16, 16)
    assert np.abs(streamed - batched).max() < 1e-6


def test_cli_json_names_the_mse_flavour_and_keeps_old_keys(models):
    ck, step, _, data = models["gmg_pub9"]
    r = CliRunner().invoke(compare, [str(ck), str(step), "--data", str(data), "--json", "--check"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("mse", "mse_per_pixel", "mse_pixel_sum", "max_abs", "ssim_vs_reference", "ssim_ref_vs_truth",
                "ssim_cand_vs_truth", "ssim_drop", "limit", "max_abs_limit", "first_failing_step", "passed"):
        assert key in res, key
    assert res["mse"] == res["mse_pixel_sum"]  # the old key: OpenSTL's MSE, summed over C,H,W
    pixels = 36 * 36
    assert np.allclose(np.array(res["mse_pixel_sum"]) / pixels, res["mse_per_pixel"])
    assert res["passed"] is True and res["first_failing_step"] is None and res["extra"]["reference_backend"] == "torch"
    r = CliRunner().invoke(compare, [str(ck), str(step), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "MSE/pixel" in r.output and "MSE(sum)" in r.output and "summed over C,H,W" in r.output
    assert "max|err|" in r.output and "bound 0.0001: PASS" in r.output and "on torch / onnxruntime" in r.output


def test_bad_int8_candidate_fails_check_with_exit_1(tmp_path):
    """The demo model quantized with --keep-float none (every conv INT8): the SSIM drop is far over 0.01."""
    from gmg_deploy.cli.calibrate_cmd import main as calibrate
    from gmg_deploy.cli.export_cmd import main as export
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset

    ck = str(demo_checkpoint_path())
    np.save(tmp_path / "calib.npy", demo_dataset("train", n=8))
    np.save(tmp_path / "test.npy", demo_dataset("test", n=8))
    run = lambda cmd, args: CliRunner().invoke(cmd, [str(a) for a in args])  # noqa: E731
    r = run(calibrate, ["--ckpt", ck, "--data", tmp_path / "calib.npy", "-o", tmp_path / "r.json",
                        "--keep-float", "none"])
    assert r.exit_code == 0, r.output
    for prec, extra in (("fp32", []), ("int8", ["--calibration", tmp_path / "r.json"])):
        r = run(export, ["--ckpt", ck, "-o", tmp_path / f"{prec}.onnx", "--precision", prec, *extra])
        assert r.exit_code == 0, r.output
    r = run(compare, [tmp_path / "fp32.onnx", tmp_path / "int8.onnx", "--data", tmp_path / "test.npy", "--check",
                      "--json"])
    assert r.exit_code == 1, r.output
    res = json.loads(r.stdout)
    assert res["passed"] is False and res["limit"] == 0.01 and res["worst_drop"] > 0.05
    assert res["first_failing_step"] == 1 + int(np.argmax(np.array(res["ssim_drop"]) > 0.01))
    r = run(compare, [tmp_path / "fp32.onnx", tmp_path / "int8.onnx", "--data", tmp_path / "test.npy", "--check"])
    assert r.exit_code == 1 and "vs limit 0.01: FAIL (first outside the limit at step" in r.output


def test_missing_file_says_not_found(models, tmp_path):
    _, step, _, data = models["gmg_tiny"]
    for args in ([str(tmp_path / "none.onnx"), str(step)], [str(step), str(tmp_path / "none.plan")]):
        r = CliRunner().invoke(compare, args + ["--data", str(data)])
        assert r.exit_code == 2
        line = _one_error(r)
        assert "not found" in line and "none." in line and "readable ONNX" not in line, line


def test_backend_option_per_side(models):
    ck, step, _, data = models["gmg_tiny"]
    r = CliRunner().invoke(compare, [str(ck), str(step), "--data", str(data), "--candidate-backend", "torch"])
    assert r.exit_code == 2 and "looks like a file for backend 'onnxruntime', not for backend 'torch'" in _one_error(r)
    r = CliRunner().invoke(compare, [str(step), str(step), "--data", str(data), "--reference-backend", "onnxruntime",
                                     "--candidate-backend", "onnxruntime", "--max-abs-limit", "-1"])
    assert r.exit_code == 2 and "max_abs_limit=-1.0 must be a finite number >= 0" in _one_error(r)


@pytest.mark.skipif(HAVE_TRT, reason="checks the message on a machine without TensorRT")
def test_plan_without_tensorrt_names_the_trt_extra(models, tmp_path):
    from gmg_deploy.trt.profile import BatchRange
    from gmg_deploy.trt.sidecar import build_sidecar, write_sidecar
    from gmg_deploy.export.metadata import read_metadata

    _, step, _, data = models["gmg_tiny"]
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not built here")
    write_sidecar(plan, build_sidecar(read_metadata(step), onnx_path=str(step), trt_version="10.9.0",
                                      gpu_name="test", compute_capability=(9, 0), batch=BatchRange(1, 1, 8), io=[],
                                      workspace_mib=None))
    r = CliRunner().invoke(compare, [str(step), str(plan), "--data", str(data)])
    assert r.exit_code == 2
    line = _one_error(r)
    assert "[trt]" in line and "tensorrt" in line, line


@pytest.mark.parametrize("io_fp16", [False, True])
def test_fp16_emulation_through_the_runtime_matches_the_batch_emulation(models, tmp_path, io_fp16):
    """An FP16 graph streamed through the runtime is scored on emulate_fp16 (FP32 I/O) exactly like the
    batched path; ``emulate=False`` runs it as is (ORT CPU upcasts: a smaller error)."""
    from gmg_deploy.evaluate.accuracy import compare_graphs
    from gmg_deploy.precision import apply_precision
    from gmg_deploy.precision.fp16 import emulate_fp16
    from gmg_deploy.runtime.verify import Side, compare_models

    _, step, _, data = models["gmg_pub9"]
    frames = np.load(data)
    q = apply_precision(onnx.load(step), "fp16", io_fp16=io_fp16, state_dtype="fp16" if io_fp16 else "fp32")
    onnx.save(q, tmp_path / "fp16.onnx")
    batched = compare_graphs(onnx.load(step), emulate_fp16(q), frames)
    streamed = compare_models(str(step), str(tmp_path / "fp16.onnx"), frames)
    assert streamed.extra["rollout"] == "runtime" and streamed.precision == "fp16" and streamed.limit == 0.002
    assert np.allclose(streamed.max_abs, batched.max_abs, rtol=0, atol=1e-7)
    assert np.allclose(streamed.ssim_drop, batched.ssim_drop, rtol=0, atol=1e-9)
    as_is = compare_models(str(step), Side(str(tmp_path / "fp16.onnx"), emulate=False), frames)
    assert max(as_is.max_abs) <= max(streamed.max_abs)


def test_checkpoint_options_need_a_checkpoint_side(models):
    ck, step, fc, data = models["gmg_tiny"]
    r = CliRunner().invoke(compare, [str(step), str(fc), "--data", str(data), "--trust-checkpoint", "--pre", "3"])
    assert r.exit_code == 2
    assert "--trust-checkpoint/--pre describe a checkpoint; neither REFERENCE nor CANDIDATE is one" in _one_error(r)
    r = CliRunner().invoke(compare, [str(ck), str(fc), "--data", str(data), "--trust-checkpoint", "--check"])
    assert r.exit_code == 0, r.output
