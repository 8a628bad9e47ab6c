"""Load test: S concurrent streams x F frames through gmg-serve (python flavour, demo model), vs local runs.

Exports the shipped demo model as a forecast graph (horizon = aft = 10), writes a python-flavour Triton
repository (ONNX Runtime inside the server, max_batch_size = S), starts ``gmg-serve`` on free 127.0.0.1 ports
and drives S threads, each one Triton sequence (``Forecaster.open("triton://...", batch_size=1)``) observing
F frames (demo test sequences back to back) and reading the 10-frame forecast after each. Reports throughput
(frames/s over all streams), p50/p99 latency of one observe (request -> forecast), errors, and whether every
stream's forecasts equal its own single-stream local run (ONNX Runtime, same graph, after the server stops).
For scale, the same frames also go through one in-process ONNX Runtime Forecaster with batch S (no server).

    python benchmarks/bench_triton.py [--streams 16] [--frames 200] [--threads 2] [--instances 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx

from gmg_deploy.serve.server import free_local_ports

ROOT = Path(__file__).resolve().parents[1]


def start_serve(repo: Path, ports: list[int], timeout_s: float = 180.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "gmg_deploy.cli.serve_cmd", str(repo), "--grpc-port",
                             str(ports[0]), "--http-port", str(ports[1]), "--metrics-port", str(ports[2]),
                             "--timeout", str(timeout_s)], stdout=subprocess.PIPE, text=True, env=env)
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("serving"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout_s + 10) or proc.poll() is not None:
        proc.kill()
        raise SystemExit("gmg-serve did not start")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads in the server (and local run)")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    a = ap.parse_args()
    from gmg_deploy.cli.triton_cmd import main as triton_cmd
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint
    from gmg_deploy.runtime.forecaster import Forecaster

    S, F = a.streams, a.frames
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    model = load_checkpoint(demo_checkpoint_path())
    fc_path = work / "demo_fc.onnx"
    onnx.save(build_proto(model, graph="forecast"), fc_path)
    K = model.config.aft_seq_length
    per = -(-F // 20)
    frames = demo_dataset("test", n=S * per).reshape(S, per * 20, 1, 32, 32)[:, :F].copy()
    try:
        triton_cmd.main(["--model", str(fc_path), "-o", str(work / "repo"), "--flavour", "python", "--max-batch",
                         str(S), "--max-streams", str(S), "--threads", str(a.threads), "--instances",
                         str(a.instances)], standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
    ports = free_local_ports(3)
    proc = start_serve(work / "repo", ports)
    url = f"triton://127.0.0.1:{ports[0]}/gmg"
    lat: list[list[float]] = [[] for _ in range(S)]
    outs = [np.empty((F, K, 1, 32, 32), np.float32) for _ in range(S)]
    errors: list[str] = []
    barrier = threading.Barrier(S + 1)

    def stream(i: int) -> None:
        try:
            with Forecaster.open(url, batch_size=1) as fc:
                barrier.wait(60)
                for t in range(F):
                    t0 = time.perf_counter()
                    fc.observe(frames[i : i + 1, t])
                    outs[i][t] = fc.forecast(K)[0]
                    lat[i].append(time.perf_counter() - t0)
        except Exception as e:  # counted and reported
            errors.append(f"stream {i}: {type(e).__name__}: {e}")
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(S)]
    for th in threads:
        th.start()
    try:
        barrier.wait(120)
        t0 = time.perf_counter()
    except threading.BrokenBarrierError:
        t0 = time.perf_counter()
    for th in threads:
        th.join(3600)
    wall = time.perf_counter() - t0
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(60)

    # single-stream local runs (same graph, ONNX Runtime in this process) and an in-process batch-S run
    worst, mismatched = 0.0, 0
    for i in range(S):
        with Forecaster.open(fc_path, batch_size=1, threads=a.threads) as loc:
            for t in range(F):
                loc.observe(frames[i : i + 1, t])
                d = float(np.abs(loc.forecast(K)[0] - outs[i][t]).max())
                worst = max(worst, d)
                mismatched += d >= 1e-5
    with Forecaster.open(fc_path, batch_size=S, threads=a.threads) as loc:
        tb = time.perf_counter()
        for t in range(F):
            loc.observe(frames[:, t])
            loc.forecast(K)
        local_s = time.perf_counter() - tb
    all_lat = np.array([x for s in lat for x in s]) * 1e3
    res = {
        "streams": S, "frames_per_stream": F, "horizon": K, "server_threads": a.threads, "instances": a.instances,
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "requests": int(all_lat.size), "errors": len(errors), "first_errors": errors[:3],
        "wall_s": round(wall, 2), "frames_per_s": round(all_lat.size / wall, 1) if wall > 0 else None,
        "latency_ms_p50": round(float(np.percentile(all_lat, 50)), 2) if all_lat.size else None,
        "latency_ms_p99": round(float(np.percentile(all_lat, 99)), 2) if all_lat.size else None,
        "forecasts_equal_single_stream_local": mismatched == 0 and not errors, "max_abs_diff": worst,
        "local_batch_frames_per_s": round(S * F / local_s, 1), "serve_exit_code": rc,
    }
    res["triton_vs_local_batch_throughput"] = round(res["frames_per_s"] / res["local_batch_frames_per_s"], 3) \
        if res["frames_per_s"] else None
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(res, indent=2)
    print(text)
    if a.json_out:
        Path(a.json_out).write_text(text)


if __name__ == "__main__":
    main()
