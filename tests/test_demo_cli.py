"""gmg-demo end to end on the shipped model (small setting), and its one-line errors."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from gmg_deploy.cli.demo_cmd import main


def test_gmg_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["--out", str(out), "--sequences", "4", "--calib-sequences", "4", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for key in ("step_onnx", "sequence_onnx", "step_fp16_onnx", "step_int8_onnx", "int8_ranges", "preds", "gif",
                "metrics", "summary"):
        assert (out / s["files"][key].split("/")[-1]).is_file(), key
    preds = np.load(out / "preds.npy")
    assert preds.shape == (4, 10, 1, 32, 32) and np.isfinite(preds).all()
    # the streamed step graph and the unrolled sequence graph agree
    assert s["sequence_vs_stream_max_abs"] < 1e-4
    # the trained model beats copying the last frame on held-out sequences
    assert s["model"]["mse"] < s["copy_last"]["mse"]
    assert s["model"]["ssim"] > s["copy_last"]["ssim"]
    assert len(s["model"]["mse_per_step"]) == 10
    # reduced precision stays close to FP32
    assert s["precision"]["fp16"]["worst_ssim_drop"] < 0.002
    assert max(s["precision"]["int8"]["max_abs"]) < 0.5
    with Image.open(out / "demo.gif") as gif:
        assert gif.n_frames == 20  # 10 observed + 10 forecast steps
        assert gif.size == (64 + 128, 3 * 128 + 2 * 2)  # labels, input | truth | prediction rows, 32 px frames x4
    table = (out / "metrics.md").read_text()
    assert "copy last observed frame" in table and "| 10 |" in table


def test_gmg_demo_human_output_and_bad_out(tmp_path):
    out = tmp_path / "d2"
    r = CliRunner().invoke(main, ["--out", str(out), "--sequences", "2", "--no-precision"])
    assert r.exit_code == 0, r.output
    assert "GMG demo model (ONNX Runtime, streaming)" in r.stdout and "done in" in r.stdout
    assert "[1/5] model" in r.stderr and "step_fp16_onnx" not in r.stdout
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(main, ["--out", str(blocker / "sub")])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output
