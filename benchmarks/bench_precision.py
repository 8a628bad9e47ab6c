"""ONNX Runtime CPU latency of one recurrent step: FP32 vs INT8 (Q/DQ) vs FP16, Moving MNIST configuration.

Random weights, ``in_shape [20,1,64,64]``, patch 4, 128x4, att 32, filter 5, batch 1. INT8 ranges come
from a short calibration on random sequences (latency does not depend on the ranges' values).

    python benchmarks/bench_precision.py [--threads 1] [--repeats 10] [--arch gmg]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--arch", default="gmg", choices=["gmg", "motionrnn"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from gmg_deploy.calibration.qdq import quantize_graph
    from gmg_deploy.calibration.ranges import collect_ranges
    from gmg_deploy.export import build_proto
    from gmg_deploy.export.metadata import metadata_from_proto
    from gmg_deploy.export.ort_rollout import make_session
    from gmg_deploy.export.precision_fp16 import convert_to_fp16
    from gmg_deploy.model import ModelConfig, build_model

    cfg = ModelConfig(arch=args.arch, in_shape=(20, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                      num_hidden=(128,) * 4, att_hidden=32, filter_size=5, patch_size=4)
    t0 = time.perf_counter()
    p32 = build_proto(build_model(cfg), graph="step")
    print(f"export {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(0)
    calib = rng.random((1, 10, 1, 64, 64), dtype=np.float32)
    short = ModelConfig(**{**cfg.__dict__, "aft_seq_length": 1, "extra": {}})
    meta = metadata_from_proto(p32)
    # calibrate over the observed frames only (ranges do not change latency)
    from gmg_deploy.export.metadata import attach_metadata

    attach_metadata(p32, dict(meta, config=short.to_dict()))
    ranges = collect_ranges(p32, calib)
    p8 = quantize_graph(p32, ranges)
    attach_metadata(p32, meta)
    p16 = convert_to_fp16(p32)
    feeds = {"frame": rng.random((1, 1, 64, 64), dtype=np.float32)}
    for st in meta["state"]:
        feeds["state_in." + st["name"]] = np.zeros([1] + st["shape"][1:], np.float32)
    rows = []
    for name, proto in (("fp32", p32), ("int8", p8), ("fp16 (ORT upcasts)", p16)):
        s = make_session(proto, threads=args.threads)
        s.run(None, feeds)
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            s.run(None, feeds)
            ts.append(time.perf_counter() - t)
        rows.append((name, 1e3 * float(np.median(ts)), 1e3 * float(np.min(ts))))
    print(f"ORT {__import__('onnxruntime').__version__} CPU, {args.threads} thread(s), {args.arch}, batch 1, one step")
    for name, med, best in rows:
        print(f"  {name:<20} median {med:8.1f} ms   min {best:8.1f} ms   ({med / rows[0][1]:.2f}x fp32)")


if __name__ == "__main__":
    main()
