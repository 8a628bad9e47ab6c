"""Polygraphy's --data-loader-script with recurrent data: `polygraphy run --onnxrt` (a real subprocess) on the demo's
FP32 and FP16 step graphs, its saved outputs compared with our own ONNX Runtime rollout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import gmg_deploy.cli.polygraphy_data as loader
from gmg_deploy.errors import InputError
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import rollout
from gmg_deploy.export.metadata import metadata_from_proto

pytest.importorskip("polygraphy")
from polygraphy.comparator import RunResults  # noqa: E402
from polygraphy.json import load_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCRIPT = loader.__file__
POLYGRAPHY = shutil.which("polygraphy")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The demo model's step graphs: FP32 (dynamic batch), FP16 with FP16 I/O and states (fixed batch 2)."""
    from gmg_deploy.data.demo import demo_checkpoint_path
    from gmg_deploy.export.api import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint
    from gmg_deploy.precision.api import apply_precision

    d = tmp_path_factory.mktemp("polygraphy")
    model = load_checkpoint(demo_checkpoint_path())
    fp32 = build_proto(model)
    onnx.save(fp32, d / "d32.onnx")
    onnx.save(apply_precision(fp32, "fp16"), d / "d16.onnx")
    fp16 = apply_precision(build_proto(model, batch=2), "fp16", io_fp16=True, state_dtype="fp16")
    onnx.save(fp16, d / "d16b2.onnx")
    return {"fp32": d / "d32.onnx", "fp16dyn": d / "d16.onnx", "fp16": d / "d16b2.onnx", "dir": d}


@pytest.fixture(scope="module")
def fp32_run(graphs, tmp_path_factory):
    """``polygraphy run d32.onnx --onnxrt`` with the loader and no configuration: its directory (in/out.json)."""
    out = tmp_path_factory.mktemp("fp32_run")
    r = _polygraphy(graphs["fp32"], out, {})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out


def _polygraphy(model: Path, out: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [POLYGRAPHY or sys.executable, *([] if POLYGRAPHY else ["-m", "polygraphy"]), "run", str(model), "--onnxrt",
           "--data-loader-script", SCRIPT, "--save-outputs", str(out / "out.json"),
           "--save-inputs", str(out / "in.json"), *extra]
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("GMG_POLYGRAPHY_")},
            "PYTHONPATH": str(REPO), **env}
    return subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=600, cwd=out)


def _iterations(path: Path) -> list[dict[str, np.ndarray]]:
    (_, its), = RunResults.load(str(path))
    return [dict(it.items()) for it in its]


def test_polygraphy_fp32_step_graph_with_demo_data_matches_our_rollout(graphs, fp32_run):
    """No configuration: the demo's test sequences and the states of the demo's FP32 rollout, every step."""
    outs, ins = _iterations(fp32_run / "out.json"), load_json(str(fp32_run / "in.json"))
    from gmg_deploy.data.demo import demo_dataset

    frames = demo_dataset("test", n=loader.DEFAULT_SEQUENCES)
    meta = metadata_from_proto(onnx.load(graphs["fp32"]))
    pre, aft = meta["config"]["pre_seq_length"], meta["config"]["aft_seq_length"]
    assert len(outs) == len(ins) == pre + aft - 1
    ours = rollout(make_session(graphs["fp32"]), meta, frames)  # (N, aft, C, H, W)
    for t, (feed, out) in enumerate(zip(ins, outs)):
        assert feed["frame"].shape[0] == loader.DEFAULT_SEQUENCES
        if t < pre:
            np.testing.assert_array_equal(feed["frame"], frames[:, t])
        if t >= pre - 1:
            np.testing.assert_allclose(out["next_frame"], ours[:, t - pre + 1], atol=1e-5)
        if t + 1 < len(ins):  # the next step's state is this step's state_out
            for name in meta["state"]:
                s = name["name"]
                np.testing.assert_allclose(ins[t + 1][f"state_in.{s}"], out[f"state_out.{s}"], atol=1e-5)
    assert not np.any(ins[0]["state_in.h.0"]) and np.any(ins[5]["state_in.h.0"])  # zeros start, then real states


def test_polygraphy_compares_an_fp16_graph_with_the_fp32_outputs_at_every_step(graphs, fp32_run, tmp_path):
    """The documented two-command check: the FP16 graph's outputs against the saved FP32 ones (--load-outputs),
    on the same realistic feeds, at every step; and a tolerance too tight for FP16 fails."""
    ref = str(fp32_run / "out.json")
    r = _polygraphy(graphs["fp16dyn"], tmp_path, {}, "--load-outputs", ref, "--atol", "1e-2", "--rtol", "1e-2",
                    "--check-error-stat", "max")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    steps = len(load_json(str(fp32_run / "in.json")))
    assert f"Passed: {steps}/{steps} iterations" in r.stdout + r.stderr
    tight = _polygraphy(graphs["fp16dyn"], tmp_path, {}, "--load-outputs", ref, "--atol", "1e-7", "--rtol", "0",
                        "--check-error-stat", "max")
    assert tight.returncode != 0 and "FAILED" in tight.stdout + tight.stderr


def test_polygraphy_fp16_fixed_batch_graph_on_given_sequences(graphs, tmp_path):
    """GMG_POLYGRAPHY_DATA + _GRAPH + _SEQUENCES: FP16 feeds (the graph's dtypes) in chunks of its fixed batch 2;
    the outputs are those of our own FP16 session on the same feeds, and near the FP32 rollout."""
    from gmg_deploy.data.demo import demo_dataset

    frames = demo_dataset("test", n=3, seed=1234)
    np.save(tmp_path / "seqs.npy", frames)
    r = _polygraphy(graphs["fp16"], tmp_path, {"GMG_POLYGRAPHY_DATA": str(tmp_path / "seqs.npy"),
                                               "GMG_POLYGRAPHY_GRAPH": str(graphs["fp32"]),
                                               "GMG_POLYGRAPHY_SEQUENCES": "3"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    outs, ins = _iterations(tmp_path / "out.json"), load_json(str(tmp_path / "in.json"))
    meta32 = metadata_from_proto(onnx.load(graphs["fp32"]))
    pre, aft = meta32["config"]["pre_seq_length"], meta32["config"]["aft_seq_length"]
    steps = pre + aft - 1
    assert len(outs) == 2 * steps  # 3 sequences in chunks of 2 (the last one padded)
    assert all(v.dtype == np.float16 and v.shape[0] == 2 for feed in ins for v in feed.values())
    ours32 = rollout(make_session(graphs["fp32"]), meta32, frames)
    sess16 = make_session(graphs["fp16"])
    names = [o.name for o in sess16.get_outputs()]
    for i, (feed, out) in enumerate(zip(ins, outs)):
        want = dict(zip(names, sess16.run(names, feed)))
        np.testing.assert_allclose(out["next_frame"].astype(np.float32), want["next_frame"].astype(np.float32),
                                   atol=1e-3)
        chunk, t = divmod(i, steps)
        if t >= pre - 1:
            seqs = [0, 1] if chunk == 0 else [2, 2]
            err = np.abs(out["next_frame"].astype(np.float32) - ours32[seqs, t - pre + 1]).max()
            assert err < 0.05, (i, err)
    np.testing.assert_array_equal(ins[steps]["frame"][0], ins[steps]["frame"][1])  # padded with sequence 2


@pytest.mark.parametrize("env, message", [
    ({"GMG_POLYGRAPHY_SEQUENCES": "0"}, "GMG_POLYGRAPHY_SEQUENCES=0 must be >= 1"),
    ({"GMG_POLYGRAPHY_BATCH": "two"}, "GMG_POLYGRAPHY_BATCH='two' is not an integer"),
    ({"GMG_POLYGRAPHY_DATA": "/nonexistent/seqs.npy"}, "does not exist"),
])
def test_configuration_mistakes_are_one_line_through_polygraphy(graphs, tmp_path, env, message):
    r = _polygraphy(graphs["fp32"], tmp_path, env)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1 and message in errs[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "out.json").exists()


def test_reference_must_be_fp32_and_the_same_model(graphs, tmp_path):
    with pytest.raises(InputError, match="must be the FP32 step graph"):
        next(loader.feeds({"GMG_POLYGRAPHY_GRAPH": str(graphs["fp16"])}, ["polygraphy"]))
    wrong = tmp_path / "seqs.npy"
    np.save(wrong, np.zeros((2, 20, 1, 16, 16), np.float32))
    with pytest.raises(InputError):
        next(loader.feeds({"GMG_POLYGRAPHY_DATA": str(wrong)}, ["polygraphy"]))


def test_model_under_test_from_polygraphy_argv(graphs):
    m = str(graphs["fp16"])
    assert loader.model_under_test(["polygraphy", "run", m, "--onnxrt", "--save-outputs", "o.json"], {}) == m
    assert loader.model_under_test(["polygraphy", "run", "--onnxrt", m], {}) == m
    assert loader.model_under_test(["polygraphy", "run", "missing.onnx"], {}) is None
    assert loader.model_under_test(["polygraphy", "run", m], {"GMG_POLYGRAPHY_MODEL": "x.onnx"}) == "x.onnx"


def test_feeds_in_process_take_the_graph_dtypes_and_batch(graphs):
    feeds = list(loader.feeds({"GMG_POLYGRAPHY_SEQUENCES": "2"}, ["polygraphy", "run", str(graphs["fp16"])]))
    assert len(feeds) == 19 and all(v.dtype == np.float16 and v.shape[0] == 2 for f in feeds for v in f.values())
    with pytest.raises(InputError, match="fixed batch of 2"):
        next(loader.feeds({"GMG_POLYGRAPHY_BATCH": "3"}, ["polygraphy", "run", str(graphs["fp16"])]))
