"""Load test: S concurrent streams x F frames through gmg-serve (python flavour, demo model), vs local runs.

Exports the shipped demo model as a forecast graph (horizon = aft = 10), writes a python-flavour Triton
repository (ONNX Runtime inside the server, max_batch_size = S), starts ``gmg-serve`` on free 127.0.0.1 ports
and drives S threads, each one Triton sequence (``Forecaster.open("triton://...", batch_size=1)``) observing
F frames (demo test sequences back to back) and reading the 10-frame forecast after each. Reports throughput
(frames/s over all streams), p50/p99 latency of one observe (request -> forecast), errors, and whether every
stream's forecasts equal its own single-stream local run (ONNX Runtime, same graph, after the server stops).
For scale, the same frames also go through one in-process ONNX Runtime Forecaster with batch S (no server).

With ``--servers N`` it starts N replicas and gives the streams the URL list (least-loaded sticky routing);
``--kill-at F`` SIGKILLs the first server (tritonserver and gmg-serve) once every stream observed F frames:
the report adds streams lost, failovers, time to resume (p50/p99 of the failed observe), frames/s before
and after, and checks the failed-over streams against a local reset + replay of the same ring. ``--replay-cost``
measures, locally, what a failover replaying W frames costs against an uninterrupted stream (per-step MSE/SSIM
of the one-step predictions after the switch, demo test set).

    python benchmarks/bench_triton.py [--streams 16] [--frames 200] [--threads 2] [--instances 1]
    python benchmarks/bench_triton.py --servers 2 --streams 16 --kill-at 100 --frames 150
    python benchmarks/bench_triton.py --replay-cost
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


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL gmg-serve and everything below it (tritonserver, its stubs, the janitor)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    todo, found = [proc.pid], []
    while todo:
        for c in kids.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    for pid in [*found[::-1], proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait(30)


def local_reference(fc_path: Path, frames: np.ndarray, moves: list[dict], window: int, threads: int) -> np.ndarray:
    """One stream ``(F,C,H,W)`` through a local forecaster that resets and replays the last ``window`` frames
    where the remote stream failed over (``moves``: its failover dicts) -> forecasts ``(F,K,C,H,W)``."""
    from gmg_deploy.runtime.forecaster import Forecaster

    at = {m["step"] for m in moves}
    out = []
    with Forecaster.open(fc_path, batch_size=1, threads=threads) as loc:
        K = loc.backend.horizon or 1
        for t in range(frames.shape[0]):
            if t in at:
                loc.reset()
                if t - window + 1 < t:
                    loc.observe(frames[None, max(0, t - window + 1) : t])
            loc.observe(frames[None, t])
            out.append(loc.forecast(K)[0])
    return np.stack(out)


def replay_cost(windows: list[int], streams: int, switch: int, after: int, threads: int) -> dict:
    """Local: uninterrupted streams vs the same streams reset at ``switch`` and replaying W frames."""
    from gmg_deploy.data.demo import demo_checkpoint_path, demo_dataset
    from gmg_deploy.evaluate.metrics import mse_per_step, ssim_per_step
    from gmg_deploy.export import build_proto
    from gmg_deploy.model.checkpoint import load_checkpoint
    from gmg_deploy.runtime.forecaster import Forecaster

    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        model = load_checkpoint(demo_checkpoint_path())
        fc_path = work / "demo_fc.onnx"
        onnx.save(build_proto(model, graph="forecast"), fc_path)
        n_frames = switch + after + 1
        per = -(-n_frames // 20)
        frames = demo_dataset("test", n=streams * per).reshape(streams, per * 20, 1, 32, 32)[:, :n_frames].copy()
        truth = frames[:, switch + 1 : switch + after + 1]

        def run(window: int | None) -> np.ndarray:
            with Forecaster.open(fc_path, batch_size=streams, threads=threads) as fc:
                if window is None:
                    fc.observe(frames[:, :switch])
                elif window > 1:
                    fc.observe(frames[:, switch - window + 1 : switch])
                return fc.observe(frames[:, switch : switch + after])  # one-step predictions of switch+1..

        base = run(None)
        res: dict = {"streams": streams, "switch_at": switch, "steps_after": after,
                     "uninterrupted": {"mse": [round(float(x), 3) for x in mse_per_step(base, truth)],
                                       "ssim": [round(float(x), 4) for x in ssim_per_step(base, truth)]}}
        for w in windows:
            p = run(w)
            res[f"replay_{w}"] = {"mse": [round(float(x), 3) for x in mse_per_step(p, truth)],
                                  "ssim": [round(float(x), 4) for x in ssim_per_step(p, truth)],
                                  "max_abs_diff_vs_uninterrupted": [round(float(np.abs(p[:, k] - base[:, k]).max()), 5)
                                                                    for k in range(after)]}
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads in the server (and local run)")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--servers", type=int, default=1, help="gmg-serve replicas behind one URL list")
    ap.add_argument("--kill-at", type=int, default=None, help="SIGKILL the first server after this many frames "
                    "(--replay-cost: the switch frame [105])")
    ap.add_argument("--replay", type=int, default=None, help="failover replay window (frames) [the model's pre]")
    ap.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    ap.add_argument("--replay-cost", action="store_true", help="only the local replay-window measurement")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    a = ap.parse_args()
    if a.replay_cost:
        res = replay_cost([1, 2, 5, 10, 20, 40], streams=a.streams, switch=a.kill_at or 105, after=10,
                          threads=a.threads)  # 105: mid-sequence (the demo sequences are 20 frames)
        text = json.dumps(res, indent=1)
        print(text)
        if a.json_out:
            Path(a.json_out).write_text(text)
        return
    if a.kill_at is not None and not (a.servers >= 2 and 0 < a.kill_at < a.frames):
        raise SystemExit("--kill-at needs --servers >= 2 and 0 < --kill-at < --frames")
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
    W = a.replay or model.config.pre_seq_length
    per = -(-F // 20)
    frames = demo_dataset("test", n=S * per).reshape(S, per * 20, 1, 32, 32)[:, :F].copy()
    try:
        triton_cmd.main(["--model", str(fc_path), "-o", str(work / "repo"), "--flavour", "python", "--max-batch",
                         str(S), "--max-streams", str(S), "--threads", str(a.threads), "--instances",
                         str(a.instances)], standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
    procs, addrs = [], []
    try:
        for _ in range(a.servers):
            ports = free_local_ports(3)
            procs.append(start_serve(work / "repo", ports))
            addrs.append(f"127.0.0.1:{ports[0]}")
        url = f"triton://{','.join(addrs)}/gmg"
        lat: list[list[float]] = [[] for _ in range(S)]
        outs = [np.empty((F, K, 1, 32, 32), np.float32) for _ in range(S)]
        moves: list[list[dict]] = [[] for _ in range(S)]
        first_server: list[str] = [""] * S
        errors: list[str] = []
        barrier = threading.Barrier(S + 1)
        kill_gate = threading.Barrier(S + 1)
        done_t = [0.0] * S

        def stream(i: int) -> None:
            try:
                with Forecaster.open(url, batch_size=1, timeout=a.timeout, replay=W) as fc:
                    first_server[i] = fc.backend.server_of[0]
                    barrier.wait(120)
                    for t in range(F):
                        if t == a.kill_at:
                            kill_gate.wait(600)
                            kill_gate.wait(600)
                        t0 = time.perf_counter()
                        fc.observe(frames[i : i + 1, t])
                        outs[i][t] = fc.forecast(K)[0]
                        lat[i].append(time.perf_counter() - t0)
                    moves[i] = list(fc.backend.failovers)
                    done_t[i] = time.perf_counter()
            except Exception as e:  # counted and reported
                errors.append(f"stream {i}: {type(e).__name__}: {e}")
                for b in (barrier, kill_gate):
                    b.abort()

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(S)]
        for th in threads:
            th.start()
        try:
            barrier.wait(300)
        except threading.BrokenBarrierError:
            pass
        t0 = time.perf_counter()
        t_kill = None
        if a.kill_at is not None:
            try:
                kill_gate.wait(3600)  # every stream observed kill_at frames
                t_kill = time.perf_counter()
                kill_tree(procs[0])
                kill_gate.wait(60)
            except threading.BrokenBarrierError:
                pass
        for th in threads:
            th.join(3600)
        t_end = time.perf_counter()
        rcs = []
        for p in procs[1 if a.kill_at is not None else 0 :]:
            p.send_signal(signal.SIGINT)
            rcs.append(p.wait(60))
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p)

    # local references: single-stream runs (reset + replay where the stream failed over), and a batch-S run
    worst, mismatched, worst_moved = 0.0, 0, 0.0
    for i in range(S):
        ref = local_reference(fc_path, frames[i], moves[i], W, a.threads)
        n = len(lat[i])
        d = float(np.abs(ref[:n] - outs[i][:n]).max()) if n else 0.0
        worst = max(worst, d)
        mismatched += d >= 1e-5
        if moves[i]:
            worst_moved = max(worst_moved, d)
    with Forecaster.open(fc_path, batch_size=S, threads=a.threads) as loc:
        tb = time.perf_counter()
        for t in range(F):
            loc.observe(frames[:, t])
            loc.forecast(K)
        local_s = time.perf_counter() - tb
    all_lat = np.array([x for s in lat for x in s]) * 1e3
    wall = t_end - t0
    res = {
        "streams": S, "frames_per_stream": F, "horizon": K, "server_threads": a.threads, "instances": a.instances,
        "servers": a.servers, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "streams_per_server": {ad: first_server.count(ad) for ad in addrs},
        "requests": int(all_lat.size), "errors": len(errors), "first_errors": errors[:3],
        "wall_s": round(wall, 2), "frames_per_s": round(all_lat.size / wall, 1) if wall > 0 else None,
        "latency_ms_p50": round(float(np.percentile(all_lat, 50)), 2) if all_lat.size else None,
        "latency_ms_p99": round(float(np.percentile(all_lat, 99)), 2) if all_lat.size else None,
        "forecasts_equal_local_reference": mismatched == 0 and not errors, "max_abs_diff": worst,
        "local_batch_frames_per_s": round(S * F / local_s, 1), "serve_exit_codes": rcs,
    }
    if a.kill_at is not None:
        fo = [m for ms in moves for m in ms]
        resume = np.array([lat[i][a.kill_at] for i in range(S) if moves[i] and len(lat[i]) > a.kill_at]) * 1e3
        before = sum(min(len(x), a.kill_at) for x in lat)
        after = sum(max(0, len(x) - a.kill_at) for x in lat)
        res.update({
            "kill_at": a.kill_at, "killed": addrs[0], "replay_window": W,
            "streams_lost": S - sum(1 for i in range(S) if len(lat[i]) == F), "failovers": len(fo),
            "replayed_frames": sum(m["replayed"] for m in fo),
            "resume_ms_p50": round(float(np.percentile(resume, 50)), 1) if resume.size else None,
            "resume_ms_p99": round(float(np.percentile(resume, 99)), 1) if resume.size else None,
            "frames_per_s_before": round(before / (t_kill - t0), 1) if t_kill else None,
            "frames_per_s_after": round(after / (t_end - t_kill), 1) if t_kill else None,
            "failed_over_equal_local_replay": worst_moved < 1e-5 and bool(fo), "max_abs_diff_failed_over": worst_moved,
        })
    res["triton_vs_local_batch_throughput"] = round(res["frames_per_s"] / res["local_batch_frames_per_s"], 3) \
        if res["frames_per_s"] else None
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(res, indent=2)
    print(text)
    print()
    rows = [(k, res[k]) for k in ("servers", "streams", "frames_per_stream", "kill_at", "streams_lost", "failovers",
                                  "replayed_frames", "resume_ms_p50", "resume_ms_p99", "frames_per_s_before",
                                  "frames_per_s_after", "frames_per_s", "latency_ms_p50", "latency_ms_p99",
                                  "failed_over_equal_local_replay", "forecasts_equal_local_reference", "max_abs_diff",
                                  "loadavg") if k in res]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    if a.json_out:
        Path(a.json_out).write_text(text)


if __name__ == "__main__":
    main()
