"""Video path cost: end-to-end fps (decode + preprocess + model + panel + H.264 encode) vs model-only fps.

A 640x480 30 fps H.264 clip (moving digits from the demo data, enlarged) goes through two models with
ONNX Runtime on CPU: the shipped demo model (1x32x32) and the Moving MNIST config (1x64x64, N=128x4,
random weights). Per frame: observe, then forecast K ahead (K = the model's aft, 10, unless --horizon).
In one process, interleaved round by round:

- model-only: the same frames, already preprocessed, through ``observe`` + ``forecast(K)``;
- end-to-end: ``run_streams`` on the file (decode in the caller's thread, no drops) writing the panel video;
  it also times its own model calls, so "non-model time" (decode + preprocess + panel + encode + glue) is
  measured within the same run, immune to the machine getting slower or faster between runs.

Then ``--realtime`` on the same clip released at 30 fps (as a live camera): frames forecast, frames dropped.

    python benchmarks/bench_video.py [--frames 60] [--rounds 3] [--threads 2] [--horizon K]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from gmg_deploy import load_checkpoint
from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
from gmg_deploy.export import export_model
from gmg_deploy.model import ModelConfig, build_model
from gmg_deploy.runtime import Forecaster
from gmg_deploy.video.panel import column_labels, render_panel
from gmg_deploy.video.preprocess import Preprocessor
from gmg_deploy.video.source import FrameSource
from gmg_deploy.video.stream import open_sources, run_streams
from gmg_deploy.video.writer import VideoWriter


def mmnist_config() -> ModelConfig:
    return ModelConfig(arch="gmg", in_shape=(20, 1, 64, 64), pre_seq_length=10, aft_seq_length=10,
                       num_hidden=(128, 128, 128, 128), att_hidden=32, filter_size=5, patch_size=4)


def make_clip(path: Path, frames: int, fps: int = 30) -> None:
    seqs = demo_dataset("test", n=-(-frames // 20))[:, :, 0].reshape(-1, 32, 32)[:frames]
    ys, xs = np.arange(480) * 32 // 480, np.arange(640) * 32 // 640
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 640, 480, "yuv420p"
        for f in seqs:
            g = (f[ys][:, xs] * 255).astype(np.uint8)
            rgb = np.stack([g, g // 2 + 40, 255 - g], axis=-1)
            for p in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


def model_only(fc: Forecaster, xs: np.ndarray, K: int) -> float:
    """Seconds per frame for observe + forecast(K) on preprocessed frames."""
    fc.reset()
    t0 = time.perf_counter()
    for x in xs:
        fc.observe(x[None])
        fc.forecast(K)
    return (time.perf_counter() - t0) / len(xs)


def end_to_end(fc: Forecaster, clip: Path, K: int, out: Path) -> tuple[float, float]:
    """(wall seconds per frame, seconds per frame spent in the model inside that same run)."""
    fc.reset()
    rep = run_streams(fc, open_sources([str(clip)]), horizon=K, video_out=out)
    return rep.wall_s / rep.frames, rep.model_s / rep.frames


def parts(fc: Forecaster, clip: Path, K: int, out: Path) -> dict[str, float]:
    """Per-frame ms of decoding, preprocessing, panel + encoding alone (for the breakdown)."""
    pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata)
    t0 = time.perf_counter()
    imgs = [f.image for f in FrameSource(str(clip))]
    t1 = time.perf_counter()
    xs = [pre(i) for i in imgs]
    t2 = time.perf_counter()
    labels = column_labels(K, True)
    with VideoWriter(out, 30, render_panel([[pre.to_uint8(xs[0])] * 4], labels).shape[1::-1]) as w:
        for x in xs:
            u = pre.to_uint8(x)
            w.write(render_panel([[u, u, u, u]], labels))
    t3 = time.perf_counter()
    n = len(imgs)
    return {"decode": (t1 - t0) / n * 1e3, "preprocess": (t2 - t1) / n * 1e3, "panel+encode": (t3 - t2) / n * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=None, help="K [each model's aft, 10]")
    ap.add_argument("--models", default="demo,mmnist", help="comma-separated: demo, mmnist")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        clip = d / "clip_640x480_30fps.mp4"
        make_clip(clip, args.frames)
        models = {}
        if "demo" in args.models:
            export_model(load_checkpoint(demo_checkpoint_path()), d / "demo.onnx", graph="step")
            models["demo (1x32x32)"] = d / "demo.onnx"
        if "mmnist" in args.models:
            export_model(build_model(mmnist_config()), d / "mmnist.onnx", graph="step")
            models["Moving MNIST cfg (1x64x64)"] = d / "mmnist.onnx"
        print(f"clip 640x480 30 fps, {args.frames} frames; ONNX Runtime CPU, {args.threads} threads; "
              f"{args.rounds} interleaved rounds (median)")
        for name, path in models.items():
            fc = Forecaster.open(path, threads=args.threads)
            K = args.horizon or fc.config.aft_seq_length
            pre = Preprocessor.for_metadata(fc.frame_shape, fc.metadata)
            xs = np.stack([pre(f.image) for f in FrameSource(str(clip))])
            model_only(fc, xs[:3], K)  # warm-up
            m, e, inner = [], [], []
            for _ in range(args.rounds):
                m.append(model_only(fc, xs, K))
                wall, in_model = end_to_end(fc, clip, K, d / "panel.mp4")
                e.append(wall)
                inner.append(wall / in_model - 1)
            mm, ee = statistics.median(m), statistics.median(e)
            br = parts(fc, clip, K, d / "parts.mp4")
            fc.reset()
            rt = run_streams(fc, open_sources([str(clip)]), horizon=K, realtime=True).summary()
            print(f"\n{name}, K={K}:")
            print(f"  model-only  {mm * 1e3:8.1f} ms/frame  {1 / mm:6.1f} fps   ({mm / K * 1e3:.2f} ms/step)")
            print(f"  end-to-end  {ee * 1e3:8.1f} ms/frame  {1 / ee:6.1f} fps   vs model-only {100 * (ee / mm - 1):+.1f}%; "
                  f"inside the end-to-end run, non-model time = {100 * statistics.median(inner):+.1f}% of model time")
            print("  alone: " + ", ".join(f"{k} {v:.2f} ms/frame" for k, v in br.items()))
            lat = rt["latency_ms"]
            print(f"  --realtime at 30 fps: {rt['frames']} forecast, {rt['dropped']} dropped of {args.frames}; "
                  f"{rt['end_to_end_fps']:.1f} fps; latency p50 {lat['p50']:.0f} / p95 {lat['p95']:.0f} / "
                  f"p99 {lat['p99']:.0f} ms")
            fc.close()


if __name__ == "__main__":
    main()
