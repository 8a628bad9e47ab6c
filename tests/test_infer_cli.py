"""gmg-infer end to end on an exported fixture model (ONNX Runtime, CPU), plus input loading and errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import fixture_golden
from gmg_deploy import load_checkpoint
from gmg_deploy.cli.infer_cmd import main
from gmg_deploy.errors import InputError
from gmg_deploy.runtime.inputs import load_frames
from gmg_deploy.evaluate.metrics import all_metrics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory, ckpt_dir):
    from gmg_deploy.export import export_model

    p = tmp_path_factory.mktemp("infer") / "motionrnn_tiny.onnx"
    export_model(load_checkpoint(ckpt_dir / "motionrnn_tiny.ckpt"), p, graph="step")
    return p


@pytest.fixture(scope="module")
def frames():
    """Three sequences of 8 frames (the fixture's two plus a shuffled one)."""
    g = fixture_golden("motionrnn_tiny")["frames"]
    return np.concatenate([g, g[:1, ::-1]]).astype(np.float32)


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_end_to_end_with_metrics_and_gif(tmp_path, onnx_path, frames, motionrnn_ckpt):
    src = tmp_path / "frames.npy"
    np.save(src, frames)
    out, gif = tmp_path / "preds.npy", tmp_path / "strip.gif"
    r = _run(["--engine", onnx_path, "--input", src, "--out", out, "--gif", gif, "--metrics",
              "--csi-thresholds", "0.3,0.5", "--batch-size", 2, "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    preds = np.load(out)
    assert preds.shape == (3, 4, 1, 16, 16) and summary["shape"] == [3, 4, 1, 16, 16]
    assert (summary["backend"], summary["batch_size"], summary["pre"], summary["aft"]) == ("onnxruntime", 2, 4, 4)
    ref = load_checkpoint(motionrnn_ckpt).predict(torch.from_numpy(frames)).numpy()
    assert np.abs(preds - ref).max() < 1e-5
    want = all_metrics(preds, frames[:, 4:8], [0.3, 0.5])
    assert summary["metrics"].keys() == want.keys()
    for k, v in want.items():
        assert summary["metrics"][k] == pytest.approx(v, nan_ok=True)
    with Image.open(gif) as im:
        assert im.n_frames == 8 == summary["gif_frames"]  # pre + aft frames
        assert im.size == (64 + 128, 3 * 128 + 2 * 2) == tuple(summary["gif_size"])  # labels, 16 px x8, 3 rows, 2 px gaps
    assert not list(tmp_path.glob(".*.tmp"))


def test_human_output_shorter_input_and_one_channel_layout(tmp_path, onnx_path, frames):
    src = tmp_path / "f.npz"
    np.savez(src, frames=frames[:, :6, 0])  # (N, T, H, W), T=6: pre 4 then forecast 3 without truth
    out = tmp_path / "p.npy"
    r = _run(["--engine", onnx_path, "--input", src, "--out", out, "--aft", 3, "--gif", tmp_path / "g.gif"])
    assert r.exit_code == 0, r.output
    assert "3 sequence(s), pre=4 aft=3 with onnxruntime on cpu (batch 1)" in r.output
    assert np.load(out).shape == (3, 3, 1, 16, 16)
    with Image.open(tmp_path / "g.gif") as im:
        assert im.n_frames == 7 and im.size == (64 + 128, 2 * 128 + 2)  # no truth row


def test_png_folder_input(tmp_path, onnx_path, frames):
    d = tmp_path / "pngs"
    d.mkdir()
    seq = (frames[0, :, 0] * 255).round().astype(np.uint8)
    for t in range(8):
        Image.fromarray(seq[t]).save(d / f"frame_{t:03d}.png")
    arr = load_frames(d, (1, 16, 16))
    assert arr.shape == (1, 8, 1, 16, 16) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[0, :, 0], seq / 255.0, atol=1e-7)
    r = _run(["--engine", onnx_path, "--input", d, "--out", tmp_path / "p.npy", "--metrics", "--json"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "p.npy").shape == (1, 4, 1, 16, 16)


@pytest.mark.parametrize("case,msg", [
    ("nan", "error: input frames.npy holds NaN or infinite values (sequence 1, frame 2); clean the data"),
    ("shape", "error: input frames.npy has frames (C,H,W)=(1, 16, 12); the model takes (1, 16, 16)"),
    ("short", "error: --metrics needs ground truth: input has T=6 frames, pre+aft=8"),
    ("few", "error: input has 3 frames per sequence, fewer than --pre 4"),
    ("exists", "already exists; pass --force to overwrite it"),
    ("batch", "Invalid value for '--batch-size': 0 is not in the range x>=1"),
])
def test_errors_are_one_line_exit_2(tmp_path, onnx_path, frames, case, msg):
    data = frames.copy()
    args = ["--engine", onnx_path, "--input", tmp_path / "frames.npy", "--out", tmp_path / "p.npy"]
    if case == "nan":
        data[1, 2, 0, 5, 5] = np.nan
    elif case == "shape":
        data = data[..., :12]
    elif case == "short":
        data, args = data[:, :6], args + ["--metrics"]
    elif case == "few":
        data = data[:, :3]
    elif case == "exists":
        (tmp_path / "p.npy").write_bytes(b"keep")
    elif case == "batch":
        args = args + ["--batch-size", 0]
    np.save(tmp_path / "frames.npy", data)
    r = _run(args)
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert msg in r.output and "Traceback" not in r.output
    if case != "batch":  # click's own usage errors print a usage block
        assert len(lines) == 1
    if case == "exists":
        assert (tmp_path / "p.npy").read_bytes() == b"keep"
    else:
        assert not (tmp_path / "p.npy").exists()


def test_metadata_mismatch_and_bad_files(tmp_path, onnx_path):
    np.save(tmp_path / "rgb.npy", np.zeros((1, 8, 3, 16, 16), np.float32))
    r = _run(["--engine", onnx_path, "--input", tmp_path / "rgb.npy", "--out", tmp_path / "p.npy"])
    assert r.exit_code == 2 and "the model takes (1, 16, 16)" in r.output
    (tmp_path / "x.txt").write_text("hi")
    r = _run(["--engine", onnx_path, "--input", tmp_path / "x.txt", "--out", tmp_path / "p.npy"])
    assert r.exit_code == 2 and "give a .npy/.npz array (N,T,C,H,W) or a folder of PNG frames" in r.output
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"garbage")
    r = _run(["--engine", fake, "--input", tmp_path / "rgb.npy", "--out", tmp_path / "p.npy"])
    assert r.exit_code == 2 and r.output.strip() == f"error: {fake} is not a readable ONNX model"
    with pytest.raises(InputError, match="int32; give float frames"):
        np.save(tmp_path / "i.npy", np.zeros((1, 2, 16, 16), np.int32))
        load_frames(tmp_path / "i.npy", (1, 16, 16))


def test_infer_options_gather_every_click_option():
    """gmg-infer's click options land in one InferOptions (engine and video options nested), none dropped."""
    import dataclasses

    from gmg_deploy.cli.forecaster_options import ForecasterOptions
    from gmg_deploy.cli.infer_cmd import InferOptions
    from gmg_deploy.cli.infer_video import VideoOptions

    ctx = main.make_context("gmg-infer", ["--engine", "m.onnx", "--input", "a.mp4", "--input", "b.mp4",
                                          "--batch-size", "2", "--threads", "3", "--horizon", "4", "--quiet"])
    opts = InferOptions.from_click(ctx.params)
    assert opts.inputs == ("a.mp4", "b.mp4") and opts.forecaster.model == "m.onnx"
    fo = opts.forecaster
    assert (fo.batch_size, fo.threads, opts.video.horizon, opts.video.quiet) == (2, 3, 4, True)
    covered = ({f.name for f in dataclasses.fields(InferOptions)} - {"forecaster", "video", "inputs"}
               | {f.name for f in dataclasses.fields(ForecasterOptions)}
               | {f.name for f in dataclasses.fields(VideoOptions)} | {"input_path"})
    # MODEL, --model and --engine (cli/model_options.model_argument) are gathered into ForecasterOptions.model
    covered = covered - {"model"} | {"model__arg", "model__model", "model__engine"}
    assert set(ctx.params) == covered


def test_engine_options_old_names_still_work():
    """cli.engine_options/EngineOptions and the ``engine`` attributes are the old names of the forecaster options."""
    from gmg_deploy.cli import engine_options, forecaster_options
    from gmg_deploy.cli.engine_options import EngineOptions
    from gmg_deploy.cli.infer_cmd import InferOptions

    assert engine_options is forecaster_options and EngineOptions is forecaster_options.ForecasterOptions
    opts = InferOptions.from_click(main.make_context("gmg-infer", ["m.onnx", "--input", "a.npy"]).params)
    assert opts.engine is opts.forecaster and opts.engine.engine == opts.forecaster.model == "m.onnx"
    assert EngineOptions.from_click({"engine": "x.plan"}).model == "x.plan"
    legacy = InferOptions.from_click({**main.make_context("gmg-infer", ["--input", "a.npy"]).params,
                                      "engine": "y.onnx"})
    assert legacy.forecaster.model == "y.onnx"
