"""Which INT8 layout ONNX Runtime CPU runs fastest on this machine: ours (``--target cpu``) vs ORT's quantizer.

From one FP32 step graph per model (Moving MNIST config with random weights; the shipped demo model), with
one rollout calibration (``frame`` + ``state_in.*`` at every step) and our keep-float list, it builds:

* ``ours-qdq``: :func:`gmg_deploy.precision.convert` ``(..., "int8", ranges, target="cpu")``;
* ``ours-fused``: the same graph as ORT saves it after its graph optimisations
  (``SessionOptions.optimized_model_filepath``, ``ORT_ENABLE_EXTENDED``: the QDQ groups fused into
  ``QLinearConv``/``QLinearMatMul``, i.e. the QOperator form of our graph);
* ``onnxruntime.quantization.quantize_static`` with the same calibration feeds (MinMax), the same op types
  (Conv, MatMul, Gemm) and ``nodes_to_exclude`` = our keep-float list: QDQ u8/s8 per-channel, QDQ s8/s8
  per-channel, QDQ u8/s8 per-tensor, QOperator u8/s8 per-channel, QOperator s8/s8 per-channel
  (activations/weights; ORT's asymmetric activations, symmetric weights, no pre-processing).

All sessions (and FP32) run in rotation in one process (round r starts with the r-th session, so none
always follows the same one), 2 intra-op threads by default, B=1 and B=8: ms is
the median, ratio the median of the per-round ratios to FP32. "max/mean |err|" is the largest / mean absolute
difference to the FP32 rollout over a few forecast steps of real sequences (demo: the test split; Moving
MNIST config: synthetic moving digits at 64x64, the random-weight model), so no speed is bought with
wrong answers.

    python benchmarks/int8_layouts.py [--threads 2] [--repeats 8] [--batches 1,8] [--models mmnist,demo] [--no-spin]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).parent))
import hw_peak  # noqa: E402
from bench_precision import demo_fp32, feeds_for, mmnist_fp32  # noqa: E402

ORT_VARIANTS = {  # name: (format, activation type, weight type, per-channel)
    "ort-qdq-u8s8-pc": ("QDQ", "QUInt8", "QInt8", True),
    "ort-qdq-s8s8-pc": ("QDQ", "QInt8", "QInt8", True),
    "ort-qdq-u8s8-pt": ("QDQ", "QUInt8", "QInt8", False),
    "ort-qop-u8s8-pc": ("QOperator", "QUInt8", "QInt8", True),
    "ort-qop-s8s8-pc": ("QOperator", "QInt8", "QInt8", True),
}


def calibration(p32, frames):
    """(ranges document, ORT calibration feeds) from the same FP32 rollouts (pre + aft steps) of ``frames``."""
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.evaluate.rollout import rollout
    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.precision import calibrate

    ranges = calibrate(p32, frames, method="minmax")
    feeds: list[dict[str, np.ndarray]] = []
    rollout(make_session(p32, 2), metadata_from_proto(p32), frames,
            on_step=lambda t, f: feeds.append({k: np.array(v) for k, v in f.items()}))
    return ranges, feeds


def ort_quantize(src: Path, dst: Path, feeds, keep: list[str], fmt: str, act: str, wt: str, pc: bool):
    from onnxruntime import quantization as q

    from gmg_deploy.precision.qdq_cpu import CPU_OPS

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    logging.getLogger().setLevel(logging.ERROR)
    q.quantize_static(str(src), str(dst), Reader(), quant_format=getattr(q.QuantFormat, fmt),
                      activation_type=getattr(q.QuantType, act), weight_type=getattr(q.QuantType, wt),
                      per_channel=pc, calibrate_method=q.CalibrationMethod.MinMax,
                      op_types_to_quantize=list(CPU_OPS), nodes_to_exclude=list(keep))
    return dst


def ort_fused(src: Path, dst: Path) -> Path:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    o.optimized_model_filepath = str(dst)
    o.log_severity_level = 3
    ort.InferenceSession(str(src), o, providers=["CPUExecutionProvider"])
    return dst


def integer_ops(path: Path) -> str:
    c = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    keys = ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "QuantizeLinear",
            "DequantizeLinear")
    return " ".join(f"{k}={c[k]}" for k in keys if c[k])


def errors(sessions, meta, frames, aft: int) -> list[tuple[float, float]]:
    """(max, mean) |output - FP32 output| of each session after the first, over ``aft`` forecast steps."""
    from gmg_deploy.evaluate.rollout import rollout

    ref = rollout(sessions[0], meta, frames, aft=aft)
    e = [np.abs(rollout(s, meta, frames, aft=aft) - ref) for s in sessions[1:]]
    return [(float(x.max()), float(x.mean())) for x in e]


def interleaved(sessions, feeds, repeats: int) -> list[list[float]]:
    for s in sessions:
        s.run(None, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    n = len(sessions)
    for r in range(repeats):  # round r starts at session r mod n: no session always runs right after another
        for i in [(r + k) % n for k in range(n)]:
            t = time.perf_counter()
            sessions[i].run(None, feeds)
            times[i].append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument("--repeats", type=int, default=8, help="interleaved rounds per batch size")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--models", default="mmnist,demo")
    ap.add_argument("--no-spin", action="store_true",
                    help="idle ORT threads do not spin-wait (with many sessions in rotation, a spinning pool "
                         "of the previous session takes the cores from the next one)")
    ap.add_argument("--err-steps", type=int, default=4, help="forecast steps for the error columns")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    from gmg_deploy.data.demo import demo_dataset
    from gmg_deploy.data.moving_shapes import MovingDigitsSpec, moving_digits
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.precision import convert

    print(f"CPU: {hw_peak.describe(hw_peak.cpu_info())}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15-min load average)")
    print(f"ORT {ort.__version__} CPU, {args.threads} intra-op thread(s), spin {'off' if args.no_spin else 'on'}, {args.repeats} interleaved "
          "rounds; ms = median, ratio = median of per-round ratios vs fp32")
    rng = np.random.default_rng(0)
    models = {"mmnist": ("Moving MNIST config, random weights", mmnist_fp32,
                         lambda: moving_digits(4, 1, MovingDigitsSpec(height=64, width=64))),
              "demo": ("demo model", demo_fp32, lambda: demo_dataset("test", n=8))}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for key in args.models.split(","):
            label, make, test = models[key]
            t0 = time.perf_counter()
            p32, calib = make()
            meta = metadata_from_proto(p32)
            ranges, feeds = calibration(p32, calib)
            onnx.save(p32, d / f"{key}.fp32.onnx")
            paths = {"ours-qdq": convert(p32, d / f"{key}.ours.onnx", "int8", ranges, target="cpu")}
            paths["ours-fused"] = ort_fused(paths["ours-qdq"], d / f"{key}.fused.onnx")
            for name, v in ORT_VARIANTS.items():
                paths[name] = ort_quantize(d / f"{key}.fp32.onnx", d / f"{key}.{name}.onnx", feeds,
                                           ranges["keep_float"], *v)
            print(f"\n{label}: {len(feeds)} calibration steps, keep-float {ranges['keep_float']}, "
                  f"built in {time.perf_counter() - t0:.0f} s")
            for name, p in paths.items():
                print(f"  {name:16} {integer_ops(p)}")
            spin = not args.no_spin
            sessions = [make_session(p, args.threads, spin) for p in [p32, *paths.values()]]
            frames = test()
            errs = errors(sessions, meta, frames, args.err_steps)
            scale = float(np.abs(frames).max())
            rows = {name: [f"{e[0]:.1e}/{e[1]:.1e}"] for name, e in zip(paths, errs)}
            head = f"  {'variant':16} {'max/mean|err|':>15}"
            fp32_ms = []
            for b in [int(x) for x in args.batches.split(",")]:
                t = interleaved(sessions, feeds_for(meta, b, rng), args.repeats)
                med = [1e3 * float(np.median(x)) for x in t]
                ratio = [float(np.median(np.array(x) / np.array(t[0]))) for x in t]
                fp32_ms.append(f"B={b} {med[0]:.1f} ms")
                head += f" {f'B={b} ms':>10} {'ratio':>6}"
                for i, name in enumerate(paths, start=1):
                    rows[name] += [f"{med[i]:.1f}", f"{ratio[i]:.2f}x"]
            print(f"  fp32: {', '.join(fp32_ms)}; max/mean |err| vs fp32 over {len(frames)} sequences x {args.err_steps} "
                  f"forecast steps (data in [0, {scale:.0f}])")
            print(head)
            for name, r in rows.items():
                print(f"  {name:16} {r[0]:>15} " + " ".join(f"{a:>10} {b:>6}" for a, b in zip(r[1::2], r[2::2])))
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
