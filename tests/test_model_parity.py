"""Golden parity of the PyTorch model against the reference implementation's fixtures."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FIXTURES, fixture_golden
from gmg_deploy import load_checkpoint
from gmg_deploy.model.warp import Warp

TOL = 1e-5


def _ckpt(request, name):
    return request.getfixturevalue("gmg_ckpt" if name == "gmg_tiny" else "motionrnn_ckpt")


@pytest.mark.parametrize("warp", ["gridsample", "gather"])
def test_predict_matches_golden(request, fixture_name, warp):
    model = load_checkpoint(_ckpt(request, fixture_name), warp=warp)
    g = fixture_golden(fixture_name)
    frames = torch.from_numpy(g["frames"])
    ref_mode = model.predict(frames, all_steps=True, batch_invariant=False).numpy()
    inv_mode = model.predict(frames, all_steps=True, batch_invariant=True).numpy()
    assert ref_mode.shape == g["all_steps"].shape == (2, 7, 1, 16, 16)
    assert np.abs(ref_mode - g["all_steps"]).max() < TOL
    assert np.abs(inv_mode - g["all_steps_single"]).max() < TOL
    preds = model.predict(frames, batch_invariant=True).numpy()
    assert preds.shape == (2, 4, 1, 16, 16)
    assert np.abs(preds - g["preds_single"]).max() < TOL


def test_batch_quirk_is_visible_for_gmg(gmg_ckpt):
    """The golden data itself differs between batched and single runs; our modes reproduce each."""
    g = fixture_golden("gmg_tiny")
    assert np.abs(g["all_steps"] - g["all_steps_single"]).max() > 1e-5
    model = load_checkpoint(gmg_ckpt)
    frames = torch.from_numpy(g["frames"])
    a = model.predict(frames, all_steps=True, batch_invariant=False).numpy()
    # sample 1 alone (batch of one) equals the single-run golden in either mode
    b = model.predict(frames[1:], all_steps=True, batch_invariant=False).numpy()
    assert np.abs(b[0] - g["all_steps_single"][1]).max() < TOL
    assert np.abs(a[1] - g["all_steps"][1]).max() < TOL


def test_folded_multiscale_conv_is_exact(gmg_ckpt):
    g = fixture_golden("gmg_tiny")
    model = load_checkpoint(gmg_ckpt).fold_multiscale()
    out = model.predict(torch.from_numpy(g["frames"]), all_steps=True).numpy()
    assert np.abs(out - g["all_steps_single"]).max() < TOL
    msc = model.cell_list[0].conv_g[0]
    w, b = msc.folded
    assert w.shape == (128, 4, 5, 5) and b.shape == (128,)
    # the centre tap is the sum of the three kernels' centres
    centre = sum(c.weight[:, :, c.kernel_size[0] // 2, c.kernel_size[0] // 2] for c in msc.convs)
    assert torch.allclose(w[:, :, 2, 2], centre, atol=1e-7)


def test_step_chained_by_hand_equals_predict(request, fixture_name):
    model = load_checkpoint(_ckpt(request, fixture_name))
    g = fixture_golden(fixture_name)
    frames = torch.from_numpy(g["frames"])
    cfg = model.config
    state = model.init_state(frames.shape[0])
    assert list(state) == model.state_names()
    outs = []
    x = None
    with torch.no_grad():
        for t in range(cfg.pre_seq_length + cfg.aft_seq_length - 1):
            inp = frames[:, t] if t < cfg.pre_seq_length else x
            x, state = model.step(inp, state)
            outs.append(x)
    stepped = torch.stack(outs, 1).numpy()
    np.testing.assert_array_equal(stepped, model.predict(frames, all_steps=True).numpy())
    assert np.abs(stepped - g["all_steps_single"]).max() < TOL


def test_state_names_and_shapes(gmg_ckpt):
    model = load_checkpoint(gmg_ckpt)
    assert model.state_names() == ["h.0", "h.1", "c.0", "c.1", "mem", "offset.0", "mean.0"]
    shapes = model.state_shapes(3)
    assert shapes["h.0"] == (3, 128, 8, 8) and shapes["mem"] == (3, 128, 8, 8)
    assert shapes["offset.0"] == (3, 18, 4, 4) and shapes["mean.0"] == (3, 18, 4, 4)
    st = model.init_state(3)
    assert all(float(t.abs().sum()) == 0.0 for t in st.values())


def test_predict_all_steps_and_custom_aft(motionrnn_ckpt):
    model = load_checkpoint(motionrnn_ckpt)
    g = fixture_golden("motionrnn_tiny")
    frames = torch.from_numpy(g["frames"])
    longer = model.predict(frames, aft_seq_length=6)
    assert longer.shape == (2, 6, 1, 16, 16)
    # the first 4 forecast frames equal the default forecast (same recurrence, more steps)
    np.testing.assert_allclose(longer[:, :4].numpy(), g["preds_single"], atol=TOL)


@pytest.mark.parametrize("form", ["gridsample", "gather"])
def test_warp_matches_golden(form):
    g = np.load(FIXTURES / "warp_golden.npz")
    w = Warp(8, form)
    w.load_state_dict({k: torch.from_numpy(g[k]) for k in ("conv.weight", "warp_gate.weight", "warp_gate.bias")})
    with torch.no_grad():
        out = w(torch.from_numpy(g["x"]), torch.from_numpy(g["offset"])).numpy()
    assert out.shape == (2, 8, 6, 10)
    assert np.abs(out - g["out"]).max() < TOL
    # offsets reach +-7 px: the zero padding outside the image matters in this fixture
    assert np.abs(g["offset"]).max() > 6


def test_warp_forms_agree_on_random_offsets():
    torch.manual_seed(0)
    a, b = Warp(5, "gridsample"), Warp(5, "gather")
    b.load_state_dict(a.state_dict())
    f = torch.randn(3, 5, 4, 6)
    off = torch.randn(3, 18, 4, 6) * 4
    with torch.no_grad():
        assert torch.allclose(a(f, off), b(f, off), atol=1e-5)
