"""Shared test helpers: the reference fixtures (copied from ../shared/fixtures) as checkpoints and models.

The weights and golden outputs come from the reference implementation, never from code under test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_NAMES = ("gmg_tiny", "motionrnn_tiny")


def fixture_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The fixture's weights as float32 tensors (int8 value x power-of-two scale: exact)."""
    w = np.load(FIXTURES / f"{name}_weights.npz")
    scales = json.loads((FIXTURES / f"{name}_weights.json").read_text())["scales"]
    out = {}
    for k in w.files:
        s = scales[k]
        a = w[k].astype(np.float64) * s if s else w[k].astype(np.float64)
        out[k] = torch.from_numpy(np.asarray(a, dtype=np.float32))
    return out


def fixture_hparams(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}_weights.json").read_text())["hyper_parameters"]


def fixture_golden(name: str) -> dict[str, np.ndarray]:
    g = np.load(FIXTURES / f"{name}_golden.npz")
    return {k: g[k] for k in g.files}


def write_lightning_ckpt(name: str, path: Path, *, hparams_update: dict | None = None,
                         prefix: str = "model.") -> Path:
    """An OpenSTL Lightning checkpoint built from the fixture, as the fixtures README describes."""
    hp = fixture_hparams(name)
    if hparams_update:
        hp.update(hparams_update)
    obj = {
        "state_dict": {prefix + k: v for k, v in fixture_state_dict(name).items()},
        "hyper_parameters": hp,
        "epoch": 599,
        "global_step": 12345,
        "pytorch-lightning_version": "2.2.1",
    }
    torch.save(obj, path)
    return path


def export_step_and_forecast(name: str, folder: Path) -> tuple[Path, Path, object]:
    """The fixture ``name`` loaded from a Lightning checkpoint, its step and forecast graphs (horizon = aft) saved
    in ``folder`` -> (step path, forecast path, model)."""
    import onnx

    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    model = load_checkpoint(write_lightning_ckpt(name, folder / f"{name}.ckpt"))
    sp, fp = folder / f"{name}_step.onnx", folder / f"{name}_fc.onnx"
    onnx.save(build_proto(model, graph="step"), sp)
    onnx.save(build_proto(model, graph="forecast"), fp)
    return sp, fp, model


def run_step_chain(sess, model, frames: np.ndarray) -> np.ndarray:
    """Drive an ONNX step graph (ORT session) through pre+aft-1 steps from zero state -> every step's output."""
    cfg = model.config
    state = {n: np.zeros(s, np.float32) for n, s in model.state_shapes(frames.shape[0]).items()}
    x, outs = None, []
    for t in range(cfg.total_steps):
        inp = frames[:, t] if t < cfg.pre_seq_length else x
        res = sess.run(None, {"frame": inp, **{"state_in." + k: v for k, v in state.items()}})
        names = [o.name for o in sess.get_outputs()]
        got = dict(zip(names, res))
        x = got["next_frame"]
        state = {k: got["state_out." + k] for k in state}
        outs.append(x)
    return np.stack(outs, 1)


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ckpts")
    for name in FIXTURE_NAMES:
        write_lightning_ckpt(name, d / f"{name}.ckpt")
    return d


@pytest.fixture(scope="session")
def gmg_ckpt(ckpt_dir) -> Path:
    return ckpt_dir / "gmg_tiny.ckpt"


@pytest.fixture(scope="session")
def motionrnn_ckpt(ckpt_dir) -> Path:
    return ckpt_dir / "motionrnn_tiny.ckpt"


@pytest.fixture(scope="session")
def video_onnx_path(tmp_path_factory, gmg_ckpt) -> Path:
    """The tiny GMG fixture (1x16x16, aft 4) as an ONNX step graph with test_mean 0.1 / test_std 0.5 set."""
    from gmg_deploy.export import export_model
    from gmg_deploy.model.checkpoint import load_checkpoint

    model = load_checkpoint(gmg_ckpt)
    model.test_mean, model.test_std = np.array(0.1), np.array(0.5)
    p = tmp_path_factory.mktemp("video") / "gmg_tiny.onnx"
    export_model(model, p, graph="step")
    return p


@pytest.fixture(params=FIXTURE_NAMES)
def fixture_name(request) -> str:
    return request.param
