"""This machine's CPU description and FP32 peak: ISA x cores x clock, an FMA-bound C kernel, a large GEMM.

* ``cpu_info()``: model name, cores, ``cpu MHz`` and the SIMD/VNNI flags from ``/proc/cpuinfo``.
* ``fma_peak()``: a register-blocked FMA loop in C (16 independent 512-bit or 256-bit accumulators, no
  memory traffic), compiled here with ``gcc -O2 -march=native`` and run on one OS thread per core
  (ctypes releases the GIL), best of many short runs (a loaded host steals whole slices): FLOPs =
  iterations x accumulators x lanes x 2. This is the hardware FP32
  peak the "% of peak" figures use. Needs ``gcc``; returns ``None`` without it.
* ``derived_peak()``: ISA x cores x clock, assuming 2 FMA units per core (the ``cpu MHz`` of a VM is
  the nominal clock; turbo can be higher) - printed as a cross-check, not used.
* ``gemm_rate()``: best ``torch.mm`` rate at n x n (a second cross-check: a good GEMM reaches 80-95% of
  the FMA peak, never more).

    python benchmarks/hw_peak.py
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_SRC = r"""
#include <immintrin.h>
#ifdef __AVX512F__
typedef __m512 V; 
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define LANES 16
static float hsum(V v) { return _mm512_reduce_add_ps(v); }
#else
typedef __m256 V;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define LANES 8
static float hsum(V v) { float t[8]; _mm256_storeu_ps(t, v); float s = 0; for (int i = 0; i < 8; i++) s += t[i]; return s; }
#endif
int lanes(void) { return LANES; }
float fma_loop(long iters) {
    V a = SET1(0.999999f), b = SET1(1e-7f);
    V c0 = SET1(0), c1 = SET1(1), c2 = SET1(2), c3 = SET1(3), c4 = SET1(4), c5 = SET1(5), c6 = SET1(6), c7 = SET1(7);
    V c8 = SET1(8), c9 = SET1(9), c10 = SET1(10), c11 = SET1(11), c12 = SET1(12), c13 = SET1(13), c14 = SET1(14), c15 = SET1(15);
    for (long i = 0; i < iters; i++) {
        c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
        c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
        c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
        c12 = FMA(c12, a, b); c13 = FMA(c13, a, b); c14 = FMA(c14, a, b); c15 = FMA(c15, a, b);
    }
    V s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
    s = ADD(s, ADD(ADD(ADD(c8, c9), ADD(c10, c11)), ADD(ADD(c12, c13), ADD(c14, c15))));
    return hsum(s);
}
"""
ACCUMULATORS = 16


def cpu_info() -> dict[str, Any]:
    """Model name, logical CPUs, nominal MHz and SIMD flags of this machine (from /proc/cpuinfo)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    first = text.split("\n\n")[0]
    fields = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in first.splitlines()) if k)
    flags = set(fields.get("flags", "").split())
    want = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"]
    return {
        "model": fields.get("model name", "unknown"),
        "cpus": os.cpu_count() or 1,
        "mhz": float(fields["cpu MHz"]) if "cpu MHz" in fields else None,
        "isa": [f for f in want if f in flags],
        "hypervisor": "hypervisor" in flags,
    }


def describe(info: dict[str, Any] | None = None) -> str:
    i = info or cpu_info()
    mhz = f", {i['mhz']:.0f} MHz nominal" if i["mhz"] else ""
    vm = " (virtual machine)" if i["hypervisor"] else ""
    return f"{i['model']}, {i['cpus']} logical CPUs{mhz}{vm}; ISA: {' '.join(i['isa']) or 'no AVX2'}"


def derived_peak(info: dict[str, Any] | None = None, fma_units: int = 2) -> float | None:
    """GFLOP/s = cores x clock x lanes x 2 (FMA) x ``fma_units``, from /proc/cpuinfo (nominal clock)."""
    i = info or cpu_info()
    if not i["mhz"]:
        return None
    lanes = 16 if "avx512f" in i["isa"] else 8 if "avx2" in i["isa"] else 4
    return i["cpus"] * i["mhz"] * 1e-3 * lanes * 2 * fma_units


def _library() -> ctypes.CDLL | None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    d = Path(tempfile.mkdtemp(prefix="gmg_fma_"))
    src, lib = d / "fma.c", d / "fma.so"
    src.write_text(_SRC)
    subprocess.run([cc, "-O2", "-march=native", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    so.fma_loop.restype = ctypes.c_float
    so.fma_loop.argtypes = [ctypes.c_long]
    return so


def fma_peak(threads: int | None = None, seconds: float = 0.05, repeats: int = 30) -> float | None:
    """Best measured FP32 FMA rate (GFLOP/s) of ``threads`` (default: all CPUs) concurrent FMA loops."""
    so = _library()
    if so is None:
        return None
    n = threads or os.cpu_count() or 1
    lanes = so.lanes()
    iters = 1000
    while True:  # size the loop to ~``seconds``
        t = time.perf_counter()
        so.fma_loop(iters)
        dt = time.perf_counter() - t
        if dt > seconds / 4:
            break
        iters *= 4
    iters = int(iters * seconds / dt)
    best = 0.0
    for _ in range(repeats):
        ths = [threading.Thread(target=so.fma_loop, args=(iters,)) for _ in range(n)]
        t = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        dt = time.perf_counter() - t
        best = max(best, n * iters * ACCUMULATORS * lanes * 2 / dt / 1e9)
    return best


def gemm_rate(threads: int | None = None, n: int = 2048, repeats: int = 5) -> float:
    """Best ``torch.mm`` FP32 rate (GFLOP/s) at n x n x n."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


if __name__ == "__main__":
    info = cpu_info()
    print(describe(info))
    d = derived_peak(info)
    print(f"derived FP32 peak (cores x nominal clock x 2 FMA units x lanes x 2): "
          f"{d:.1f} GFLOP/s" if d else "derived peak: no clock in /proc/cpuinfo")
    p1, pn = fma_peak(1), fma_peak()
    print(f"measured FMA-bound kernel: {p1:.1f} GFLOP/s on 1 thread, {pn:.1f} GFLOP/s on {info['cpus']} threads")
    print(f"torch.mm 2048^3: {gemm_rate():.1f} GFLOP/s")
