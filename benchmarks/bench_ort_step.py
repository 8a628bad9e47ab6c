"""ONNX Runtime CPU step latency vs the eager PyTorch reference-style step (Moving MNIST config).

Prints one table: per batch size, eager step (warp="gather", conv_g NOT folded) and the exported ORT step
(gridsample warp, conv_g folded, graph optimisation ALL, intra-op threads = cores), with achieved GFLOP/s:
each side with the FLOPs it really performs (eager, conv_g unfolded: ``torch.utils.flop_counter``; ORT:
the folded graph's Conv/MatMul/Gemm FLOPs, 15.735 GFLOP/step at B=1), and "% of peak" against the FP32
peak of an FMA-bound C kernel (``benchmarks/hw_peak.py``; a GEMM-based "peak" can be beaten by the run it
is meant to bound). Random weights. Not a test.

    python benchmarks/bench_ort_step.py            # default repetitions
    python benchmarks/bench_ort_step.py --quick    # a short smoke run
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def best_and_median(fn, reps: int, warmup: int = 1) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def gemm_peak(threads: int, reps: int, n: int = 2048) -> float:
    """Best fp32 GEMM rate of ``torch.mm`` and NumPy ``@`` (n x n), GFLOP/s."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best_t, _ = best_and_median(lambda: torch.mm(a, b), reps, warmup=2)
    an, bn = a.numpy(), b.numpy()
    best_n, _ = best_and_median(lambda: an @ bn, reps, warmup=2)
    return 2 * n**3 / min(best_t, best_n) / 1e9


def step_flops(model, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    frame = torch.zeros(batch, *model.config.frame_shape)
    state = model.init_state(batch)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.step(frame, state)
    return float(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions, batch 1 only")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per measurement (best and median)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (ORT and torch)")
    args = ap.parse_args()
    reps = 2 if args.quick else args.reps
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]

    from gmg_deploy.export import export_model
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch="gmg", in_shape=[20, 1, 64, 64], pre_seq_length=10, aft_seq_length=10,
                      num_hidden=(128,) * 4, att_hidden=32, filter_size=5, patch_size=4)
    eager = build_model(cfg, warp="gather")  # reference style: gather warp, conv_g unfolded
    flops = {b: step_flops(eager, b) for b in batches}
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import hw_peak
    from bench_precision import graph_flops

    peak = hw_peak.fma_peak(args.threads) or gemm_peak(args.threads, max(reps, 3))
    print(f"CPU: {hw_peak.describe()}")

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "step.onnx"
        gs_model = build_model(cfg, warp="gridsample")  # same weights, the deployed form
        gs_model.load_state_dict(eager.state_dict())
        t0 = time.perf_counter()
        export_model(gs_model, path)
        export_s = time.perf_counter() - t0
        sess = make_session(path, threads=args.threads)

        torch.set_num_threads(args.threads)
        rows = []
        for b in batches:
            frame = torch.rand(b, *cfg.frame_shape)
            state = eager.init_state(b)
            with torch.no_grad():
                e_best, e_med = best_and_median(lambda: eager.step(frame, state), reps)
            feeds = {"frame": frame.numpy(), **{"state_in." + k: v.numpy() for k, v in state.items()}}
            o_best, o_med = best_and_median(lambda: sess.run(None, feeds), reps)
            import onnx

            rows.append((b, flops[b], graph_flops(onnx.load(str(path)), feeds), e_best, e_med, o_best, o_med))

    print(f"Moving MNIST GMG step, {args.threads} threads, reps={reps} (best / median ms); "
          f"FP32 FMA peak {peak:.1f} GFLOP/s (FMA-bound C kernel, {args.threads} threads); step export {export_s:.1f} s")
    print(f"{'B':>3} {'eager GFLOP':>11} {'eager ms':>17} {'eager GF/s':>10} {'ORT GFLOP':>9} {'ORT ms':>17} "
          f"{'ORT GF/s':>9} {'ORT/eager':>9} {'ORT %peak':>9}")
    for b, f, fo, eb, em, ob, om in rows:
        print(f"{b:>3} {f / 1e9:>11.3f} {eb * 1e3:>8.1f}/{em * 1e3:<8.1f} {f / eb / 1e9:>10.1f} {fo / 1e9:>9.3f} "
              f"{ob * 1e3:>8.1f}/{om * 1e3:<8.1f} {fo / ob / 1e9:>9.1f} {eb / ob:>8.2f}x "
              f"{100 * fo / ob / 1e9 / peak:>8.0f}%")
    np.set_printoptions()


if __name__ == "__main__":
    main()
