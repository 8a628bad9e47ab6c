"""Time to generate synthetic moving-digit sequences (the demo's data), a figure rather than a test.

Reports sequences per second of ``moving_digits(n)`` (median of ``--repeats`` runs); wall-clock numbers
depend on the machine's load, so the test suite only checks values, never times.

    python benchmarks/bench_data.py [--sequences 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from gmg_deploy.data.moving_shapes import moving_digits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    times = []
    for r in range(args.repeats):
        t = time.perf_counter()
        moving_digits(args.sequences, seed=1 + r)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"moving_digits({args.sequences}): median {med:.2f} s over {args.repeats} runs "
          f"({args.sequences / med:.0f} sequences/s; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
