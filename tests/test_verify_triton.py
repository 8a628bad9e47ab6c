"""Live: gmg-compare of a served model (real tritonserver, python flavour, on free 127.0.0.1 ports) vs local."""
from __future__ import annotations

import json
import signal

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import fixture_golden, write_lightning_ckpt
from test_triton_live import HAVE_SERVE, Served, assert_exited, descendants

pytestmark = pytest.mark.skipif(not HAVE_SERVE, reason="needs tritonclient + nvidia-pytriton (pip install gmg-deploy[serve])")


def test_served_model_vs_local_through_gmg_compare(tmp_path):
    from gmg_deploy.cli.compare_cmd import main as compare
    from gmg_deploy.cli.triton_cmd import main as triton
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    ck = write_lightning_ckpt("gmg_tiny", tmp_path / "g.ckpt")
    fc = tmp_path / "fc.onnx"
    onnx.save(build_proto(load_checkpoint(ck), graph="forecast"), fc)
    r = CliRunner().invoke(triton, ["--model", str(fc), "-o", str(tmp_path / "repo"), "--flavour", "python",
                                    "--max-batch", "8", "--idle-timeout", "30"])
    assert r.exit_code == 0, r.output
    data = tmp_path / "data.npy"
    g = fixture_golden("gmg_tiny")["frames"]
    np.save(data, np.concatenate([g, g[:1]]))  # 3 sequences: with --batch-size 2 the last chunk is padded
    server = Served(tmp_path / "repo")
    try:
        url = f"{server.url}/gmg"
        for ref in (ck, fc):
            r = CliRunner().invoke(compare, [str(ref), url, "--data", str(data), "--batch-size", "2", "--check",
                                             "--json"])
            assert r.exit_code == 0, r.output
            res = json.loads(r.stdout)
            assert res["extra"]["candidate_backend"] == "triton" and res["sequences"] == 3
            assert max(res["max_abs"]) < 1e-5 and max(abs(x) for x in res["ssim_drop"]) < 1e-6
            assert res["passed"] is True
    finally:
        kids = descendants(server.proc.pid)
        try:
            assert server.stop(signal.SIGINT) == 130
        finally:
            server.kill()
        assert_exited(kids, "processes left after gmg-serve stopped")
