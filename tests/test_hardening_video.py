"""Issue 17 (video / input / frame-file defects): each bad call ends in one `error:` line and exit 2 (or the
signal status), leaves no temp file and keeps what was processed."""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from gmg_deploy.checks import check_threads, check_timeout, cpu_count
from gmg_deploy.cli.infer_cmd import main as infer_main
from gmg_deploy.errors import InputError
from gmg_deploy.io import OutputError, check_not_input
from gmg_deploy.runtime.inputs import load_frames
from video_helpers import PartialStreamServer, demo_frames, encode_clip, encode_mpegts

torch.set_num_threads(1)
INFER = [sys.executable, "-m", "gmg_deploy.cli.infer_cmd"]


def _run(args, env=None):
    return CliRunner().invoke(infer_main, [str(a) for a in args], env=env)


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "error:" in ln]


def _assert_one_error(r, pattern: str) -> None:
    assert r.exit_code == 2, r.output
    errs = _error_lines(r.output)
    assert len(errs) == 1 and errs[0].startswith("error: ") and re.search(pattern, errs[0]), r.output
    assert "Traceback" not in r.output


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("h") / "c.mkv", demo_frames(12, 16, 16, False), fps=10)


# ---------------------------------------------------------------- 1, 2: timeouts and stalled network reads
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "-inf"])
def test_non_finite_or_non_positive_timeouts_refused(tmp_path, video_onnx_path, clip, value):
    r = _run(["--engine", video_onnx_path, "--input", clip, "--connect-timeout", value, "--quiet"])
    _assert_one_error(r, r"--connect-timeout \S+ must be a finite number of seconds > 0")
    with pytest.raises(InputError, match="finite number"):
        check_timeout(float(value), "--x")
    assert check_timeout("2.5", "--x") == 2.5


@pytest.mark.parametrize("value", ["inf", "nan", "0"])
def test_remote_engine_timeout_uses_the_same_validator(tmp_path, value):
    np.save(tmp_path / "f.npy", np.zeros((1, 5, 1, 16, 16), np.float32))
    r = _run(["--engine", "triton://127.0.0.1:1/m", "--input", tmp_path / "f.npy", "--out", tmp_path / "p.npy",
              "--timeout", value])  # refused before any connection is tried
    _assert_one_error(r, rf"--timeout {value} must be a finite number of seconds > 0")


@pytest.mark.parametrize("mode", ["--realtime", "--no-realtime"])
def test_stalled_live_source_ends_with_partial_outputs(tmp_path, video_onnx_path, mode):
    """A URL that sends part of a stream and then stalls ends within the timeout (never hangs): exit 2, one
    error line, the frames decoded before the stall are in --out."""
    payload = encode_mpegts(tmp_path / "live.ts", 60, seed=4)
    srv = PartialStreamServer(payload, len(payload) // 2, "stall")
    out = tmp_path / "p.npy"
    try:
        p = subprocess.run(INFER + ["--engine", str(video_onnx_path), "--input", srv.url, mode, "--horizon", "2",
                                    "--out", str(out), "--json", "--quiet", "--connect-timeout", "3"],
                           capture_output=True, text=True, timeout=120)
        assert srv.sent.is_set(), p.stderr  # (3 s: a loaded 2-core machine can take over 1 s to connect and probe)
    finally:
        srv.stop()
    assert p.returncode == 2, p.stderr
    rep = json.loads(p.stdout)
    errs = _error_lines(p.stderr)
    assert len(errs) == 1 and srv.url in errs[0] and "Traceback" not in p.stderr, p.stderr
    # PyAV's read timeout (or, with --realtime, the wait for the decode thread's next frame) ended the stall
    assert re.search(r"stalled after \d+ frame\(s\): nothing arrived for 3 s|delivered no frame for 3 s", errs[0])
    assert rep["partial"] and rep["frames"] > 0 and f"the outputs hold the {rep['frames']} frame(s)" in p.stderr
    assert np.load(out).shape == (rep["frames"], 2, 1, 16, 16)
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- 3, 4: horizon/aft budget, --threads
def test_horizon_and_aft_bounded_by_the_memory_budget(tmp_path, video_onnx_path, clip, monkeypatch):
    env = {"GMG_MEMORY_BUDGET_MB": "1"}  # 16x16 float32 frames: 1 KiB; 2 copies per stream -> 512 frames ahead
    for h in ("99999999999999999999999", "1000"):
        r = _run(["--engine", video_onnx_path, "--input", clip, "--horizon", h, "--quiet"], env=env)
        _assert_one_error(r, rf"--horizon {h} needs .* over the memory budget of 1.0 MiB .*use --horizon 512 or less")
    # with --out every frame's forecasts stay until the end: the file's 12 frames count too (1 MiB / 14 KiB)
    r = _run(["--engine", video_onnx_path, "--input", clip, "--horizon", 100, "--out", tmp_path / "o.npy", "--quiet"],
             env=env)
    _assert_one_error(r, r"--horizon 100 needs .* \(14 KiB per frame ahead\), .* use --horizon 73 or less")
    from gmg_deploy.runtime.buffers import check_horizon_budget

    monkeypatch.setenv("GMG_MEMORY_BUDGET_MB", "1")  # the boundary (a run at 512 takes 512 model steps a frame)
    cpu = torch.device("cpu")
    assert check_horizon_budget(512, "--horizon", frame_shape=(1, 16, 16), streams=1, device=cpu) == 512
    with pytest.raises(InputError, match="use --horizon 512 or less"):
        check_horizon_budget(513, "--horizon", frame_shape=(1, 16, 16), streams=1, device=cpu)
    frames = np.random.default_rng(0).random((3, 5, 1, 16, 16), dtype=np.float32)
    np.save(tmp_path / "f.npy", frames)
    r = _run(["--engine", video_onnx_path, "--input", tmp_path / "f.npy", "--out", tmp_path / "p.npy", "--pre", 3,
              "--aft", 1000000], env=env)
    _assert_one_error(r, r"--aft 1000000 needs .* use --aft 204 or less")  # 1 MiB / (2 + 3 sequences) KiB
    assert not (tmp_path / "p.npy").exists()


def test_threads_over_four_per_cpu_refused(tmp_path, video_onnx_path, clip):
    top = 4 * cpu_count()
    r = _run(["--engine", video_onnx_path, "--input", clip, "--threads", 100000, "--quiet"])
    _assert_one_error(r, rf"--threads 100000 is more than 4x the {cpu_count()} CPU\(s\) here; give at most {top}")
    from gmg_deploy.cli.compare_cmd import main as compare_main

    np.save(tmp_path / "d.npy", np.zeros((1, 8, 1, 16, 16), np.float32))
    r = CliRunner().invoke(compare_main, [str(video_onnx_path), str(video_onnx_path), "--data",
                                          str(tmp_path / "d.npy"), "--threads", str(top + 1)])
    _assert_one_error(r, rf"--threads {top + 1} is more than 4x")
    assert check_threads(top) == top and check_threads(0) == 0 and check_threads(None) is None


# ---------------------------------------------------------------- 5, 6: PNG frames: sizes from the header
def test_png_bomb_and_huge_frames_refused_before_decoding(tmp_path, video_onnx_path, monkeypatch):
    from PIL import Image

    bomb = tmp_path / "bomb"
    bomb.mkdir()
    Image.new("1", (30000, 30000)).save(bomb / "f0.png", optimize=True)  # ~110 KB on disk, 900 Mpx
    assert (bomb / "f0.png").stat().st_size < 200_000
    p = subprocess.run(INFER + ["--engine", str(video_onnx_path), "--input", str(bomb), "--out",
                                str(tmp_path / "p.npy")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        "error: f0.png is 30000x30000; the model takes 16x16 frames - resize the PNGs"], p.stderr
    # without a model's size (the API): the memory budget, from the headers; no Pillow warning either
    big = tmp_path / "big"
    big.mkdir()
    for i in range(2):
        Image.new("L", (12000, 12000)).save(big / f"f{i}.png")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setenv("GMG_MEMORY_BUDGET_MB", "100")
        with pytest.raises(InputError, match=r"2 PNG frames of 12000x12000 need 2197 MiB once decoded, over the memory "
                                             r"budget of 100 MiB"):
            load_frames(big)
        with pytest.raises(InputError, match="f0.png is 12000x12000; the model takes 16x16"):
            load_frames(big, (1, 16, 16))
    (big / "f1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="f1.png is not a readable PNG image"):
        load_frames(big)


# ---------------------------------------------------------------- 7: a huge .npy under ulimit -v, memory-mapped
def test_huge_npy_under_ulimit_is_one_line(tmp_path, video_onnx_path):
    big = tmp_path / "big.npy"
    m = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(100_000, 20, 1, 16, 16))  # 2 GB, sparse
    del m
    assert big.stat().st_size > 2_000_000_000 and os.stat(big).st_blocks * 512 < 10_000_000
    lim = 1500 * 2**20  # address space: enough for Python + torch + ORT, not for the file

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    p = subprocess.run(INFER + ["--engine", str(video_onnx_path), "--input", str(big), "--out", str(tmp_path / "p.npy")],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.splitlines() == [f"error: {big} (1953 MiB) does not fit in this process's memory; give fewer "
                                     "sequences or raise the memory limit (ulimit -v)"], p.stderr[-2000:]
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "p.npy").exists()


def test_float32_npy_is_memory_mapped_and_uint8_converted(tmp_path, monkeypatch):
    a = np.random.default_rng(1).random((2, 3, 1, 4, 4), dtype=np.float32)
    np.save(tmp_path / "a.npy", a)
    got = load_frames(tmp_path / "a.npy", (1, 4, 4))
    assert isinstance(got, np.memmap) and not got.flags.writeable
    np.testing.assert_array_equal(got, a)
    u = (a * 255).astype(np.uint8)
    np.save(tmp_path / "u.npy", u)
    np.testing.assert_allclose(load_frames(tmp_path / "u.npy", (1, 4, 4)), u / np.float32(255), rtol=1e-6)
    monkeypatch.setenv("GMG_MEMORY_BUDGET_MB", "0.0001")
    with pytest.raises(InputError, match="needs 0 MiB as float32 frames, over the memory budget"):
        load_frames(tmp_path / "u.npy", (1, 4, 4))


# ---------------------------------------------------------------- 8: a truncated .mkv
def test_truncated_mkv_is_partial_exit_2(tmp_path, video_onnx_path):
    full = encode_clip(tmp_path / "full.mkv", demo_frames(60, 16, 16, False), fps=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "p.npy"
    r = _run(["--engine", video_onnx_path, "--input", cut, "--out", out, "--quiet", "--horizon", 2, "--json"])
    _assert_one_error(r, r"input .*cut.mkv ended after \d+ frame\(s\), .* of the 6.00 s its header announces "
                         r"\(the file is truncated or damaged\)")
    rep = json.loads(r.stdout)
    assert rep["partial"] and 0 < rep["frames"] < 60 and np.load(out).shape[0] == rep["frames"]
    assert f"partial: a source failed; the outputs hold the {rep['frames']} frame(s) processed" in r.output
    r = _run(["--engine", video_onnx_path, "--input", full, "--out", tmp_path / "f.npy", "--quiet", "--horizon", 2])
    assert r.exit_code == 0 and np.load(tmp_path / "f.npy").shape[0] == 60, r.output


# ---------------------------------------------------------------- 9: SIGTERM keeps the processed part
def test_sigterm_keeps_outputs_exit_143(tmp_path, video_onnx_path):
    clip = encode_clip(tmp_path / "long.mkv", demo_frames(600, 16, 16, False), fps=30)  # 20 s at --realtime pace
    out, vid = tmp_path / "t.npy", tmp_path / "t.mp4"
    p = subprocess.Popen(INFER + ["--engine", str(video_onnx_path), "--input", str(clip), "--realtime", "--horizon",
                                  "2", "--out", str(out), "--video-out", str(vid), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = threading.Event()
    err: list[str] = []

    def read_stderr():
        buf = ""
        for ch in iter(lambda: p.stderr.read(1), ""):
            err.append(ch)
            buf = (buf + ch)[-200:]
            m = re.findall(r"frames (\d+) ", buf)
            if m and int(m[-1]) >= 5:  # the progress line says frames are being processed
                seen.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert seen.wait(120), "".join(err)
        p.send_signal(signal.SIGTERM)
        stdout = p.stdout.read()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(10)
    text = "".join(err)
    assert p.returncode == 143, text
    assert text.rstrip("\n").splitlines()[-1] == "error: terminated" and "Traceback" not in text
    rep = json.loads(stdout)
    assert rep["interrupted"] and rep["partial"] and 5 <= rep["frames"] < 600
    assert "partial: terminated" in text
    assert np.load(out).shape == (rep["frames"], 2, 1, 16, 16)
    with av.open(str(vid)) as c:
        assert sum(1 for _ in c.decode(video=0)) == rep["video_frames"] > 0
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- 10: the engine fails mid-run
def _failing_graph(src: Path, dst: Path, threshold: float) -> Path:
    """The step graph with a data-dependent Reshape on its frame output: it runs while every pixel of the
    (normalised) input frame is <= ``threshold`` and fails inside ONNX Runtime once one is above."""
    m = onnx.load(str(src))
    g = m.graph
    out = g.output[0].name
    for n in g.node:
        n.output[:] = [f"{out}_raw" if o == out else o for o in n.output]
    g.initializer.extend([numpy_helper.from_array(np.array(threshold, np.float32), "fail_thr"),
                          numpy_helper.from_array(np.zeros(3, np.int64), "fail_zeros")])
    g.node.extend([
        helper.make_node("ReduceMax", ["frame"], ["fail_max"], keepdims=0),
        helper.make_node("Greater", ["fail_max", "fail_thr"], ["fail_gt"]),
        helper.make_node("Cast", ["fail_gt"], ["fail_one"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["fail_one", "fail_axes"], ["fail_one1"]),
        helper.make_node("Concat", ["fail_zeros", "fail_one1"], ["fail_pad"], axis=0),
        helper.make_node("Shape", [f"{out}_raw"], ["fail_shape"]),
        helper.make_node("Add", ["fail_shape", "fail_pad"], ["fail_shape2"]),
        helper.make_node("Reshape", [f"{out}_raw", "fail_shape2"], [out]),
    ])
    g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "fail_axes"))
    onnx.save(m, str(dst))
    return dst


def test_engine_failing_mid_run_keeps_outputs_and_error_on_its_own_line(tmp_path, video_onnx_path):
    frames = demo_frames(20, 16, 16, False)
    frames[:8], frames[8:] = 0, 255  # normalised (x - 0.1) / 0.5: -0.2, then 1.8 from frame 9 on
    clip = encode_clip(tmp_path / "c.mkv", frames, fps=10)
    bad = _failing_graph(video_onnx_path, tmp_path / "fails.onnx", 1.5)
    out, vid = tmp_path / "p.npy", tmp_path / "v.mp4"
    r = _run(["--engine", bad, "--input", clip, "--horizon", 1, "--out", out, "--video-out", vid, "--json"])
    assert r.exit_code == 2, r.output
    rep = json.loads(r.stdout)
    assert rep["partial"] and rep["frames"] == 8 and "engine failed at step 9" in rep["engine_error"]
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and errs[0].startswith("error: the onnxruntime engine failed at step 9 ("), r.stderr
    assert "dropped 0error" not in r.stderr and "\nerror: " in r.stderr  # not glued to the \r progress line
    assert "partial: the engine failed; the outputs hold the 8 frame(s) processed" in r.stderr
    assert np.load(out).shape == (8, 1, 1, 16, 16)
    with av.open(str(vid)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- 17: NaN weights on the video path
def test_nan_weight_refused_on_the_video_path(tmp_path, video_onnx_path, clip):
    m = onnx.load(str(video_onnx_path))
    t = next(t for t in m.graph.initializer if numpy_helper.to_array(t).size > 10)
    a = numpy_helper.to_array(t).copy()
    a.flat[0] = np.nan
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(tmp_path / "nan.onnx"))
    out, vid = tmp_path / "p.npy", tmp_path / "v.mp4"
    r = _run(["--engine", tmp_path / "nan.onnx", "--input", clip, "--out", out, "--video-out", vid, "--quiet"])
    _assert_one_error(r, rf"nan.onnx: weight {re.escape(t.name)} holds 1 NaN or infinite value\(s\)")
    assert not out.exists() and not vid.exists() and not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- 19: an output that is an input
def test_output_that_is_an_input_refused_everywhere(tmp_path, video_onnx_path, clip):
    import shutil

    c = shutil.copy(clip, tmp_path / "in.mkv")
    before = Path(c).read_bytes()
    r = _run(["--engine", video_onnx_path, "--input", c, "--video-out", c, "--force", "--quiet"])
    _assert_one_error(r, r"--video-out .*in.mkv is the input --input .*in.mkv; write the output to another file")
    os.symlink(c, tmp_path / "link.mkv")
    r = _run(["--engine", video_onnx_path, "--input", c, "--video-out", tmp_path / "link.mkv", "--force", "--quiet"])
    _assert_one_error(r, r"--video-out .*link.mkv is the input")
    assert Path(c).read_bytes() == before
    frames = np.random.default_rng(0).random((1, 5, 1, 16, 16), dtype=np.float32)
    np.save(tmp_path / "f.npy", frames)
    r = _run(["--engine", video_onnx_path, "--input", tmp_path / "f.npy", "--out", tmp_path / "f.npy", "--force",
              "--pre", 3, "--aft", 2])
    _assert_one_error(r, r"--out .*f.npy is the input --input")
    r = _run(["--engine", video_onnx_path, "--input", tmp_path / "f.npy", "--out", video_onnx_path, "--force",
              "--pre", 3, "--aft", 2])
    _assert_one_error(r, r"--out .*gmg_tiny.onnx is the input --engine")
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), frames)
    from gmg_deploy.cli.calibrate_cmd import main as calibrate_main
    from gmg_deploy.cli.export_cmd import main as export_main

    r = CliRunner().invoke(calibrate_main, ["--onnx", str(video_onnx_path), "--data", str(tmp_path / "f.npy"), "-o",
                                            str(tmp_path / "f.npy"), "--force"])
    _assert_one_error(r, r"-o/--output .*f.npy is the input --data")
    ck = tmp_path / "m.ckpt"
    ck.write_bytes(b"x")
    r = CliRunner().invoke(export_main, ["--ckpt", str(ck), "-o", str(ck), "--force"])
    _assert_one_error(r, r"-o/--output .*m.ckpt is the input --ckpt")
    assert ck.read_bytes() == b"x"
    with pytest.raises(OutputError, match="is the input --input"):  # a file inside an input folder of frames
        check_not_input(tmp_path / "f.npy", {"--input": tmp_path})
    check_not_input(tmp_path / "new.npy", {"--input": tmp_path / "f.npy", "--url": "http://127.0.0.1:1/x"})


def test_array_run_keeps_the_finished_sequences_when_the_engine_fails(tmp_path, video_onnx_path):
    """The array path too: an engine that fails after some sequences (e.g. no Triton server left) keeps the
    forecasts of the finished ones in --out, says `partial`, and ends in one error line, exit 2."""
    bad = _failing_graph(video_onnx_path, tmp_path / "fails.onnx", 1.5)
    data = np.zeros((3, 8, 1, 16, 16), np.float32)
    data[2] = 1.8  # the third sequence makes the engine fail
    np.save(tmp_path / "d.npy", data)
    out = tmp_path / "p.npy"
    r = _run(["--engine", bad, "--input", tmp_path / "d.npy", "--out", out, "--batch-size", 1])
    assert r.exit_code == 2, r.output
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and "engine failed" in errs[0], r.stderr
    assert "partial: the engine failed;" in r.stderr and "holds the 2 sequence(s)" in r.stderr
    assert np.load(out).shape == (2, 4, 1, 16, 16)
    assert not list(tmp_path.glob(".*.tmp"))
