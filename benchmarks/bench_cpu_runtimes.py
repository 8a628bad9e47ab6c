"""CPU runtimes: ONNX Runtime vs OpenVINO at FP32 / BF16 / F16 / INT8, per step, in rotation, with errors vs FP32.

Models: the Moving MNIST configuration with random weights (``in_shape [20,1,64,64]``, patch 4, 128x4, att 32,
filter 5) and the shipped demo model (bench_precision.py's two). INT8 graphs are ours (``--target cpu`` and
``--target tensorrt`` Q/DQ layouts, minmax ranges from a short rollout calibration) and, when ``nncf`` is
installed, NNCF's post-training quantization of the FP32 graph (``nncf.quantize`` on the OpenVINO model, same
calibration frames) as a peer.

Latency: one step (frame + state in, next frame + state out) of every runner on the same inputs, in rotation
(round r starts at runner r mod n, so none always follows another); ms = median over rounds; ratio = median
of the per-round ratios to ORT FP32 of the same round. ORT runs ``session.run`` with NumPy feeds, OpenVINO a bare
``infer()`` on a request whose tensors are set once. GFLOP/s and % of peak: FLOPs of the FP32 graph
(bench_precision.graph_flops) over the runner's time, against hw_peak.py's measured FMA-bound FP32 peak on the
same thread count (BF16/INT8 peaks are higher, so > 100% is possible there).

Errors vs FP32 (ORT FP32 forecasts of the same held-out sequences, pre observed + aft forecast through the
streaming runtime): max |diff| and the worst per-step SSIM drop. Demo: the drop is SSIM(FP32 vs truth) -
SSIM(candidate vs truth) (gmg-compare's). Moving MNIST config (random weights, its forecasts are not digits):
the drop is 1 - SSIM(candidate vs FP32 forecast), a stricter stand-in.

Backend overhead: OpenVINOBackend.run (the Forecaster's step: one infer request per buffer-set pair) vs a bare
``infer()`` on that same request, and OpenVINO's MakeStateful form (state in the request's variables) vs the
same bare ``infer()``; medians of per-round ratios.

    python benchmarks/bench_cpu_runtimes.py [--threads 2] [--repeats 8] [--batches 1,8] [--models mmnist,demo]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).parent))
import hw_peak  # noqa: E402
from bench_precision import demo_fp32, feeds_for, graph_flops, int8_graphs, mmnist_fp32  # noqa: E402


class OrtRunner:
    def __init__(self, name: str, path: Path, threads: int, spin: bool) -> None:
        from gmg_deploy.evaluate.ort_session import make_session

        self.name, self.path, self.kind = name, path, "onnxruntime"
        self.sess = make_session(onnx.load(str(path)), threads, spin)
        self.fc_kwargs = {"threads": threads, "spin": spin}

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        self.feeds = feeds

    def step(self) -> None:
        self.sess.run(None, self.feeds)


class OvRunner:
    def __init__(self, name: str, path: Path, threads: int, hint: str = "f32") -> None:
        import openvino as ov

        self.name, self.path, self.kind, self.hint, self.threads = name, path, "openvino", hint, threads
        self.core, self.ov = ov.Core(), ov
        self.fc_kwargs = {"threads": threads, "precision_hint": None if hint == "f32" else hint}
        self._compiled: dict[int, object] = {}

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        b = next(iter(feeds.values())).shape[0]
        cm = self._compiled.get(b)
        if cm is None:
            model = self.core.read_model(str(self.path))
            model.reshape({p: list(feeds[next(n for n in p.get_names() if n in feeds)].shape) for p in model.inputs})
            cm = self.core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": self.hint,
                                                         "INFERENCE_NUM_THREADS": self.threads,
                                                         "PERFORMANCE_HINT": "LATENCY"})
            self._compiled[b] = cm
        self.req = cm.create_infer_request()
        self.feeds = feeds  # the request's tensors share these arrays' memory: keep them alive
        for n, a in feeds.items():
            self.req.set_tensor(n, self.ov.Tensor(a, shared_memory=True))

    def step(self) -> None:
        self.req.infer()


def rotation(runners, repeats: int) -> list[list[float]]:
    for r in runners:
        r.step()
    times: list[list[float]] = [[] for _ in runners]
    n = len(runners)
    for rnd in range(repeats):
        for i in [(rnd + k) % n for k in range(n)]:
            t = time.perf_counter()
            runners[i].step()
            times[i].append(time.perf_counter() - t)
    return times


def forecasts(runner, frames: np.ndarray, pre: int, aft: int, batch: int) -> np.ndarray:
    from gmg_deploy.runtime import Forecaster

    fc = Forecaster.open(runner.path, backend=runner.kind, batch_size=batch, **runner.fc_kwargs)
    out = []
    for s in range(0, frames.shape[0], batch):
        fc.reset()
        fc.observe(frames[s:s + batch, :pre])
        out.append(fc.forecast(aft))
    fc.close()
    return np.concatenate(out)


def error_columns(runners, frames, pre, aft, batch, with_truth: bool) -> dict[str, tuple[float, float]]:
    """runner name -> (max |diff| vs ORT FP32, worst per-step SSIM drop)."""
    from gmg_deploy.evaluate.accuracy import compare_predictions

    ref = forecasts(runners[0], frames, pre, aft, batch)
    out = {}
    for r in runners[1:]:
        cand = forecasts(r, frames, pre, aft, batch)
        rep = compare_predictions(ref, cand, frames[:, pre:pre + aft] if with_truth else None)
        drop = max(rep["ssim_drop"]) if with_truth else max(1.0 - s for s in rep["ssim_vs_reference"])
        out[r.name] = (max(rep["max_abs"]), drop)
    return out


def nncf_graph(p32_path: Path, calib: np.ndarray, meta: dict, out: Path) -> Path | None:
    """NNCF post-training INT8 of the FP32 graph (calibration: the step's inputs along a rollout of ``calib``),
    saved as OpenVINO IR (timed and scored from the IR directly); None when nncf is missing."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        return None
    from gmg_deploy.evaluate.ort_session import make_session

    sess = make_session(onnx.load(str(p32_path)))
    b = calib.shape[0]
    state = {"state_in." + s["name"]: np.zeros([b] + s["shape"][1:], np.float32) for s in meta["state"]}
    samples = []
    names = [o.name for o in sess.get_outputs()]
    for t in range(calib.shape[1]):
        feed = {"frame": calib[:, t], **state}
        samples.append({k: v.copy() for k, v in feed.items()})
        got = dict(zip(names, sess.run(None, feed)))
        state = {k: got[k.replace("state_in.", "state_out.")] for k in state}
    model = ov.Core().read_model(str(p32_path))
    model.reshape({p: list(samples[0][next(n for n in p.get_names() if n in samples[0])].shape)
                   for p in model.inputs})
    q = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    ov.save_model(q, str(out))
    return out


class OvIrRunner(OvRunner):
    """An OpenVINO IR (NNCF's output): timed like OvRunner; scored by :func:`ir_errors` (the Forecaster opens
    .onnx graphs, whose metadata an IR lacks)."""


def overhead(path: Path, threads: int, batch: int, repeats: int) -> tuple[float, float]:
    """(backend step / bare infer - 1, MakeStateful step / bare infer - 1), medians of per-round ratios."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    from gmg_deploy.runtime.openvino_backend import OpenVINOBackend

    be = OpenVINOBackend(path, batch_size=batch, threads=threads)
    for t in be.sets[0].tensors():
        t.copy_(torch.rand_like(t))
    be.run(0, 1, False)
    req = be._request(0, 1, False)
    core = ov.Core()
    model = core.read_model(str(path))
    sig = be.signature
    model.reshape({p: list(next(s.shape for s in sig.inputs(batch) if s.name in p.get_names())) for p in model.inputs})
    apply_make_stateful_transformation(model, {f"state_in.{n}": f"state_out.{n}" for n in sig.state_names})
    st = core.compile_model(model, "CPU", be.config_used).create_infer_request()
    st.set_tensor("frame", ov.Tensor(be.frame_in.numpy(), shared_memory=True))
    st_out = np.zeros(tuple(be.frame_in.shape), np.float32)  # kept alive: the request writes into it
    st.set_tensor(sig.frame_output, ov.Tensor(st_out, shared_memory=True))
    calls = [lambda: be.run(0, 1, False), req.infer, st.infer]
    for c in calls:
        c()
    times: list[list[float]] = [[], [], []]
    for rnd in range(repeats):
        for i in [(rnd + k) % 3 for k in range(3)]:
            t = time.perf_counter()
            calls[i]()
            times[i].append(time.perf_counter() - t)
    bare = np.array(times[1])
    return (float(np.median(np.array(times[0]) / bare)) - 1.0, float(np.median(np.array(times[2]) / bare)) - 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op / OpenVINO inference threads")
    ap.add_argument("--repeats", type=int, default=8, help="rotation rounds per batch size")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--models", default="mmnist,demo")
    ap.add_argument("--spin", action="store_true", help="ORT intra-op threads spin-wait (off: a spinning pool "
                                                       "takes the cores from the next runner in the rotation)")
    ap.add_argument("--err-sequences", type=int, default=8, help="held-out sequences for the error columns")
    ap.add_argument("--no-nncf", action="store_true", help="skip NNCF even when installed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort
    import openvino as ov

    from gmg_deploy.data.demo import demo_dataset
    from gmg_deploy.data.moving_shapes import MovingDigitsSpec, moving_digits
    from gmg_deploy.graph.metadata import metadata_from_proto

    info = hw_peak.cpu_info()
    print(f"CPU: {hw_peak.describe(info)}")
    print(f"OpenVINO CPU capabilities: {', '.join(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (/proc/loadavg, {info['cpus']} CPUs)")
    peak = hw_peak.fma_peak(args.threads)
    print(f"FP32 FMA peak, {args.threads} thread(s): {peak:.1f} GFLOP/s (hw_peak.py, measured now)")
    print(f"ORT {ort.__version__} (spin {'on' if args.spin else 'off'}), OpenVINO {ov.__version__.split('-')[0]}, "
          f"{args.threads} thread(s), {args.repeats} rounds in rotation; ms = median, ratio = median per-round "
          "ratio to ORT FP32")
    makers = {"mmnist": ("Moving MNIST config, random weights", mmnist_fp32),
              "demo": ("demo model (gmg_deploy/assets)", demo_fp32)}
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_cpu_"))
    for key in args.models.split(","):
        label, make = makers[key]
        p32, calib = make()
        meta = metadata_from_proto(p32)
        t0 = time.perf_counter()
        ptrt, pcpu = int8_graphs(p32, calib)
        paths = {}
        for n, p in (("fp32", p32), ("int8-trt", ptrt), ("int8-cpu", pcpu)):
            paths[n] = tmp / f"{key}_{n}.onnx"
            onnx.save(p, paths[n])
        print(f"\n{label}: calibration + quantization {time.perf_counter() - t0:.1f} s")
        th, spin = args.threads, args.spin
        runners = [OrtRunner("ort fp32", paths["fp32"], th, spin), OrtRunner("ort int8-cpu", paths["int8-cpu"], th, spin),
                   OvRunner("ov fp32", paths["fp32"], th), OvRunner("ov bf16", paths["fp32"], th, "bf16"),
                   OvRunner("ov f16", paths["fp32"], th, "f16"), OvRunner("ov int8-cpu", paths["int8-cpu"], th),
                   OvRunner("ov int8-trt", paths["int8-trt"], th)]
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        runners = [r for r in runners if getattr(r, "hint", "f32") == "f32" or
                   {"bf16": "BF16", "f16": "FP16"}[r.hint] in caps]
        if not args.no_nncf:
            t0 = time.perf_counter()
            ir = nncf_graph(paths["fp32"], calib, meta, tmp / f"{key}_nncf.xml")
            if ir is None:
                print("nncf not installed: no NNCF row")
            else:
                print(f"NNCF quantize {time.perf_counter() - t0:.1f} s")
                runners.append(OvIrRunner("ov int8-nncf", ir, th))
        if key == "demo":
            frames, pre, aft, truth = demo_dataset("test", n=args.err_sequences), 10, 10, True
        else:
            spec = MovingDigitsSpec(num_frames=20, height=64, width=64)
            frames, pre, aft, truth = moving_digits(args.err_sequences, 3, spec), 10, 10, False
        err_runners = [r for r in runners if not isinstance(r, OvIrRunner)]
        errs = error_columns(err_runners, frames, pre, aft, min(8, args.err_sequences), truth)
        for r in runners:
            if isinstance(r, OvIrRunner):
                errs[r.name] = ir_errors(r, runners[0], frames, pre, aft, truth)
        drop_kind = "SSIM drop vs truth" if truth else "1-SSIM vs FP32"
        for b in [int(x) for x in args.batches.split(",")]:
            feeds = feeds_for(meta, b, rng)
            flops = graph_flops(p32, feeds)
            for r in runners:
                r.prepare(feeds)
            t = rotation(runners, args.repeats)
            print(f"\nB={b}: {flops / 1e9:.3f} GFLOP/step (FP32 graph); errors over {frames.shape[0]} sequences, "
                  f"{aft} forecast steps; drop = worst step's {drop_kind}")
            print(f"{'runner':<14} {'ms':>8} {'ratio':>6} {'GFLOP/s':>8} {'%peak':>6} {'max|diff|':>10} {'drop':>9}")
            for i, r in enumerate(runners):
                med = float(np.median(t[i]))
                ratio = float(np.median(np.array(t[i]) / np.array(t[0])))
                rate = flops / med / 1e9
                e = errs.get(r.name)
                es = f"{e[0]:>10.2e} {e[1]:>9.2e}" if e else f"{'-':>10} {'-':>9}"
                print(f"{r.name:<14} {1e3 * med:>8.2f} {ratio:>5.2f}x {rate:>8.1f} {100 * rate / peak:>5.0f}% {es}")
            ov_over, st_over = overhead(paths["fp32"], th, b, max(args.repeats * 4, 20))
            print(f"OpenVINO backend step vs bare infer(): {100 * ov_over:+.1f}%; MakeStateful request vs the same "
                  f"bare infer(): {100 * st_over:+.1f}%")
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def ir_errors(r: OvIrRunner, ref_runner, frames, pre, aft, truth) -> tuple[float, float]:
    """Errors of an IR runner: the step chain driven directly (the Forecaster opens .onnx graphs only)."""
    from gmg_deploy.evaluate.accuracy import compare_predictions
    from gmg_deploy.graph.metadata import read_metadata

    meta = read_metadata(ref_runner.path)
    ref = forecasts(ref_runner, frames, pre, aft, min(8, frames.shape[0]))
    outs = []
    b = min(8, frames.shape[0])
    for s in range(0, frames.shape[0], b):
        x = frames[s:s + b]
        state = {"state_in." + st["name"]: np.zeros([b] + st["shape"][1:], np.float32) for st in meta["state"]}
        r.prepare({"frame": np.ascontiguousarray(x[:, 0]), **state})
        seq, pred = [], None
        for t in range(pre + aft - 1):
            res = r.req.infer({"frame": np.ascontiguousarray(x[:, t]) if t < pre else pred, **state})
            got = {n: res[o] for o in r.req.model_outputs for n in o.get_names()}
            pred = np.array(got["next_frame"])
            state = {k: np.array(got[k.replace("state_in.", "state_out.")]) for k in state}
            if t >= pre - 1:
                seq.append(pred)
        outs.append(np.stack(seq, 1))
    cand = np.concatenate(outs)
    rep = compare_predictions(ref, cand, frames[:, pre:pre + aft] if truth else None)
    drop = max(rep["ssim_drop"]) if truth else max(1.0 - s for s in rep["ssim_vs_reference"])
    return max(rep["max_abs"]), drop


if __name__ == "__main__":
    main()
