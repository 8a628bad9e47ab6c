"""GPU check of the torch streaming backend: per-step latency eager vs CUDA graph, and no hidden copies.

Run on a machine with a CUDA GPU (it exits with a clear message otherwise):

    python benchmarks/gpu_torch_stream.py [--batch 1] [--steps 50] [--arch gmg]

Moving MNIST config, random weights. Reports, for eager and CUDA-graph modes:
- the device time per ``observe`` with the frame already on the device (CUDA events), and per
  ``observe`` of a NumPy frame (host in, host out; wall clock);
- from ``torch.profiler`` over ``--steps`` NumPy-in/NumPy-out observes: the count of host->device and
  device->host memcpy operations per step. The expected count is exactly 1 HtoD (the frame) and 1 DtoH
  (the prediction); state stays on the device (device->device copies are listed separately).
Exit code 1 if a step does any other device<->host copy or the two modes disagree beyond 1e-4.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from gmg_deploy.model import ModelConfig, build_model
from gmg_deploy.runtime import Forecaster


def mmnist_config(arch: str) -> ModelConfig:
    return ModelConfig(arch=arch, in_shape=(20, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                       num_hidden=(128, 128, 128, 128), att_hidden=32, filter_size=5, patch_size=4)


def device_ms_per_step(fc: Forecaster, frame_dev: torch.Tensor, steps: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fc.observe(frame_dev, return_device=True)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def host_ms_per_step(fc: Forecaster, frame_np: np.ndarray, steps: int) -> float:
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fc.observe(frame_np)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def count_copies(fc: Forecaster, frame_np: np.ndarray, steps: int) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fc.observe(frame_np)
        torch.cuda.synchronize()
    counts = {"HtoD": 0, "DtoH": 0, "DtoD": 0}
    for ev in prof.events():
        name = ev.name
        if ev.device_type != torch.autograd.DeviceType.CUDA or "Memcpy" not in name:
            continue
        for kind in counts:
            if kind in name:
                counts[kind] += 1
    return {k: v / steps for k, v in counts.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--arch", default="gmg", choices=["gmg", "motionrnn"])
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU (torch.cuda.is_available() is False); "
              "run it on the GPU machine", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    cfg = mmnist_config(args.arch)
    B = args.batch
    rng = np.random.default_rng(0)
    frame_np = rng.random((B, *cfg.frame_shape), dtype=np.float32)
    frame_dev = torch.from_numpy(frame_np).cuda()
    warm = rng.random((B, 3, *cfg.frame_shape), dtype=np.float32)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, {args.arch}, B={B}, steps={args.steps}")
    results, preds = {}, {}
    weights = build_model(cfg).state_dict()
    for mode in ("eager", "cuda_graph"):
        model = build_model(cfg)
        model.load_state_dict(weights)
        fc = Forecaster.from_model(model, device="cuda", batch_size=B, cuda_graph=(mode == "cuda_graph"))
        fc.check_finite = False  # the finite check would read a flag back from the device
        fc.observe(warm)  # warm-up (and graph capture)
        preds[mode] = fc.forecast(5)
        dev_ms = device_ms_per_step(fc, frame_dev, args.steps)
        fc.check_finite = True
        host_ms = host_ms_per_step(fc, frame_np, args.steps)
        copies = count_copies(fc, frame_np, min(args.steps, 10))
        results[mode] = (dev_ms, host_ms, copies)
    print(f"\n{'mode':>11} {'device ms/step':>15} {'numpy in/out ms':>16} {'HtoD/step':>10} {'DtoH/step':>10} "
          f"{'DtoD/step':>10}")
    for mode, (dev_ms, host_ms, c) in results.items():
        print(f"{mode:>11} {dev_ms:>15.3f} {host_ms:>16.3f} {c['HtoD']:>10.1f} {c['DtoH']:>10.1f} {c['DtoD']:>10.1f}")
    diff = float(np.abs(preds["eager"] - preds["cuda_graph"]).max())
    print(f"\neager vs CUDA graph forecast(5) max |diff| = {diff:.3g}")
    ok = diff < 1e-4 and all(c["HtoD"] == 1 and c["DtoH"] == 1 for _, _, c in results.values())
    print("OK: one frame in, one prediction out per step, state stays on the device" if ok else
          "FAIL: unexpected host<->device copies or eager/graph mismatch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
