"""Streaming runtime (Forecaster) on the ONNX Runtime and torch backends, CPU, against model.predict."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fixture_golden
from gmg_deploy import load_checkpoint
from gmg_deploy.errors import InputError
from gmg_deploy.export.metadata import MetadataError
from gmg_deploy.runtime import Forecaster, pick_backend

TOL = 1e-5
PRE, AFT = 4, 4

torch.set_num_threads(1)


def _ckpt(request, name):
    return request.getfixturevalue("gmg_ckpt" if name == "gmg_tiny" else "motionrnn_ckpt")


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory, ckpt_dir):
    """Both fixtures exported as dynamic-batch step graphs, plus a reference-batch-mode GMG graph."""
    from gmg_deploy.export import export_model

    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in ("gmg_tiny", "motionrnn_tiny"):
        model = load_checkpoint(ckpt_dir / f"{name}.ckpt")
        out[name] = d / f"{name}.onnx"
        export_model(model, out[name], graph="step")
    out["gmg_tiny_reference"] = d / "gmg_tiny_reference.onnx"
    export_model(load_checkpoint(ckpt_dir / "gmg_tiny.ckpt"), out["gmg_tiny_reference"], graph="step",
                 batch_mode="reference")
    out["gmg_tiny_b2"] = d / "gmg_tiny_b2.onnx"
    export_model(load_checkpoint(ckpt_dir / "gmg_tiny.ckpt"), out["gmg_tiny_b2"], graph="step", batch=2)
    return out


@pytest.fixture(params=["onnxruntime", "torch", "openvino"])
def open_fc(request, ckpt_dir):
    """``open_fc(name, batch_size)`` -> a Forecaster on the parametrised backend (openvino: when installed)."""
    backend = request.param
    if backend == "openvino":
        pytest.importorskip("openvino")
    models = request.getfixturevalue("onnx_models") if backend != "torch" else None

    def _open(name, batch_size=2, **kw):
        path = models[name] if backend != "torch" else ckpt_dir / f"{name}.ckpt"
        return Forecaster.open(path, backend="auto" if backend != "openvino" else backend, batch_size=batch_size,
                               **kw)

    return _open


def _stream(fc, frames):
    """Observe frames one (B,C,H,W) step at a time; returns the per-step predictions (B,T,C,H,W)."""
    return np.stack([fc.observe(np.ascontiguousarray(frames[:, t])) for t in range(frames.shape[1])], 1)


# ---------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", ["gmg_tiny", "motionrnn_tiny"])
def test_observe_then_forecast_equals_predict(request, open_fc, name):
    g = fixture_golden(name)
    model = load_checkpoint(_ckpt(request, name))
    ref = model.predict(torch.from_numpy(g["frames"]), AFT, all_steps=True).numpy()
    fc = open_fc(name)
    assert fc.batch_mode == "invariant"
    steps = _stream(fc, g["frames"][:, :PRE])
    preds = fc.forecast(AFT)
    assert steps.shape == (2, PRE, 1, 16, 16) and preds.shape == (2, AFT, 1, 16, 16)
    assert preds.dtype == np.float32
    assert np.abs(steps - ref[:, :PRE]).max() < TOL
    assert np.abs(preds - ref[:, -AFT:]).max() < TOL
    assert np.abs(preds - g["preds_single"]).max() < TOL  # and the reference implementation


def test_sequence_observe_equals_single_steps(open_fc):
    g = fixture_golden("gmg_tiny")
    a, b = open_fc("gmg_tiny"), open_fc("gmg_tiny")
    seq = a.observe(g["frames"][:, :PRE])
    assert seq.shape == (2, PRE, 1, 16, 16)
    np.testing.assert_allclose(seq, _stream(b, g["frames"][:, :PRE]), atol=1e-6)
    np.testing.assert_allclose(a.forecast(3), b.forecast(3), atol=1e-6)


def test_reference_batch_mode_reproduces_the_batched_quirk(onnx_models, gmg_ckpt):
    g = fixture_golden("gmg_tiny")
    fcs = [Forecaster.open(onnx_models["gmg_tiny_reference"], batch_size=2),
           Forecaster.open(gmg_ckpt, batch_size=2, batch_mode="reference")]
    for fc in fcs:
        assert fc.batch_mode == "reference"
        fc.observe(g["frames"][:, :PRE])
        assert np.abs(fc.forecast(AFT) - g["preds"]).max() < TOL, fc.backend_name


def test_fixed_batch_graph_needs_its_batch(onnx_models):
    fc = Forecaster.open(onnx_models["gmg_tiny_b2"], batch_size=2)
    assert fc.observe(np.zeros((2, 1, 16, 16), np.float32)).shape == (2, 1, 16, 16)
    with pytest.raises(MetadataError, match="exported for batch 2, but batch_size=3"):
        Forecaster.open(onnx_models["gmg_tiny_b2"], batch_size=3)


def test_ort_plain_run_equals_io_binding(onnx_models):
    g = fixture_golden("motionrnn_tiny")
    outs = []
    for io_binding in (True, False):
        fc = Forecaster.open(onnx_models["motionrnn_tiny"], batch_size=2, io_binding=io_binding)
        fc.observe(g["frames"][:, :PRE])
        outs.append(fc.forecast(AFT))
    np.testing.assert_array_equal(outs[0], outs[1])


# ---------------------------------------------------------------------------------------- state handling
def test_forecast_leaves_observed_state_untouched(open_fc):
    g = fixture_golden("gmg_tiny")
    fc, ref = open_fc("gmg_tiny"), open_fc("gmg_tiny")
    fc.observe(g["frames"][:, :2])
    before = {n: t.clone() for n, t in fc.state.items()}
    f1 = fc.forecast(5)
    f2 = fc.forecast(5)
    np.testing.assert_array_equal(f1, f2)
    for n, t in fc.state.items():
        assert torch.equal(t, before[n]), n
    # observe continues from the observed state, as if no forecast had happened
    nxt = fc.observe(g["frames"][:, 2])
    ref.observe(g["frames"][:, :2])
    np.testing.assert_array_equal(nxt, ref.observe(g["frames"][:, 2]))


def test_per_slot_reset_makes_slot_independent(open_fc):
    g = fixture_golden("gmg_tiny")
    fr = g["frames"]  # (2, 8, 1, 16, 16)
    fc = open_fc("gmg_tiny")
    fc.observe(fr[:, :3])
    fc.reset(slots=[1])
    # slot 0 continues its stream (frames 3..6); slot 1 starts a fresh one on sample 1's frames 0..3
    both = np.stack([fr[0, 3:7], fr[1, 0:4]])
    fc.observe(both)
    out = fc.forecast(AFT)
    fresh = open_fc("gmg_tiny", batch_size=1)
    fresh.observe(fr[1:2, 0:4])
    np.testing.assert_allclose(out[1], fresh.forecast(AFT)[0], atol=TOL)
    cont = open_fc("gmg_tiny", batch_size=1)
    cont.observe(fr[0:1, 0:7])
    np.testing.assert_allclose(out[0], cont.forecast(AFT)[0], atol=TOL)


def test_full_reset_and_forecast_before_observe(open_fc):
    g = fixture_golden("motionrnn_tiny")
    fc = open_fc("motionrnn_tiny")
    with pytest.raises(InputError, match="call observe"):
        fc.forecast(2)
    first = fc.observe(g["frames"][:, 0])
    fc.observe(g["frames"][:, 1])
    fc.reset()
    assert all(float(t.abs().max()) == 0.0 for t in fc.state.values())
    with pytest.raises(InputError, match="call observe"):
        fc.forecast(1)
    np.testing.assert_array_equal(fc.observe(g["frames"][:, 0]), first)
    with pytest.raises(InputError, match=r"slot\(s\) \[2\] out of range; this runtime has slots 0..1"):
        fc.reset(slots=[0, 2])


def test_snapshot_restore(open_fc):
    g = fixture_golden("gmg_tiny")
    fc = open_fc("gmg_tiny")
    fc.observe(g["frames"][:, :2])
    snap = fc.snapshot()
    a = fc.observe(g["frames"][:, 2:4])
    fa = fc.forecast(3)
    fc.observe(g["frames"][:, 5])  # move on
    fc.restore(snap)
    np.testing.assert_array_equal(fc.observe(g["frames"][:, 2:4]), a)
    np.testing.assert_array_equal(fc.forecast(3), fa)
    other = open_fc("gmg_tiny", batch_size=1)
    with pytest.raises(InputError, match="snapshot does not fit this runtime"):
        other.restore(snap)


def test_return_device_gives_tensors(open_fc):
    g = fixture_golden("gmg_tiny")
    fc = open_fc("gmg_tiny")
    p = fc.observe(torch.from_numpy(g["frames"][:, 0]), return_device=True)
    assert isinstance(p, torch.Tensor) and p.device.type == "cpu" and p.shape == (2, 1, 16, 16)
    f = fc.forecast(3, return_device=True)
    assert isinstance(f, torch.Tensor) and f.shape == (2, 3, 1, 16, 16)
    torch.testing.assert_close(f[:, 0], p, atol=0, rtol=0)
    p2 = fc.observe(g["frames"][:, 1], return_device=True)
    assert not torch.equal(p, p2)  # the returned tensor is not a live buffer


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad,msg", [
    (np.zeros((2, 1, 16, 15), np.float32), r"has shape \(2, 1, 16, 15\); expected \(B,C,H,W\) or \(B,T,C,H,W\) "
                                           r"with B=2, \(C,H,W\)=\(1,16,16\)"),
    (np.zeros((3, 1, 16, 16), np.float32), r"has shape \(3, 1, 16, 16\)"),
    (np.zeros((16, 16), np.float32), r"has shape \(16, 16\)"),
    (np.zeros((2, 1, 16, 16), np.int32), "has dtype int32; give floating-point frames"),
    ([[0.0]], "must be a NumPy array or torch tensor, got list"),
])
def test_input_validation(open_fc, bad, msg):
    fc = open_fc("motionrnn_tiny")
    with pytest.raises(InputError, match=msg):
        fc.observe(bad)


def test_nan_frame_rejected_and_state_kept(open_fc):
    g = fixture_golden("motionrnn_tiny")
    fc, ref = open_fc("motionrnn_tiny"), open_fc("motionrnn_tiny")
    fc.observe(g["frames"][:, 0])
    ref.observe(g["frames"][:, 0])
    before = {n: t.clone() for n, t in fc.state.items()}
    bad = g["frames"][:, 1:4].copy()
    bad[1, 2, 0, 3, 4] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinite values \(first at index \(1, 2, 0, 3, 4\)\)"):
        fc.observe(bad)
    for n, t in fc.state.items():
        assert torch.equal(t, before[n])
    with pytest.raises(InputError, match="horizon k=0 must be an integer >= 1"):
        fc.forecast(0)
    np.testing.assert_array_equal(fc.observe(g["frames"][:, 1]), ref.observe(g["frames"][:, 1]))


def test_failed_step_leaves_state(onnx_models, monkeypatch):
    """A step that raises midway through a multi-frame observe changes nothing."""
    g = fixture_golden("motionrnn_tiny")
    fc = Forecaster.open(onnx_models["motionrnn_tiny"], batch_size=2)
    fc.observe(g["frames"][:, 0])
    before = {n: t.clone() for n, t in fc.state.items()}
    real, calls = fc.backend.run, []

    def flaky(src, dst, from_pred):
        calls.append(dst)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        real(src, dst, from_pred)

    monkeypatch.setattr(fc.backend, "run", flaky)
    with pytest.raises(RuntimeError, match="device lost"):
        fc.observe(g["frames"][:, 1:4])
    for n, t in fc.state.items():
        assert torch.equal(t, before[n])


# ---------------------------------------------------------------------------------------- opening
def test_pick_backend(tmp_path, onnx_models, gmg_ckpt):
    assert pick_backend(onnx_models["gmg_tiny"]) == "onnxruntime"
    assert pick_backend(gmg_ckpt) == "torch"
    eng = tmp_path / "m.plan"
    eng.write_bytes(b"x")
    assert pick_backend(eng) == "tensorrt"
    with pytest.raises(InputError, match="does not exist"):
        pick_backend(tmp_path / "nope.onnx")
    odd = tmp_path / "m.bin"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell the backend of m.bin"):
        pick_backend(odd)
    with pytest.raises(InputError, match="looks like a file for backend 'onnxruntime', not for backend 'torch'"):
        pick_backend(onnx_models["gmg_tiny"], "torch")
    with pytest.raises(InputError, match="backend 'tflite' is unknown"):
        pick_backend(gmg_ckpt, "tflite")


def test_cuda_missing_is_one_clear_error(onnx_models, gmg_ckpt):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="no CUDA GPU available; use --device cpu"):
        Forecaster.open(gmg_ckpt, device="cuda")
    with pytest.raises(InputError, match="onnxruntime has no CUDAExecutionProvider|no CUDA GPU"):
        Forecaster.open(onnx_models["gmg_tiny"], device="cuda")
    with pytest.raises(InputError, match="cuda_graph=True needs device='cuda'"):
        Forecaster.open(gmg_ckpt, cuda_graph=True)


def test_checkpoint_options_travel_as_one_mapping(onnx_models, gmg_ckpt):
    """``checkpoint=`` holds the load_checkpoint options; the older flat keywords still work; both ways at once, an
    unknown option, or checkpoint options for a graph are one InputError."""
    with Forecaster.open(gmg_ckpt, checkpoint={"warp_gate": "motionrnn", "trust_checkpoint": False}) as fc:
        assert fc.backend_name == "torch" and fc.config.warp_gate == "motionrnn"
    with Forecaster.open(gmg_ckpt, warp_gate="motionrnn", checkpoint={"trust_checkpoint": False}) as fc:
        assert fc.config.warp_gate == "motionrnn"
    with pytest.raises(InputError, match="warp_gate given both in checkpoint= and as a keyword argument"):
        Forecaster.open(gmg_ckpt, warp_gate="motionrnn", checkpoint={"warp_gate": "motionrnn"})
    with pytest.raises(InputError, match="checkpoint= has unknown option"):
        Forecaster.open(gmg_ckpt, checkpoint={"cuda_graph": True})
    with pytest.raises(InputError, match=r"checkpoint= options \(trust_checkpoint\) apply to a checkpoint"):
        Forecaster.open(onnx_models["gmg_tiny"], checkpoint={"trust_checkpoint": True})
    with Forecaster.open(onnx_models["gmg_tiny"], checkpoint={}) as fc:  # empty: nothing to refuse
        assert fc.backend_name == "onnxruntime"
