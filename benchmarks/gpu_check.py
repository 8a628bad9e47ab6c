"""One GPU check: torch on CUDA (and TensorRT when it imports) against the CPU ONNX Runtime FP32 rollout.

For a machine with a CUDA GPU, torch and ONNX Runtime (CPU is enough); TensorRT is optional. Prints one table
and exits 0 when every check passes, 1 when one fails, 2 (one line) without CUDA. Runs in well under 5 minutes
(``--budget-s``: parts that would start after it are reported as skipped).

    python benchmarks/gpu_check.py                # everything this machine can run
    python benchmarks/gpu_check.py --dry-run      # CPU only: the plan and the ORT reference, no GPU needed

Checks:

* **accuracy** (the shipped demo model on its held-out test sequences): the torch backend on CUDA through
  :class:`~gmg_deploy.runtime.Forecaster` - FP32 eager, FP32 CUDA graph, FP16 (autocast, eager) - against
  ONNX Runtime CPU's FP32 rollout of the exported step graph (max and mean |diff| of all forecast frames);
* **latency** (Moving MNIST config, random weights): eager vs CUDA-graph step time, device-resident frame
  (CUDA events) and NumPy in/out (wall clock);
* **copies**: ``torch.profiler`` memcpy count per NumPy-in/NumPy-out step: exactly 1 HtoD (the frame) and
  1 DtoH (the prediction), the state stays on the device;
* **TensorRT** (when ``tensorrt`` imports): engines built with ``gmg_deploy.trt.trt_engine.build_engine``
  from the demo's FP32 and FP16 step graphs (both warp forms for FP16: pytorch/TensorRT#4074), run through
  the TensorRT backend against the same ORT FP32 rollout, plus the engine's step time, and the known
  pitfalls (``gmg_deploy.trt.pitfalls``) for each graph.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

#: max |diff| against the ORT FP32 rollout allowed per precision (demo frames are in [0, 1]).
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}
#: A step's expected memcpy count with NumPy in and out.
EXPECTED_COPIES = {"HtoD": 1.0, "DtoH": 1.0}


@dataclass
class Row:
    """One line of the table: what ran, its numbers, and whether its check passed (None: informational)."""

    part: str
    what: str
    numbers: dict[str, Any] = field(default_factory=dict)
    ok: bool | None = None
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=8, help="demo test sequences for the accuracy checks")
    ap.add_argument("--batch", type=int, default=1, help="batch of the latency and copy checks")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per latency measurement")
    ap.add_argument("--arch", default="gmg", choices=["gmg", "motionrnn"], help="latency model (Moving MNIST config)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="start no new part after this many seconds")
    ap.add_argument("--no-trt", action="store_true", help="skip the TensorRT parts even when tensorrt imports")
    ap.add_argument("--dry-run", action="store_true", help="CPU only: print the plan and run the ORT reference")
    args = ap.parse_args(argv)
    for name in ("sequences", "batch", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}={getattr(args, name)} must be >= 1")
    if args.budget_s <= 0:
        ap.error(f"--budget-s={args.budget_s} must be > 0")
    return args


def plan(has_cuda: bool, has_trt: bool) -> list[str]:
    """The parts that will run, in order."""
    parts = ["reference: ORT CPU FP32 rollout (demo)"]
    if has_cuda:
        parts += ["accuracy: torch CUDA fp32 eager", "accuracy: torch CUDA fp32 cuda_graph",
                  "accuracy: torch CUDA fp16 autocast", "latency: eager", "latency: cuda_graph",
                  "copies: eager", "copies: cuda_graph"]
    if has_cuda and has_trt:
        parts += ["tensorrt: fp32 gridsample", "tensorrt: fp16 gridsample", "tensorrt: fp16 gather"]
    return parts


def count_memcpy(events: Iterable[Any], steps: int) -> dict[str, float]:
    """Per-step count of CUDA memcpy events by kind (``HtoD``, ``DtoH``, ``DtoD``) from profiler events
    (objects with ``name`` and ``device_type``; only CUDA-side ``Memcpy ...`` events count)."""
    counts = {"HtoD": 0, "DtoH": 0, "DtoD": 0}
    for ev in events:
        if "CUDA" not in str(getattr(ev, "device_type", "")) or "Memcpy" not in ev.name:
            continue
        for kind in counts:
            if kind in ev.name:
                counts[kind] += 1
    return {k: v / steps for k, v in counts.items()}


def copies_ok(counts: dict[str, float]) -> bool:
    return all(counts.get(k) == v for k, v in EXPECTED_COPIES.items())


def diff_stats(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    """max and mean |got - want| (float32); shapes must match."""
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} vs reference {want.shape}")
    d = np.abs(np.asarray(got, np.float32) - np.asarray(want, np.float32))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}


def accuracy_row(part: str, what: str, precision: str, got: np.ndarray, want: np.ndarray) -> Row:
    s = diff_stats(got, want)
    return Row(part, what, s, s["max_abs"] <= TOLERANCE[precision], f"tol {TOLERANCE[precision]:g}")


def format_table(rows: list[Row]) -> str:
    lines = [f"{'part':<10} {'what':<34} {'result':<6} numbers"]
    for r in rows:
        res = {True: "ok", False: "FAIL", None: "-"}[r.ok]
        nums = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.numbers.items())
        lines.append(f"{r.part:<10} {r.what:<34} {res:<6} {nums}{'  (' + r.note + ')' if r.note else ''}")
    return "\n".join(lines)


def verdict(rows: list[Row]) -> int:
    return 1 if any(r.ok is False for r in rows) else 0


def tensorrt_importable() -> str | None:
    from gmg_deploy.trt.trt_import import tensorrt_version

    return tensorrt_version()


# ----------------------------------------------------------------------------- parts (CPU: the reference)
def demo_reference(n: int) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any], Any]:
    """(demo model, test frames, ORT CPU FP32 forecast (N, aft, C, H, W), step metadata, step proto)."""
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.evaluate.rollout import rollout
    from gmg_deploy.export.api import build_proto
    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    model = load_checkpoint(demo_checkpoint_path())
    frames = demo_dataset("test", n=n)
    proto = build_proto(model)
    meta = metadata_from_proto(proto)
    return model, frames, rollout(make_session(proto, threads=None), meta, frames), meta, proto


# ----------------------------------------------------------------------------- parts (CUDA)
def forecaster_forecast(fc: Any, frames: np.ndarray, pre: int, aft: int, autocast: bool = False) -> np.ndarray:
    """Observe ``frames[:, :pre]``, then forecast ``aft`` frames (the first is the last observe's prediction)."""
    import contextlib

    import torch

    ctx = torch.autocast("cuda", dtype=torch.float16) if autocast else contextlib.nullcontext()
    with ctx:
        fc.observe(frames[:, :pre])
        return fc.forecast(aft)


def torch_accuracy(model: Any, frames: np.ndarray, want: np.ndarray, meta: dict[str, Any]) -> list[Row]:
    import copy

    from gmg_deploy.runtime import Forecaster

    pre, aft = meta["config"]["pre_seq_length"], meta["config"]["aft_seq_length"]
    rows = []
    for what, precision, kw, autocast in (("torch CUDA fp32 eager", "fp32", {}, False),
                                          ("torch CUDA fp32 cuda_graph", "fp32", {"cuda_graph": True}, False),
                                          ("torch CUDA fp16 autocast (eager)", "fp16", {}, True)):
        fc = Forecaster.from_model(copy.deepcopy(model), device="cuda", batch_size=frames.shape[0], **kw)
        rows.append(accuracy_row("accuracy", what, precision, forecaster_forecast(fc, frames, pre, aft, autocast), want))
        fc.close()
    return rows


def mmnist_config(arch: str) -> Any:
    from gmg_deploy.model import ModelConfig

    return ModelConfig(arch=arch, in_shape=(20, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                       num_hidden=(128, 128, 128, 128), att_hidden=32, filter_size=5, patch_size=4)


def device_ms_per_step(fc: Any, frame_dev: Any, steps: int) -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fc.observe(frame_dev, return_device=True)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def host_ms_per_step(fc: Any, frame_np: np.ndarray, steps: int) -> float:
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fc.observe(frame_np)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def profile_copies(fc: Any, frame_np: np.ndarray, steps: int) -> dict[str, float]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fc.observe(frame_np)
        torch.cuda.synchronize()
    return count_memcpy(prof.events(), steps)


def stepping(fc: Any, B: int, shape: tuple[int, ...], steps: int, label: str) -> list[Row]:
    """Latency and copies of one Forecaster (warmed up, finite check off for the device timing)."""
    import torch

    rng = np.random.default_rng(0)
    frame_np = rng.random((B, *shape), dtype=np.float32)
    frame_dev = torch.from_numpy(frame_np).cuda()
    fc.observe(rng.random((B, 3, *shape), dtype=np.float32))  # warm-up (and CUDA-graph capture)
    fc.check_finite = False  # it would read a flag back from the device per call
    dev_ms = device_ms_per_step(fc, frame_dev, steps)
    fc.check_finite = True
    host_ms = host_ms_per_step(fc, frame_np, steps)
    copies = profile_copies(fc, frame_np, min(steps, 10))
    return [Row("latency", label, {"device_ms": dev_ms, "numpy_io_ms": host_ms}),
            Row("copies", label, copies, copies_ok(copies), "expect 1 HtoD + 1 DtoH per step")]


def torch_latency(args: argparse.Namespace) -> list[Row]:
    import torch

    from gmg_deploy.model import build_model
    from gmg_deploy.runtime import Forecaster

    torch.manual_seed(0)
    cfg = mmnist_config(args.arch)
    weights = build_model(cfg).state_dict()
    rows = []
    for mode in ("eager", "cuda_graph"):
        model = build_model(cfg)
        model.load_state_dict(weights)
        fc = Forecaster.from_model(model, device="cuda", batch_size=args.batch, cuda_graph=(mode == "cuda_graph"))
        rows += stepping(fc, args.batch, cfg.frame_shape, args.steps, f"torch {mode} mmnist B={args.batch}")
        fc.close()
    return rows


def tensorrt_parts(args: argparse.Namespace, model: Any, frames: np.ndarray, want: np.ndarray,
                   meta: dict[str, Any], over: Callable[[], bool]) -> list[Row]:
    """Build demo engines (FP32; FP16 with both warps), run them through the TensorRT backend, list pitfalls."""
    import copy

    import onnx

    from gmg_deploy.trt.pitfalls import pitfalls_for
    from gmg_deploy.trt.profile import batch_range, profile_shapes
    from gmg_deploy.trt.sidecar import build_sidecar, write_sidecar
    from gmg_deploy.trt.trt_engine import build_engine
    from gmg_deploy.export.api import build_proto
    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.export.trt_lint import graph_opset
    from gmg_deploy.io import atomic_write_bytes
    from gmg_deploy.model.checkpoint import load_checkpoint
    from gmg_deploy.precision.api import apply_precision
    from gmg_deploy.runtime import Forecaster

    pre, aft = meta["config"]["pre_seq_length"], meta["config"]["aft_seq_length"]
    n = frames.shape[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for precision, warp in (("fp32", "gridsample"), ("fp16", "gridsample"), ("fp16", "gather")):
            what = f"TensorRT {precision} {warp}"
            if over():
                rows.append(Row("tensorrt", what, note="skipped: --budget-s reached"))
                continue
            m = copy.deepcopy(model) if warp == "gridsample" else load_checkpoint(_demo_ckpt(), warp="gather")
            proto = apply_precision(build_proto(m), precision)
            gmeta = metadata_from_proto(proto)
            onnx_path = Path(d) / f"{precision}_{warp}.onnx"
            onnx.save(proto, onnx_path)
            rng = batch_range(gmeta, 1, n, max(n, 8))
            plan, info = build_engine(onnx_path, profile_shapes(gmeta, rng))
            plan_path = Path(d) / f"{precision}_{warp}.plan"
            atomic_write_bytes(plan_path, plan)
            write_sidecar(plan_path, build_sidecar(
                gmeta, onnx_path=str(onnx_path), trt_version=info["trt_version"], gpu_name=info["gpu_name"],
                compute_capability=info["compute_capability"], batch=rng, io=info["io"], workspace_mib=None,
                build_seconds=info["build_seconds"]))
            fc = Forecaster.open(plan_path, backend="tensorrt", device="cuda", batch_size=n)
            row = accuracy_row("tensorrt", what, precision, forecaster_forecast(fc, frames, pre, aft), want)
            fc.close()
            row.numbers["build_s"] = round(info["build_seconds"], 1)
            found = pitfalls_for(info["trt_version"], gmeta, opset=graph_opset(proto))
            row.note += f"; TensorRT {info['trt_version']}; pitfalls: {', '.join(p.id for p in found) or 'none'}"
            rows.append(row)
            fcb = Forecaster.open(plan_path, backend="tensorrt", device="cuda", batch_size=args.batch)
            rows += [r for r in stepping(fcb, args.batch, tuple(gmeta["config"]["in_shape"][1:]), args.steps,
                                         f"{what} demo B={args.batch}") if r.part == "latency"]
            fcb.close()
    return rows


def _demo_ckpt() -> Path:
    from gmg_deploy.data.demo import demo_checkpoint_path

    return demo_checkpoint_path()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    import torch

    has_cuda = bool(torch.cuda.is_available())
    if not has_cuda and not args.dry_run:
        print("error: gpu_check needs a CUDA GPU (torch.cuda.is_available() is False); run it on the GPU "
              "machine, or pass --dry-run for the CPU part", file=sys.stderr)
        return 2
    trt_version = None if args.no_trt else tensorrt_importable()
    parts = plan(has_cuda and not args.dry_run, trt_version is not None)
    print(f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if has_cuda else 'no'}, "
          f"TensorRT {trt_version or 'not installed'}{' (--no-trt)' if args.no_trt else ''}")
    print("plan: " + "; ".join(parts))
    model, frames, want, meta, _ = demo_reference(args.sequences)
    rows = [Row("reference", "ORT CPU FP32 rollout (demo)", {"sequences": frames.shape[0], "frames": want.shape[1],
                                                             "mean": float(want.mean())})]
    if not args.dry_run:
        over = lambda: time.perf_counter() - t0 > args.budget_s  # noqa: E731
        for name, fn in (("accuracy", lambda: torch_accuracy(model, frames, want, meta)),
                         ("latency", lambda: torch_latency(args))):
            rows += [Row(name, "skipped", note="--budget-s reached")] if over() else fn()
        if trt_version is not None:
            rows += tensorrt_parts(args, model, frames, want, meta, over)
    print(format_table(rows))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return verdict(rows)


if __name__ == "__main__":
    sys.exit(main())
