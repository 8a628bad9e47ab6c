"""CPU cost of the gather warp (``gmg-export --warp gather``: no GridSample) against GridSample, FP32 and FP16, in ORT.

The alternative that pytorch/TensorRT#4074 (wrong GridSample in an FP16 network's FP32 island, TensorRT >=
10.14.1.48) points to: the same model exported with the index-gather warp. This measures what it costs
on ONNX Runtime CPU, step by step: the demo model (its real weights) and the Moving MNIST config (random
weights), both warp forms, FP32 and FP16 (FP16 with the default FP32 islands), interleaved: each round runs
every variant in turn, so drift of a shared host hits all alike. Feeds are a real state (after ``--warm``
steps of the demo's test frames or of random frames), not zeros. Also prints each variant's max |diff|
of ``next_frame`` against the FP32 GridSample graph. Not a test.

    python benchmarks/warp_forms.py                  # demo + mmnist, B=1, 2 threads
    python benchmarks/warp_forms.py --configs demo --rounds 5 --batch 8
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np


def demo_models() -> tuple[dict[str, Any], np.ndarray]:
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.model.checkpoint import load_checkpoint

    models = {w: load_checkpoint(demo_checkpoint_path(), warp=w) for w in ("gridsample", "gather")}
    return models, demo_dataset("test", n=8)


def mmnist_models() -> tuple[dict[str, Any], np.ndarray]:
    import torch

    from gmg_deploy.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch="gmg", in_shape=[20, 1, 64, 64], pre_seq_length=10, aft_seq_length=10,
                      num_hidden=(128,) * 4, att_hidden=32, filter_size=5, patch_size=4)
    gs = build_model(cfg, warp="gridsample")
    ga = build_model(cfg, warp="gather")
    ga.load_state_dict(gs.state_dict())
    frames = np.random.default_rng(0).random((8, 20, 1, 64, 64), dtype=np.float32)
    return {"gridsample": gs, "gather": ga}, frames


def sessions(models: dict[str, Any], threads: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """``"fp32 gridsample"`` ... -> (ORT session, metadata) for both warps, FP32 and FP16."""
    from gmg_deploy.evaluate.ort_session import make_session
    from gmg_deploy.export.api import build_proto
    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.precision.api import apply_precision

    out = {}
    for warp, model in models.items():
        proto = build_proto(model)
        for prec in ("fp32", "fp16"):
            p = apply_precision(proto, prec)
            out[f"{prec} {warp}"] = (make_session(p, threads=threads), metadata_from_proto(p))
    return out


def warm_feed(sess: Any, meta: dict[str, Any], frames: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """The feed of step ``steps`` of an ORT rollout of ``frames`` (a real state, not zeros)."""
    from gmg_deploy.evaluate.rollout import rollout

    feeds: list[dict[str, np.ndarray]] = []
    rollout(sess, meta, frames[:, : max(steps + 1, meta["config"]["pre_seq_length"])],
            on_step=lambda t, f: feeds.append(f) if t == steps else None)
    return feeds[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="demo,mmnist", help="comma list of demo, mmnist")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per variant per round")
    ap.add_argument("--warm", type=int, default=5, help="steps rolled out before the timed feed")
    args = ap.parse_args(argv)
    builders = {"demo": demo_models, "mmnist": mmnist_models}
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in builders]
    if bad or args.batch < 1 or args.threads < 1 or args.rounds < 1 or args.calls < 1 or args.warm < 0:
        print(f"error: bad arguments ({', '.join(bad) or 'counts must be >= 1'}); see --help", file=sys.stderr)
        return 2
    import onnxruntime

    print(f"ONNX Runtime {onnxruntime.__version__} CPU, {args.threads} threads, B={args.batch}, "
          f"{args.rounds} interleaved rounds x {args.calls} calls (median / best ms per step)")
    for name in configs:
        models, frames = builders[name]()
        frames = frames[: args.batch] if args.batch <= len(frames) else np.resize(frames, (args.batch, *frames.shape[1:]))
        sess = sessions(models, args.threads)
        ref_sess, ref_meta = sess["fp32 gridsample"]
        feed32 = warm_feed(ref_sess, ref_meta, frames, args.warm)  # one real state, fed to every variant
        (want,) = ref_sess.run(["next_frame"], feed32)
        times: dict[str, list[float]] = {k: [] for k in sess}
        diffs = {}
        for k, (s, _) in sess.items():
            (got,) = s.run(["next_frame"], feed32)  # warm-up and accuracy
            diffs[k] = float(np.abs(got.astype(np.float32) - want).max())
        for _ in range(args.rounds):
            for k, (s, _) in sess.items():
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    s.run(None, feed32)
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"\n{name}: {models['gridsample'].config.in_shape}")
        print(f"{'variant':>16} {'median ms':>10} {'best ms':>8} {'vs gridsample':>14} {'max|diff| vs fp32 gs':>21}")
        for k in sess:
            prec = k.split()[0]
            ratio = med[k] / med[f"{prec} gridsample"]
            print(f"{k:>16} {med[k]:>10.2f} {min(times[k]) * 1e3:>8.2f} {ratio:>13.2f}x {diffs[k]:>21.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
