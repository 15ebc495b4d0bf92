"""The machine's ceilings and the timing helpers every benchmark shares.

- ``sgemm_peak()``: float32 GEMM through NumPy's BLAS on 2048-4096 matrices, in GFLOP/s (the
  practical arithmetic peak of any convolution here).
- ``copy_bandwidth()``: a large array copy, in GB/s counting the bytes read plus the bytes written
  (the memory ceiling of bandwidth-bound kernels such as pooling).
- ``best_time(fn)``: wall-clock seconds of ``fn()``, the minimum over repetitions (the machines are
  shared and noisy; the minimum is the most stable estimate of what the code can do).
- ``threads()``: the number of threads both sides use; ``set_torch_threads`` gives PyTorch the same.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def threads() -> int:
    """Threads for ours (OpenMP, BLAS) and the peer: ``OMP_NUM_THREADS`` or the usable cores."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return usable_cores()


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def set_torch_threads(torch: Any) -> int:
    """Give PyTorch as many threads as ours use (2 on the 2-core development machines)."""
    n = threads()
    torch.set_num_threads(n)
    return n


def best_time(
    fn: Callable[[], Any], min_reps: int = 3, max_reps: int = 50, max_time: float = 1.0
) -> dict[str, float]:
    """Time ``fn()`` after one warm-up call: at least ``min_reps`` runs, more while the total stays
    under ``max_time`` seconds (at most ``max_reps``).

    Returns ``min``, ``median`` (seconds) and ``reps``."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_reps and time.perf_counter() - start >= max_time:
            break
    return {"min": min(times), "median": float(np.median(times)), "reps": len(times)}


def sgemm_flops(n: int) -> float:
    """Floating-point operations of one ``(n, n) @ (n, n)`` product (a multiply and an add each)."""
    return 2.0 * n**3


def sgemm_peak(sizes: tuple[int, ...] = (2048, 3072, 4096), reps: int = 3) -> dict[str, Any]:
    """Best float32 GEMM rate through NumPy's BLAS over ``sizes`` (best of ``reps`` each).

    Returns ``gflops`` (the best), ``per_size`` ({n: GFLOP/s}) and ``sizes``.
    """
    rng = np.random.default_rng(0)
    per_size = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), np.float32)
        t = best_time(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), min_reps=reps, max_reps=reps)
        per_size[int(n)] = sgemm_flops(n) / t["min"] / 1e9
    return {"gflops": max(per_size.values()), "per_size": per_size, "sizes": list(sizes)}


def copy_bandwidth(mbytes: int = 256, reps: int = 5) -> dict[str, Any]:
    """Memory bandwidth of ``np.copyto`` on a ``mbytes`` MB float32 array, in GB/s (bytes read plus
    bytes written, best of ``reps``). Returns ``gbs`` and ``mbytes``."""
    n = mbytes * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    t = best_time(lambda: np.copyto(dst, src), min_reps=reps, max_reps=reps)
    return {"gbs": 2 * src.nbytes / t["min"] / 1e9, "mbytes": mbytes}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: processor, cores, threads, library versions."""
    import cnncore

    info: dict[str, Any] = {
        "processor": _cpu_model(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cnncore": cnncore.__version__,
        "usable_cores": usable_cores(),
        "threads": threads(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
