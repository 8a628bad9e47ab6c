"""ONNX Runtime CPU step latency: FP32 vs INT8 ``--target tensorrt`` vs INT8 ``--target cpu``, interleaved.

Models: the Moving MNIST configuration with random weights (``in_shape [20,1,64,64]``, patch 4, 128x4,
att 32, filter 5) and the shipped demo model. Per batch size the three sessions run in rotation in one
process (round r: fp32, int8-tensorrt, int8-cpu), so load from other processes hits all three alike;
ratios are medians of the per-round ratios. INT8 ranges come from a short rollout calibration (minmax;
latency does not depend on the ranges' values). FLOPs are those the FP32 graph performs (Conv, ConvTranspose,
MatMul, Gemm counted from the shapes ONNX Runtime reports, conv_g folded); "% of peak" is against the FP32
peak measured by ``benchmarks/hw_peak.py``'s FMA-bound kernel on the same number of threads, in this run.

    python benchmarks/bench_precision.py [--threads 2] [--repeats 10] [--batches 1,8] [--models mmnist,demo]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import hw_peak  # noqa: E402

MATMUL_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def graph_flops(proto, feeds) -> float:
    """FLOPs of one step (2 x MACs of Conv/ConvTranspose/MatMul/Gemm), shapes taken from a real ORT run."""
    from gmg_deploy.precision.ranges import _instrument
    from gmg_deploy.evaluate.ort_session import make_session

    nodes = [n for n in proto.graph.node if n.op_type in MATMUL_OPS]
    names = sorted({t for n in nodes for t in (n.input[0], n.input[1], n.output[0])})
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    consts = {n.output[0]: list(n.attribute[0].t.dims) for n in proto.graph.node if n.op_type == "Constant"}
    fetch = [t for t in names if t not in inits and t not in consts and t not in feeds]
    s = make_session(_instrument(proto, fetch))
    shapes = dict(zip(fetch, (a.shape for a in s.run(fetch, feeds))))
    shapes.update({k: v.shape for k, v in feeds.items()})
    shapes.update(inits)
    shapes.update(consts)
    total = 0.0
    for n in nodes:
        x, w, y = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "Conv":
            total += 2 * np.prod(y) * np.prod(w[1:])
        elif n.op_type == "ConvTranspose":
            total += 2 * np.prod(x) * np.prod(w[1:])
        elif n.op_type == "Gemm":
            total += 2 * np.prod(y) * x[-1]
        else:
            total += 2 * np.prod(y) * x[-1]
    return float(total)


def mmnist_fp32():
    from gmg_deploy.export import build_proto
    from gmg_deploy.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch="gmg", in_shape=(20, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                      num_hidden=(128,) * 4, att_hidden=32, filter_size=5, patch_size=4)
    calib = np.random.default_rng(0).random((1, 10, 1, 64, 64), dtype=np.float32)
    return build_proto(build_model(cfg), graph="step"), calib


def demo_fp32():
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint

    return build_proto(load_checkpoint(demo_checkpoint_path()), graph="step"), demo_dataset("train", n=8)[:, :10]


def int8_graphs(p32, calib):
    """(tensorrt, cpu) INT8 graphs of ``p32``, calibrated over the ``pre`` frames of ``calib`` (minmax)."""
    from gmg_deploy.precision.qdq import quantize_graph
    from gmg_deploy.precision.ranges import collect_ranges
    from gmg_deploy.graph.metadata import attach_metadata, metadata_from_proto

    meta = metadata_from_proto(p32)
    short = dict(meta, config=dict(meta["config"], aft_seq_length=1))  # observed frames only: fast
    attach_metadata(p32, short)
    ranges = collect_ranges(p32, calib)
    out = tuple(quantize_graph(p32, ranges, target=t) for t in ("tensorrt", "cpu"))
    attach_metadata(p32, meta)
    return out


def feeds_for(meta, b: int, rng) -> dict[str, np.ndarray]:
    C, H, W = meta["config"]["in_shape"][1:]
    feeds = {"frame": rng.random((b, C, H, W), dtype=np.float32)}
    for st in meta["state"]:
        feeds["state_in." + st["name"]] = 0.5 * rng.random([b] + st["shape"][1:], dtype=np.float32)
    return feeds


def interleaved(sessions, feeds, repeats: int) -> list[list[float]]:
    for s in sessions:
        s.run(None, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for i, s in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, feeds)
            times[i].append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--models", default="mmnist,demo")
    ap.add_argument("--no-spin", action="store_true", help="ORT intra-op threads do not spin-wait")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.evaluate.ort_session import make_session

    info = hw_peak.cpu_info()
    print(f"CPU: {hw_peak.describe(info)}")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min load average, {info['cpus']} CPUs)")
    peak = hw_peak.fma_peak(args.threads)
    derived = hw_peak.derived_peak(info) * args.threads / info["cpus"]
    gemm = hw_peak.gemm_rate(args.threads)
    print(f"FP32 peak, {args.threads} thread(s): FMA-bound C kernel {peak:.1f} GFLOP/s (measured, used below); "
          f"cores x nominal clock x 2 FMA units x lanes x 2 = {derived:.1f} GFLOP/s ({args.threads} core(s)); "
          f"torch.mm 2048^3 {gemm:.1f} GFLOP/s")
    print(f"ORT {ort.__version__} CPU, {args.threads} intra-op thread(s), spin {'off' if args.no_spin else 'on'}, "
          f"{args.repeats} interleaved rounds; ms = median, ratio = median of per-round ratios vs fp32")
    rng = np.random.default_rng(0)
    makers = {"mmnist": ("Moving MNIST config, random weights", mmnist_fp32),
              "demo": ("demo model (gmg_deploy/assets)", demo_fp32)}
    for key in args.models.split(","):
        label, make = makers[key]
        p32, calib = make()
        t0 = time.perf_counter()
        ptrt, pcpu = int8_graphs(p32, calib)
        meta = metadata_from_proto(p32)
        print(f"\n{label} (calibration + quantization {time.perf_counter() - t0:.1f} s)")
        print(f"{'B':>2} {'GFLOP':>7} {'fp32 ms':>8} {'GFLOP/s':>8} {'%peak':>6} {'int8-trt ms':>11} {'ratio':>6} "
              f"{'int8-cpu ms':>11} {'ratio':>6}")
        sessions = [make_session(p, args.threads, not args.no_spin) for p in (p32, ptrt, pcpu)]
        for b in [int(x) for x in args.batches.split(",")]:
            feeds = feeds_for(meta, b, rng)
            flops = graph_flops(p32, feeds)
            t = interleaved(sessions, feeds, args.repeats)
            med = [float(np.median(x)) for x in t]
            ratio = [float(np.median(np.array(x) / np.array(t[0]))) for x in t]
            rate = flops / med[0] / 1e9
            print(f"{b:>2} {flops / 1e9:>7.3f} {1e3 * med[0]:>8.1f} {rate:>8.1f} {100 * rate / peak:>5.0f}% "
                  f"{1e3 * med[1]:>11.1f} {ratio[1]:>5.2f}x {1e3 * med[2]:>11.1f} {ratio[2]:>5.2f}x")
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
