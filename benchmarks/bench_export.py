"""Export time, node count, op types and size of the step and sequence graphs (Moving MNIST config).

The step graph is traced once (TorchScript exporter) and the 19-step sequence graph is built by chaining
renamed copies of it; for comparison ``--trace-sequence`` also times tracing the whole unrolled sequence
with the TorchScript exporter (91 s on this 2-core machine when the project started; slow).

    python benchmarks/bench_export.py [--arch gmg] [--trace-sequence]
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
import warnings
from pathlib import Path

import torch

from gmg_deploy.export import check_tensorrt_compat, export_model
from gmg_deploy.model import ModelConfig, build_model


def trace_whole_sequence(model) -> float:
    """Seconds to trace the unrolled sequence directly with the TorchScript exporter (the slow way)."""

    class Seq(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, frames):
            return self.m.predict(frames)

    cfg = model.config
    x = torch.zeros(1, cfg.pre_seq_length, *cfg.frame_shape)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Seq(model), (x,), io.BytesIO(), dynamo=False, opset_version=17,
                          input_names=["frames"], output_names=["preds"])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gmg", choices=["gmg", "motionrnn"])
    ap.add_argument("--trace-sequence", action="store_true", help="also time tracing the whole sequence")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = ModelConfig(arch=args.arch, in_shape=(10, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                      num_hidden=(128, 128, 128, 128), att_hidden=32, filter_size=5, patch_size=4)
    model = build_model(cfg)
    print(f"# {args.arch}, Moving MNIST config {list(cfg.in_shape)} p={cfg.patch_size} N=128x4 A=32 F=5, "
          f"pre={cfg.pre_seq_length} aft={cfg.aft_seq_length}, dynamic batch, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| graph | export s | nodes | MiB | TensorRT lint | top op types |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for graph in ("step", "sequence"):
            res = export_model(model, Path(d) / f"{graph}.onnx", graph=graph)
            findings = check_tensorrt_compat(res.path, raise_on_error=False)
            ops = ", ".join(f"{k} {v}" for k, v in sorted(res.op_types.items(), key=lambda kv: -kv[1])[:8])
            print(f"| {graph} | {res.seconds:.1f} | {res.node_count} | {res.file_size / 2**20:.0f} | "
                  f"{'pass' if not findings else f'{len(findings)} findings'} | {ops} |")
    if args.trace_sequence:
        print(f"| sequence traced whole (TorchScript exporter, for comparison) | {trace_whole_sequence(model):.1f} "
              "| | | | |")


if __name__ == "__main__":
    main()
