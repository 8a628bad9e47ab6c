"""A sweep of bad inputs across every gmg-* command (issue 11): each one exits 2 with one line
``error: ...`` naming the problem, leaves no output (or temp) file, and leaves a previous output intact.

Plus the cases that need a real subprocess (Ctrl-C, a real "file too large" write error), file modes
under the umask, a malicious checkpoint that would create a file if it ran, and "a NaN is never a PASS".
"""
from __future__ import annotations

import os
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from conftest import fixture_hparams, fixture_state_dict, write_lightning_ckpt
from precision_helpers import sequences

from gmg_deploy.cli import build_cmd, calibrate_cmd, compare_cmd, demo_cmd, doctor_cmd, export_cmd, infer_cmd

REPO = Path(__file__).resolve().parent.parent
MARKER = "PWNED"


class _RunsCode:
    """Pickles as a call of ``fn(arg)``: what a malicious checkpoint does when unpickled."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.fixture(scope="module")
def ws(tmp_path_factory, gmg_ckpt) -> Path:
    """Input files for the sweep (outputs go to each case's own tmp_path)."""
    from gmg_deploy.precision.ranges import collect_ranges, save_ranges
    from gmg_deploy.export import build_proto, export_model
    from gmg_deploy.model.checkpoint import load_checkpoint, save_lightning_checkpoint
    from gmg_deploy.model.config import ModelConfig
    from gmg_deploy.model.network import RecurrentPredictor

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("bad_inputs")
    write_lightning_ckpt("gmg_tiny", d / "tiny.ckpt")
    model = load_checkpoint(d / "tiny.ckpt")
    export_model(model, d / "step.onnx", graph="step")
    data = sequences(4, 1).astype(np.float32)  # (4, 8, 1, 16, 16), pre 4 + aft 4
    np.save(d / "data.npy", data)
    gather = build_proto(load_checkpoint(d / "tiny.ckpt", warp="gather"), graph="step")
    save_ranges(collect_ranges(gather, data[:2]), d / "ranges_gather.json")

    nan = data.copy()
    nan[1, 2, 0, 3, 3] = np.nan
    np.save(d / "nan.npy", nan)
    inf_truth = data.copy()
    inf_truth[2, 6, 0, 5, 5] = np.inf  # a ground-truth frame (frames 4..7)
    np.save(d / "inf_truth.npy", inf_truth)
    np.save(d / "u8float.npy", np.round(data * 255.0))
    (d / "text.npy").write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")

    sd = fixture_state_dict("gmg_tiny")
    key = sorted(sd)[3]
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    torch.save({"state_dict": {"model." + k: v for k, v in sd.items()},
                "hyper_parameters": fixture_hparams("gmg_tiny")}, d / "nan_weights.ckpt")
    (d / "nan_weights.key").write_text(key)

    proto = onnx.load(d / "step.onnx")
    init = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.name)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] = np.inf
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(proto, d / "nan_init.onnx")
    (d / "nan_init.key").write_text(init.name)

    hp = dict(fixture_hparams("gmg_tiny"), in_shape=[4, 2, 16, 16])
    c2 = RecurrentPredictor(ModelConfig.from_hparams(hp))
    save_lightning_checkpoint(c2, d / "c2.ckpt")
    np.save(d / "nthw.npy", data[:, :, 0])  # (N, T, H, W): one channel

    marker = d / MARKER
    torch.save({"state_dict": sd, "x": _RunsCode(os.system, f"touch {marker}")}, d / "evil_system.ckpt")
    torch.save({"state_dict": sd, "x": _RunsCode(eval, f"open({str(marker)!r}, 'w')")}, d / "evil_eval.ckpt")
    return d


CMDS = {"export": export_cmd.main, "infer": infer_cmd.main, "calibrate": calibrate_cmd.main,
        "compare": compare_cmd.main, "build": build_cmd.main, "demo": demo_cmd.main, "doctor": doctor_cmd.main}

# (id, command, args ({ws}: inputs, {out}: the output path), error regex, previous output?, env)
# "prev": the output exists beforehand (and --force is given where the command has it): it must stay intact.
CASES = [
    # --- issue 11, item 1: batch buffers over the memory budget
    ("infer-batch-over-budget", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/data.npy", "--out", "{out}",
                                          "--batch-size", "4", "--force"],
     r"batch size 4 needs .* of stream buffers .* over the budget of .*use --batch-size \d+ or less", True,
     {"GMG_MEMORY_BUDGET_MB": "0.01"}),
    # --- item 2: malicious checkpoints (nothing runs; the global is named)
    ("export-evil-system", "export", ["--ckpt", "{ws}/evil_system.ckpt", "-o", "{out}", "--force"],
     r"would run code when loaded: its pickle calls the global posix\.system.*--trust-checkpoint", True, None),
    ("export-evil-eval", "export", ["--ckpt", "{ws}/evil_eval.ckpt", "-o", "{out}", "--force"],
     r"would run code when loaded: its pickle calls the global eval\b", True, None),
    ("infer-evil-system", "infer", ["--engine", "{ws}/evil_system.ckpt", "--input", "{ws}/data.npy", "--out", "{out}"],
     r"posix\.system", False, None),
    ("calibrate-evil-system", "calibrate", ["--ckpt", "{ws}/evil_system.ckpt", "--data", "{ws}/data.npy", "-o",
                                            "{out}", "--force"], r"posix\.system", True, None),
    # --- item 4: non-finite data and weights
    ("compare-inf-truth", "compare", ["{ws}/step.onnx", "{ws}/step.onnx", "--data", "{ws}/inf_truth.npy", "--check"],
     r"inf_truth\.npy holds NaN or infinite values \(sequence 2, frame 6\)", None, None),
    ("compare-nan-data", "compare", ["{ws}/step.onnx", "{ws}/step.onnx", "--data", "{ws}/nan.npy"],
     r"nan\.npy holds NaN or infinite values \(sequence 1, frame 2\)", None, None),
    ("calibrate-nan-data", "calibrate", ["--onnx", "{ws}/step.onnx", "--data", "{ws}/nan.npy", "-o", "{out}",
                                         "--force"], r"\(sequence 1, frame 2\)", True, None),
    ("infer-nan-data", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/nan.npy", "--out", "{out}", "--force"],
     r"\(sequence 1, frame 2\)", True, None),
    ("export-nan-weights", "export", ["--ckpt", "{ws}/nan_weights.ckpt", "-o", "{out}", "--force"],
     r"weight {nan_weights_key} holds 1 NaN or infinite value", True, None),
    ("infer-nan-weights", "infer", ["--engine", "{ws}/nan_weights.ckpt", "--input", "{ws}/data.npy", "--out", "{out}"],
     r"weight {nan_weights_key} holds", False, None),
    ("compare-nan-initializer", "compare", ["{ws}/step.onnx", "{ws}/nan_init.onnx", "--data", "{ws}/data.npy"],
     r"nan_init\.onnx: weight {nan_init_key} holds 1 NaN", None, None),
    ("calibrate-nan-initializer", "calibrate", ["--onnx", "{ws}/nan_init.onnx", "--data", "{ws}/data.npy", "-o",
                                                "{out}"], r"weight {nan_init_key} holds", False, None),
    # --- item 6: click's own usage errors, every command
    ("export-output-is-dir", "export", ["--ckpt", "{ws}/tiny.ckpt", "-o", "{ws}"], r"'-o' / '--output'.*is a directory", None,
     None),
    ("infer-batch-size-0", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/data.npy", "--out", "{out}",
                                     "--batch-size", "0"], r"--batch-size.*0 is not in the range x>=1", False, None),
    ("export-unknown-option", "export", ["--bogus"], r"gmg-(export|doctor): No such option '--bogus'.*see gmg-(export|doctor) --help", None, None),
    ("infer-missing-option", "infer", ["--engine", "{ws}/step.onnx"], r"Missing option '--input'", None, None),
    ("calibrate-bad-choice", "calibrate", ["--onnx", "{ws}/step.onnx", "--data", "{ws}/data.npy", "-o", "{out}",
                                           "--method", "magic"], r"'magic' is not one of", False, None),
    ("compare-missing-argument", "compare", ["{ws}/step.onnx"], r"Missing argument 'CANDIDATE'", None, None),
    ("build-not-an-int", "build", ["{ws}/step.onnx", "-o", "{out}", "--min-batch", "two"], r"'two' is not a valid integer",
     False, None),
    ("demo-sequences-0", "demo", ["--out", "{out}", "--sequences", "0"], r"--sequences.*0 is not in the range", False, None),
    ("doctor-unknown-option", "doctor", ["--bogus"], r"gmg-(export|doctor): No such option '--bogus'.*see gmg-(export|doctor) --help", None, None),
    # --- item 7: messages that said the wrong thing
    ("infer-nthw-for-c2", "infer", ["--engine", "{ws}/c2.ckpt", "--input", "{ws}/nthw.npy", "--out", "{out}"],
     r"one channel per frame \(N,T,H,W\), but the model takes C=2 channels", False, None),
    ("infer-text-npy", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/text.npy", "--out", "{out}"],
     r"text\.npy is not a NumPy \.npy/\.npz file \(it holds text\)", False, None),
    ("compare-text-npy", "compare", ["{ws}/step.onnx", "{ws}/step.onnx", "--data", "{ws}/text.npy"],
     r"text\.npy is not a NumPy \.npy/\.npz file \(it holds text\)", None, None),
    ("export-ranges-other-warp", "export", ["--ckpt", "{ws}/tiny.ckpt", "-o", "{out}", "--precision", "int8",
                                            "--calibration", "{ws}/ranges_gather.json", "--force"],
     r"calibrated on a different graph: warp 'gather' there, 'gridsample' here", True, None),
    ("infer-8bit-floats", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/u8float.npy", "--out", "{out}",
                                    "--force"], r"look like 8-bit pixels; scale them to \[0, 1\]", True, None),
    ("calibrate-8bit-floats", "calibrate", ["--onnx", "{ws}/step.onnx", "--data", "{ws}/u8float.npy", "-o", "{out}"],
     r"look like 8-bit pixels", False, None),
    # --- item 8: gmg-calibrate --ckpt takes the checkpoint options (and checks them)
    ("calibrate-bad-in-shape", "calibrate", ["--ckpt", "{ws}/tiny.ckpt", "--in-shape", "4,1,16", "--data",
                                             "{ws}/data.npy", "-o", "{out}"], r"--in-shape '4,1,16' has 3 values", False,
     None),
    ("calibrate-ckpt-options-with-onnx", "calibrate", ["--onnx", "{ws}/step.onnx", "--trust-checkpoint", "--data",
                                                       "{ws}/data.npy", "-o", "{out}"],
     r"describe a checkpoint; use them with --ckpt", False, None),
    # --- cases that already worked (kept so they stay so)
    ("export-missing-ckpt", "export", ["--ckpt", "{ws}/missing.ckpt", "-o", "{out}"], r"missing\.ckpt does not exist",
     False, None),
    ("export-exists-no-force", "export", ["--ckpt", "{ws}/tiny.ckpt", "-o", "{out}"], r"already exists; pass --force",
     True, None),
    ("infer-missing-input", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/none.npy", "--out", "{out}"],
     r"none\.npy does not exist", False, None),
    ("infer-short-metrics", "infer", ["--engine", "{ws}/step.onnx", "--input", "{ws}/data.npy", "--out", "{out}",
                                      "--pre", "6", "--metrics", "--force"], r"--metrics needs ground truth", True, None),
    ("calibrate-unknown-keep-float", "calibrate", ["--onnx", "{ws}/step.onnx", "--data", "{ws}/data.npy", "-o", "{out}",
                                                   "--keep-float", "nope", "--force"],
     r"--keep-float names 'nope'", True, None),
    ("compare-not-onnx", "compare", ["{ws}/data.npy", "{ws}/step.onnx", "--data", "{ws}/data.npy"],
     r"data\.npy is not a readable ONNX model", None, None),
    ("build-without-tensorrt", "build", ["{ws}/step.onnx", "-o", "{out}", "--force"], r"tensorrt|TensorRT", True, None),
]


def _fill(a: str, ws: Path, out: Path) -> str:
    return a.replace("{ws}", str(ws)).replace("{out}", str(out))


def _check_one_error_line(stderr: str, pattern: str) -> str:
    assert "Traceback" not in stderr and "Usage:" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    assert stderr.rstrip("\n").splitlines()[-1] == errors[0], stderr  # the error is the last thing said
    import re

    assert re.search(pattern, errors[0]), (pattern, errors[0])
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, ws, tmp_path):
    name, cmd, args, pattern, prev, env = case
    out = tmp_path / ("out.d" if cmd == "demo" else "out.bin")
    if prev:
        out.write_bytes(b"previous output")
    pattern = (pattern.replace("{nan_weights_key}", (ws / "nan_weights.key").read_text().replace(".", r"\."))
               .replace("{nan_init_key}", (ws / "nan_init.key").read_text().replace(".", r"\.")))
    r = CliRunner().invoke(CMDS[cmd], [_fill(a, ws, out) for a in args], env=env)
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr, r.exception)
    _check_one_error_line(r.stderr, pattern)
    assert r.stdout == ""
    left = sorted(p.name for p in tmp_path.iterdir())
    if prev:
        assert left == ["out.bin"] and out.read_bytes() == b"previous output"
    else:
        assert left == []  # no output, no temp file
    assert not (ws / MARKER).exists()  # no checkpoint code ran


def test_malicious_checkpoint_runs_nothing_even_with_the_api(ws):
    from gmg_deploy.errors import CheckpointError
    from gmg_deploy.model.checkpoint import load_checkpoint

    for f in ("evil_system.ckpt", "evil_eval.ckpt"):
        with pytest.raises(CheckpointError, match="would run code"):
            load_checkpoint(ws / f)
    assert not (ws / MARKER).exists()
    # the marker really is created when the pickle runs: the test checks something real
    probe = ws / "probe.pkl"
    probe.write_bytes(pickle.dumps(_RunsCode(os.system, f"touch {ws / 'probe_ran'}")))
    pickle.loads(probe.read_bytes())
    assert (ws / "probe_ran").exists()


def test_outputs_respect_the_umask(ws, tmp_path):
    old = os.umask(0o027)
    try:
        r = CliRunner().invoke(infer_cmd.main, ["--engine", str(ws / "step.onnx"), "--input", str(ws / "data.npy"),
                                                "--out", str(tmp_path / "p.npy")])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "p.npy").stat().st_mode & 0o777 == 0o640
        os.umask(0o002)
        r = CliRunner().invoke(infer_cmd.main, ["--engine", str(ws / "step.onnx"), "--input", str(ws / "data.npy"),
                                                "--out", str(tmp_path / "q.npy")])
        assert (tmp_path / "q.npy").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_batch_size_never_exceeds_the_streams(ws, tmp_path):
    """--batch-size 100000 on 4 sequences: 4 slots, not 100000 (issue: 22.5 GB and the OOM killer)."""
    r = CliRunner().invoke(infer_cmd.main, ["--engine", str(ws / "step.onnx"), "--input", str(ws / "data.npy"),
                                            "--out", str(tmp_path / "p.npy"), "--batch-size", "100000", "--json"])
    assert r.exit_code == 0, r.output
    import json

    s = json.loads(r.stdout)
    assert s["batch_size"] == 4 and s["shape"] == [4, 4, 1, 16, 16]
    ref = CliRunner().invoke(infer_cmd.main, ["--engine", str(ws / "step.onnx"), "--input", str(ws / "data.npy"),
                                              "--out", str(tmp_path / "q.npy"), "--batch-size", "1"])
    assert ref.exit_code == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), np.load(tmp_path / "q.npy"), atol=1e-5)


def test_buffer_budget_refuses_before_allocating(ws):
    from gmg_deploy.errors import InputError
    from gmg_deploy.runtime.forecaster import Forecaster

    with pytest.raises(InputError, match=r"batch size 100000000 needs [\d.]+ GiB of stream buffers"):
        Forecaster.open(ws / "step.onnx", batch_size=10**8)  # would be hundreds of GiB


def test_clip_option(ws, tmp_path):
    import json

    args = ["--engine", str(ws / "step.onnx"), "--input", str(ws / "data.npy"), "--json"]
    raw = json.loads(CliRunner().invoke(infer_cmd.main, args + ["--out", str(tmp_path / "a.npy")]).stdout)
    clipped = json.loads(CliRunner().invoke(infer_cmd.main, args + ["--out", str(tmp_path / "b.npy"), "--clip"]).stdout)
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert raw["clipped"] is False and raw["range"] == [float(a.min()), float(a.max())]
    assert clipped["clipped"] is True and b.min() >= 0.0 and b.max() <= 1.0
    np.testing.assert_array_equal(b, np.clip(a, 0.0, 1.0))


def test_nan_is_never_a_pass(ws):
    from gmg_deploy.evaluate.accuracy import compare_graphs

    ref = onnx.load(ws / "step.onnx")
    bad = onnx.load(ws / "nan_init.onnx")  # every forecast is non-finite
    c = compare_graphs(ref, bad, np.load(ws / "data.npy"))
    assert c.ssim_drop is not None and not np.isfinite(c.ssim_drop).all()
    assert c.passed is False and "FAIL" in c.table()


def test_calibrate_ckpt_takes_checkpoint_options(ws, tmp_path):
    """A checkpoint that needs unpickling of a Namespace: only with --trust-checkpoint (formerly only via --onnx)."""
    import argparse

    obj = {"state_dict": {"model." + k: v for k, v in fixture_state_dict("gmg_tiny").items()},
           "hyper_parameters": argparse.Namespace(**fixture_hparams("gmg_tiny"))}
    torch.save(obj, tmp_path / "ns.ckpt")
    args = ["--ckpt", str(tmp_path / "ns.ckpt"), "--data", str(ws / "data.npy"), "--max-sequences", "1"]
    r = CliRunner().invoke(calibrate_cmd.main, args + ["-o", str(tmp_path / "a.json")])
    assert r.exit_code == 2 and "argparse.Namespace" in r.stderr
    r = CliRunner().invoke(calibrate_cmd.main, args + ["-o", str(tmp_path / "b.json"), "--trust-checkpoint",
                                                       "--in-shape", "4,1,16,16"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b.json").stat().st_size > 0


def test_compare_batch_size_has_help():
    r = CliRunner().invoke(compare_cmd.main, ["--help"])
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if "--batch-size" in ln)
    assert "Sequences per ONNX Runtime call" in r.output.split("--batch-size", 1)[1].split("--no-emulate")[0], line


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("cmd", ["export", "infer"])
def test_write_error_is_one_line_and_leaves_nothing(ws, tmp_path, cmd):
    """A real write failure: RLIMIT_FSIZE makes the output's write fail with EFBIG (like a full disk)."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "m.out"
    args = (["--ckpt", str(ws / "tiny.ckpt"), "-o", str(out)] if cmd == "export" else
            ["--engine", str(ws / "step.onnx"), "--input", str(ws / "data.npy"), "--out", str(out)])
    p = subprocess.run([sys.executable, "-m", f"gmg_deploy.cli.{cmd}_cmd", *args], preexec_fn=limit,
                       capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 2, p.stderr
    line = _check_one_error_line(p.stderr, r"cannot write .*m\.out: (File too large|only part of it was written).*free some space")
    assert str(out) in line
    assert list(tmp_path.iterdir()) == []


#: (name, signal, what to wait for before sending it): every moment of a real gmg-export, each reached by
#: watching the process (its installed handlers or what it printed), never by sleeping.
_MOMENTS = [
    ("startup", signal.SIGINT, "handlers"),           # torch/onnx still importing: deferred, then 130
    ("startup-term", signal.SIGTERM, "handlers"),
    ("loading", signal.SIGINT, "loading "),
    ("exporting", signal.SIGINT, "exporting "),
    ("exporting-term", signal.SIGTERM, "exporting "),
    ("written", signal.SIGINT, "wrote "),             # the output is complete: exit 0 (or 130), never -2
    ("written-term", signal.SIGTERM, "wrote "),
]


@pytest.mark.parametrize("name,sig,marker", _MOMENTS, ids=[m[0] for m in _MOMENTS])
def test_ctrl_c_at_any_moment(ws, tmp_path, name, sig, marker):
    """SIGINT/SIGTERM at each moment of a real gmg-export.

    The contract (gmg_deploy.cli.signals): before the work is done, `error: interrupted` exit 130 (SIGTERM:
    `error: terminated`, 143), no traceback, no partial or temporary file; once the output is written, the
    file is complete and the exit status is 0 (or 130/143 if the signal beat the command's return), never a
    death by the signal itself (-2/-15) and never SIGABRT (-6) from a pybind11 extension.
    """
    import onnx

    from signal_helpers import Output, wait_for_handlers

    out = tmp_path / "m.onnx"
    p = subprocess.Popen([sys.executable, "-m", "gmg_deploy.cli.export_cmd", "--ckpt", str(ws / "tiny.ckpt"),
                          "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    o = Output(p)
    try:
        if marker == "handlers":
            assert wait_for_handlers(p), "the command never installed its SIGINT/SIGTERM handlers"
        else:
            assert o.wait_for(lambda t: marker in t["stdout"] + t["stderr"]), (marker, o.text)
        p.send_signal(sig)
        rc, stdout, stderr = o.finish()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "Traceback" not in stderr and "terminate called" not in stderr, stderr
    status, message = (130, "error: interrupted") if sig == signal.SIGINT else (143, "error: terminated")
    if rc == 0 or marker == "wrote ":  # the work was done before the signal was handled
        assert rc in (0, status) and "wrote " in stdout, (name, rc, stderr)
        onnx.load(str(out))  # complete
    else:
        assert rc == status, (name, rc, stderr)
        assert stderr.rstrip("\n").splitlines()[-1] == message, stderr
        assert not out.exists()
    assert [f.name for f in tmp_path.iterdir() if f.name != "m.onnx"] == []  # no temporary file


def test_every_console_script_answers_usage_errors_in_one_line():
    """Each [project.scripts] entry is a OneLineCommand: click's own usage errors become one `error:` line, exit 2."""
    import importlib
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    from gmg_deploy.cli.common import OneLineCommand

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), OneLineCommand), name
    p = subprocess.run([sys.executable, "-m", "gmg_deploy.cli.triton_cmd", "--bogus"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and p.stderr.startswith("error: gmg-triton: ")
