"""Compare the OpenBLAS copies the kernels can call: ``python -m bench.blas_libraries [rounds]``.

1. Single-threaded sgemm GFLOP/s on conv-shaped row-major products, calling each library's CBLAS
   directly (scipy-openblas32, NumPy's bundled ILP64 copy, SciPy's bundled copy; those present).
2. conv2d forward/backward times with the kernels bound to each library (``CNNCORE_BLAS``), one
   fresh interpreter per library and round, since the library is chosen at import.

Rounds are interleaved (library A, B, C, A, B, C, ...) and the medians printed with their range.
It reports and never asserts a time; the reason for the default library is in
``kernels/_blas.pyx``.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# (M, N, K) of C = A @ B: conv forward as K x (Ho*Wo) x (C*kh*kw)
SGEMM_SHAPES = [(64, 14400, 1600), (256, 4096, 3200), (32, 4096, 75), (128, 1024, 576)]

_CONV = r"""
import json, time
import numpy as np
import cnncore
from cnncore.functional import conv2d, conv2d_backward
from cnncore_kernels import _blas

rng = np.random.default_rng(0)
cases = {"fwd (1,128,64,64) k5": ((1, 128, 64, 64), (256, 128, 5, 5), 0, False),
         "fwd (64,64,15,15) k5": ((64, 64, 15, 15), (64, 64, 5, 5), 0, False),
         "fwd (8,64,56,56) k3 p1": ((8, 64, 56, 56), (64, 64, 3, 3), 1, False),
         "bwd (64,64,15,15) k5": ((64, 64, 15, 15), (64, 64, 5, 5), 0, True)}
out = {"library": _blas.blas_info()["library"]}
for name, (xs, ws, p, backward) in cases.items():
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    y = conv2d(x, w, None, 1, p)
    def run(x=x, w=w, y=y, p=p, backward=backward):
        return conv2d_backward(y, x, w, 1, p) if backward else conv2d(x, w, None, 1, p)
    run()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    out[name] = sorted(times)[2] * 1e3
print(json.dumps(out))
"""


def _cblas_sgemms() -> dict:
    """name -> a callable sgemm(M, N, K, a, b, c) for each OpenBLAS present, set to 1 thread."""
    import scipy

    p = ctypes.POINTER(ctypes.c_float)
    found = {}
    try:
        import scipy_openblas32 as so

        lib = ctypes.CDLL(os.path.join(so.get_lib_dir(), so.get_library(fullname=True)))
        lib.scipy_openblas_set_num_threads(1)
        found[f"scipy-openblas32 {so.__version__}"] = (lib.scipy_cblas_sgemm, ctypes.c_int)
    except (ImportError, OSError):
        pass
    for path in glob.glob(os.path.dirname(np.__file__) + ".libs/libscipy_openblas64_*.so*"):
        lib = ctypes.CDLL(path)
        lib.scipy_openblas_set_num_threads64_(1)
        found[f"numpy {np.__version__} bundled"] = (lib.scipy_cblas_sgemm64_, ctypes.c_int64)
    for path in glob.glob(os.path.dirname(scipy.__file__) + ".libs/libscipy_openblas-*.so*"):
        lib = ctypes.CDLL(path)
        lib.scipy_openblas_set_num_threads(1)
        found[f"scipy {scipy.__version__} bundled"] = (lib.scipy_cblas_sgemm, ctypes.c_int)
    calls = {}
    for name, (fn, i) in found.items():
        e = ctypes.c_int
        fn.argtypes = [e, e, e, i, i, i, ctypes.c_float, p, i, p, i, ctypes.c_float, p, i]
        calls[name] = fn
    return calls


def sgemm_table(rounds: int) -> None:
    calls = _cblas_sgemms()
    p = ctypes.POINTER(ctypes.c_float)
    rng = np.random.default_rng(0)
    print("single-threaded sgemm, GFLOP/s: median [min-max]")
    for m, n, k in SGEMM_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        pa, pb, pc = (z.ctypes.data_as(p) for z in (a, b, c))
        rates: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, fn in calls.items():
                t = time.perf_counter()
                fn(101, 111, 111, m, n, k, 1.0, pa, k, pb, n, 0.0, pc, n)  # row-major, no trans
                rates[name].append(2 * m * n * k / (time.perf_counter() - t) / 1e9)
        cells = [
            f"{name}: {statistics.median(r):.0f} [{min(r):.0f}-{max(r):.0f}]"
            for name, r in rates.items()
        ]
        print(f"  {m}x{n}x{k}: " + "; ".join(cells))


def conv_table(rounds: int, libraries=("scipy-openblas32", "numpy", "scipy")) -> None:
    runs: dict[str, list[dict]] = {lib: [] for lib in libraries}
    for _ in range(rounds):
        for lib in libraries:
            env = dict(os.environ, CNNCORE_BLAS=lib)
            out = subprocess.run(
                [sys.executable, "-c", _CONV], env=env, capture_output=True, text=True, check=True
            )
            runs[lib].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("conv2d (OpenMP threads as set), ms: median [min-max]")
    for lib, results in runs.items():
        print(f"  CNNCORE_BLAS={lib} ({results[0]['library']})")
        for case in (k for k in results[0] if k != "library"):
            v = [r[case] for r in results]
            print(f"    {case:24s} {statistics.median(v):7.1f} [{min(v):.1f}-{max(v):.1f}]")


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    sgemm_table(rounds)
    conv_table(rounds)
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
