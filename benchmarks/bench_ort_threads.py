"""ONNX Runtime CPU: intra-op threads (1 vs all cores) and spin-waiting (on vs off), interleaved in one process.

For each setting: median wall time of one step and the CPU time the process used per step
(``time.process_time``). Spinning threads busy-wait between parallel sections, so they burn CPU that other
processes on a shared host lose; ``--no-spin`` lets them sleep. Demo model (FP32 and INT8 ``--target cpu``).

    python benchmarks/bench_ort_threads.py [--batch 8] [--repeats 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_precision import demo_fp32, feeds_for, int8_graphs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    from gmg_deploy.graph.metadata import metadata_from_proto
    from gmg_deploy.evaluate.ort_session import make_session

    p32, calib = demo_fp32()
    _, pcpu = int8_graphs(p32, calib)
    feeds = feeds_for(metadata_from_proto(p32), args.batch, np.random.default_rng(0))
    cores = os.cpu_count() or 1
    settings = [(t, s) for t in sorted({1, cores}) for s in (True, False)]
    print(f"load before: {os.getloadavg()[0]:.2f} ({cores} CPUs); demo model, batch {args.batch}, "
          f"{args.repeats} interleaved rounds")
    for label, proto in (("fp32", p32), ("int8-cpu", pcpu)):
        sess = [make_session(proto, t, s) for t, s in settings]
        for s in sess:
            s.run(None, feeds)
        wall = [[] for _ in sess]
        cpu = [[] for _ in sess]
        for _ in range(args.repeats):
            for i, s in enumerate(sess):
                w, c = time.perf_counter(), time.process_time()
                s.run(None, feeds)
                wall[i].append(time.perf_counter() - w)
                cpu[i].append(time.process_time() - c)
        base = np.array(wall[0])
        for (t, sp), w, c in zip(settings, wall, cpu):
            print(f"{label:<9} threads {t} spin {'on ' if sp else 'off'}: wall {1e3 * np.median(w):7.1f} ms "
                  f"({np.median(np.array(w) / base):.2f}x of 1 thread spin on), CPU {1e3 * np.median(c):7.1f} ms/step")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
