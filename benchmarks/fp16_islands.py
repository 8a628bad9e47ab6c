"""Which FP32 islands an FP16 graph needs, measured: error of FP16 step graphs vs FP32 with each island dropped.

For each model, the FP32 step graph is rolled out in ONNX Runtime over sequences (observe ``pre``, forecast
``aft``) next to FP16 graphs (FP16 rounding between ops emulated, as ``gmg-compare`` does) that keep all
islands, none, or all but one. Prints max |error| and MSE vs FP32 over the forecast.

Models: the shipped demo GMG on held-out synthetic sequences, and a MotionRNN with a large motion grid
(in_shape 256x256, patch 2 -> 64x64 motion grid, random weights, offsets scaled up) where the warp's
coordinate precision matters: an FP16 normalised coordinate near 1 is 2**-11, i.e. 1/32 px at 64 px.

Then the warp alone at 64..512 px motion grids: the sampling grid computed in FP16 vs FP32.

    python benchmarks/fp16_islands.py [--sequences 8]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from gmg_deploy.export import build_proto
from gmg_deploy.graph.metadata import metadata_from_proto
from gmg_deploy.evaluate.ort_session import make_session
from gmg_deploy.evaluate.rollout import rollout
from gmg_deploy.precision.fp16 import DEFAULT_ISLANDS, convert_to_fp16, emulate_fp16


def island_table(name: str, fp32, frames: np.ndarray) -> None:
    meta = metadata_from_proto(fp32)
    ref = rollout(make_session(fp32, 2), meta, frames)
    variants = [("all islands (default)", DEFAULT_ISLANDS), ("none", ())]
    variants += [(f"all but {i}", tuple(x for x in DEFAULT_ISLANDS if x != i)) for i in DEFAULT_ISLANDS]
    print(f"\n## {name}: {frames.shape[0]} sequences, forecast {ref.shape[1]} frames")
    print("| FP32 islands kept | max abs error vs FP32 | MSE vs FP32 (per frame) |")
    print("|---|---|---|")
    for label, islands in variants:
        fp16 = emulate_fp16(convert_to_fp16(fp32, islands=islands))
        out = rollout(make_session(fp16, 2), meta, frames)
        err = out.astype(np.float64) - ref
        print(f"| {label} | {np.abs(err).max():.3e} | {(err ** 2).sum(axis=(2, 3, 4)).mean():.3e} |")


def warp_coordinate_table() -> None:
    """The warp alone: GridSample with its grid computed in FP16 vs FP32, on sharp-edged frames."""
    import torch.nn.functional as F

    from gmg_deploy.data.moving_shapes import MovingDigitsSpec, moving_digits
    from gmg_deploy.model.warp import _grid_affine

    print("\n## the warp alone: sampling grid computed in FP16 vs FP32 (offsets ~N(0, 2 px), digit frames)")
    print("| motion grid | max coordinate error px | max sampled-value error | mean |")
    print("|---|---|---|---|")
    for hw in (64, 256, 512):
        spec = MovingDigitsSpec(num_frames=1, height=hw, width=hw, glyph_scale=hw // 16)
        f = torch.from_numpy(moving_digits(1, 3, spec))[:, 0].repeat(1, 4, 1, 1)
        torch.manual_seed(0)
        off = torch.randn(1, 18, hw, hw) * 2
        scale, bias = _grid_affine(hw, hw, torch.float32, off.device)
        xy = torch.cat([off[:, 9:], off[:, :9]], 1)
        c32 = xy * scale + bias
        c16 = (xy.half() * scale.half() + bias.half()).float()
        s32, s16 = (F.grid_sample(f, F.pixel_shuffle(c, 3).permute(0, 2, 3, 1), mode="bilinear",
                                  padding_mode="zeros", align_corners=False) for c in (c32, c16))
        d = (s16 - s32).abs()
        print(f"| {hw}x{hw} | {float((c16 - c32).abs().max()) * hw / 2:.4f} | {float(d.max()):.4f} | {float(d.mean()):.2e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=8)
    args = ap.parse_args()
    from gmg_deploy import load_checkpoint
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.data.moving_shapes import MovingDigitsSpec, moving_digits
    from gmg_deploy.model import ModelConfig, build_model

    demo = load_checkpoint(demo_checkpoint_path())
    island_table("demo GMG (32x32, motion grid 2x2)", build_proto(demo, graph="step"),
                 demo_dataset("test", n=args.sequences))

    torch.manual_seed(0)
    cfg = ModelConfig(arch="motionrnn", in_shape=(8, 1, 256, 256), pre_seq_length=4, aft_seq_length=4,
                      num_hidden=(32, 32), filter_size=3, patch_size=2)
    m = build_model(cfg)
    with torch.no_grad():  # larger offsets than a random init gives, as a trained motion branch produces
        m.motion_list[0].output.weight.mul_(8.0)
    frames = moving_digits(max(2, args.sequences // 4), 7,
                           MovingDigitsSpec(num_frames=8, height=256, width=256, glyph_scale=8))
    island_table("MotionRNN 256x256 (motion grid 64x64, random weights)", build_proto(m, graph="step"), frames)
    warp_coordinate_table()


if __name__ == "__main__":
    main()
