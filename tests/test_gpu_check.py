"""benchmarks/gpu_check.py without a GPU: it imports, parses its arguments, fails fast in one line without CUDA,
and its CPU parts (the plan, the ORT reference, memcpy counting, the table) work (--dry-run)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_arguments(gc, capsys):
    a = gc.parse_args([])
    assert (a.sequences, a.batch, a.steps, a.budget_s, a.dry_run, a.no_trt) == (8, 1, 50, 240.0, False, False)
    assert gc.parse_args(["--batch", "4", "--dry-run", "--no-trt"]).batch == 4
    for bad in (["--steps", "0"], ["--budget-s", "0"], ["--arch", "x"], ["--nope"]):
        with pytest.raises(SystemExit) as e:
            gc.parse_args(bad)
        assert e.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_plan(gc):
    assert gc.plan(False, False) == ["reference: ORT CPU FP32 rollout (demo)"]
    cuda = gc.plan(True, False)
    assert "latency: cuda_graph" in cuda and not any(p.startswith("tensorrt") for p in cuda)
    assert gc.plan(True, True)[-3:] == ["tensorrt: fp32 gridsample", "tensorrt: fp16 gridsample",
                                        "tensorrt: fp16 gather"]
    assert gc.plan(False, True) == gc.plan(False, False)  # no TensorRT part without CUDA


def test_memcpy_counting_and_the_copy_check(gc):
    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU
    ev = lambda name, dev=cuda: SimpleNamespace(name=name, device_type=dev)  # noqa: E731
    events = [ev("Memcpy HtoD (Pageable -> Device)"), ev("Memcpy DtoH (Device -> Pageable)"),
              ev("Memcpy HtoD (Pageable -> Device)"), ev("Memcpy DtoH (Device -> Pinned)"),
              ev("Memcpy DtoD (Device -> Device)"), ev("Memcpy HtoD", cpu), ev("aten::copy_"), ev("void conv_kernel")]
    counts = gc.count_memcpy(events, steps=2)
    assert counts == {"HtoD": 1.0, "DtoH": 1.0, "DtoD": 0.5}
    assert gc.copies_ok(counts) and not gc.copies_ok({**counts, "HtoD": 2.0})


def test_diff_rows_table_and_verdict(gc):
    want = np.zeros((2, 3, 1, 4, 4), np.float32)
    ok = gc.accuracy_row("accuracy", "x", "fp32", want + 1e-4, want)
    bad = gc.accuracy_row("accuracy", "y", "fp16", want + 0.1, want)
    assert ok.ok and not bad.ok and bad.numbers["max_abs"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shape"):
        gc.diff_stats(want[:1], want)
    info = gc.Row("latency", "torch eager", {"device_ms": 1.25})
    text = gc.format_table([ok, bad, info])
    assert "FAIL" in text and "device_ms=1.25" in text and len(text.splitlines()) == 4
    assert gc.verdict([ok, info]) == 0 and gc.verdict([ok, bad, info]) == 1


def test_dry_run_runs_the_cpu_reference(gc, capsys):
    assert gc.main(["--dry-run", "--sequences", "2"]) == 0
    out = capsys.readouterr().out
    assert "plan: reference: ORT CPU FP32 rollout (demo)" in out
    assert "reference  ORT CPU FP32 rollout (demo)" in out and "sequences=2" in out and "frames=10" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA failure")
def test_without_cuda_it_fails_fast_in_one_line():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: gpu_check needs a CUDA GPU")
