"""Parameter count, FLOPs and CPU time per recurrent step of the PyTorch model.

Compares, side by side in one run, the step as this toolkit runs it (GridSample warp, conv_g folded into one
5x5 kernel) with the same forward written the reference way (index-arithmetic gather warp, three conv_g
branches). Default: the Moving MNIST config ([10,1,64,64], p=4, N=128x4, A=32, F=5), random weights.

    python benchmarks/bench_model_step.py [--batch 1] [--repeats 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from gmg_deploy.model import ModelConfig, build_model


def mmnist_config(arch: str = "gmg") -> ModelConfig:
    return ModelConfig(arch=arch, in_shape=(10, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                       num_hidden=(128, 128, 128, 128), att_hidden=32, filter_size=5, patch_size=4)


def time_steps(model, frame, state, repeats: int) -> list[float]:
    times = []
    with torch.no_grad():
        for _ in range(2):  # warm-up
            model.step(frame, state)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.step(frame, state)
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--arch", default="gmg", choices=["gmg", "motionrnn"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = mmnist_config(args.arch)
    ref = build_model(cfg, warp="gather")
    ours = build_model(cfg, warp="gridsample")
    ours.load_state_dict(ref.state_dict())
    ours.fold_multiscale()
    n_params = sum(p.numel() for p in ref.parameters())

    frame = torch.rand(args.batch, *cfg.frame_shape)
    state = ours.init_state(args.batch)
    with torch.no_grad():  # a non-trivial state: a few observed frames
        for _ in range(3):
            _, state = ours.step(torch.rand_like(frame), state)
        a, _ = ref.step(frame, state)
        b, _ = ours.step(frame, state)
    max_diff = float((a - b).abs().max())

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        ours.step(frame, state)
    gflop = fc.get_total_flops() / 1e9

    # interleave the two so machine noise hits both alike
    t_ref, t_ours = [], []
    for _ in range(3):
        t_ref += time_steps(ref, frame, state, args.repeats // 3 + 1)
        t_ours += time_steps(ours, frame, state, args.repeats // 3 + 1)
    med_ref, med_ours = statistics.median(t_ref), statistics.median(t_ours)

    print(f"# {args.arch} step, Moving MNIST config {list(cfg.in_shape)} p={cfg.patch_size} "
          f"N={cfg.num_hidden[0]}x{cfg.num_layers} A={cfg.att_hidden} F={cfg.filter_size}, batch {args.batch}")
    print(f"# torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print(f"parameters: {n_params:,} ({n_params / 1e6:.2f} M)")
    print(f"FLOPs per step (conv/matmul, FlopCounterMode): {gflop:.2f} GFLOP")
    print(f"max |ours - reference-style| after 4 steps: {max_diff:.2e}")
    print()
    print("| forward | median ms/step | min ms/step | GFLOP/s | speed-up |")
    print("|---|---|---|---|---|")
    for name, med, ts in (("reference-style (gather warp, 3 conv_g)", med_ref, t_ref),
                          ("gmg-deploy (GridSample, folded conv_g)", med_ours, t_ours)):
        print(f"| {name} | {med * 1e3:.1f} | {min(ts) * 1e3:.1f} | {gflop / med:.1f} | {med_ref / med:.2f}x |")


if __name__ == "__main__":
    main()
