"""Streaming cost per new frame vs recomputing the window, ONNX Runtime on CPU.

Moving MNIST config (in_shape [20,1,64,64], pre 10, aft 10, p=4, N=128x4, A=32, F=5), random weights,
exported as a dynamic-batch step graph (takes ~15-30 s). For each batch size B:

- stream: one ``observe`` (one step on the kept state) per new frame of every stream;
- recompute: what the reference does for each new frame: reset and re-run the ``pre``-frame window
  from zero state (``pre`` steps);
- frames/s: new frames absorbed per second over all B streams (B / stream time).

    python benchmarks/bench_streaming.py [--batches 1,8] [--repeats 3] [--threads 2] [--plain-run]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gmg_deploy.export import export_model
from gmg_deploy.model import ModelConfig, build_model
from gmg_deploy.runtime import Forecaster


def mmnist_config() -> ModelConfig:
    return ModelConfig(arch="gmg", in_shape=(20, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                       num_hidden=(128, 128, 128, 128), att_hidden=32, filter_size=5, patch_size=4)


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench(onnx: Path, B: int, repeats: int, threads: int, io_binding: bool, pre: int) -> dict:
    fc = Forecaster.open(onnx, batch_size=B, threads=threads, io_binding=io_binding)
    rng = np.random.default_rng(0)
    window = rng.random((B, pre, *fc.frame_shape), dtype=np.float32)
    frame = rng.random((B, *fc.frame_shape), dtype=np.float32)
    fc.observe(window[:, :2])  # warm-up
    stream = timed(lambda: fc.observe(frame), repeats)

    def recompute():
        fc.reset()
        fc.observe(window)

    recomp = timed(recompute, max(1, repeats // 2))
    return {"B": B, "io": "IOBinding" if io_binding else "run()", "stream_ms": stream * 1e3,
            "recompute_ms": recomp * 1e3, "speedup": recomp / stream, "fps": B / stream}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plain-run", action="store_true", help="also time session.run() instead of IOBinding (B=1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = mmnist_config()
    with tempfile.TemporaryDirectory() as d:
        onnx = Path(d) / "mmnist_step.onnx"
        t0 = time.perf_counter()
        export_model(build_model(cfg), onnx, graph="step")
        print(f"export: {time.perf_counter() - t0:.1f} s, {onnx.stat().st_size / 1e6:.0f} MB; "
              f"{platform.processor() or platform.machine()}, ORT threads={args.threads}, repeats={args.repeats}")
        rows = [bench(onnx, int(b), args.repeats, args.threads, True, cfg.pre_seq_length)
                for b in args.batches.split(",")]
        if args.plain_run:
            rows.append(bench(onnx, 1, args.repeats, args.threads, False, cfg.pre_seq_length))
    print(f"\n{'B':>3} {'I/O':>9} {'stream ms/frame':>16} {'recompute ms':>13} {'speedup':>8} {'frames/s':>9}")
    for r in rows:
        print(f"{r['B']:>3} {r['io']:>9} {r['stream_ms']:>16.1f} {r['recompute_ms']:>13.1f} "
              f"{r['speedup']:>7.1f}x {r['fps']:>9.2f}")
    print(f"(recompute = reset + {cfg.pre_seq_length}-step window from zero state, per new frame)")


if __name__ == "__main__":
    main()
