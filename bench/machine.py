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
    """What the numbers were measured on: processor, ISA flags, cores, threads, library versions,
    import order, thread settings."""
    import cnncore

    facts = cpu_facts()
    versions = library_versions()
    return {
        "processor": _cpu_model(),
        "machine": platform.machine(),
        "vendor": facts["vendor"],
        "cpu_family": facts["family"],
        "isa_flags": facts["flags"],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cnncore": cnncore.__version__,
        "torch": versions.get("torch"),
        "onnxruntime": versions.get("onnxruntime"),
        "libraries": versions,
        "usable_cores": usable_cores(),
        "threads": threads(),
        "thread_settings": thread_settings(),
        "import_order": import_order(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------------------------
# what the numbers were measured on
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def cpu_facts() -> dict[str, Any]:
    """Vendor, family, model name, the SIMD flags that matter and the clock /proc/cpuinfo reports
    (the highest of its per-core "cpu MHz" lines: on virtual machines often the nominal clock)."""
    facts: dict[str, Any] = {"vendor": None, "family": None, "flags": [], "cpuinfo_mhz": None}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return facts
    mhz = []
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "vendor_id":
            facts["vendor"] = value
        elif key == "cpu family" and value.isdigit():
            facts["family"] = int(value)
        elif key == "flags" and not facts["flags"]:
            have = set(value.split())
            facts["flags"] = [f for f in ISA_FLAGS if f in have]
        elif key == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
    facts["cpuinfo_mhz"] = max(mhz) if mhz else None
    return facts


def fp32_flops_per_cycle(facts: dict[str, Any]) -> tuple[int, str]:
    """FP32 FLOP per cycle per core from the ISA (two FMA pipes; an FMA is 2 FLOP), and why.

    AMD before family 26 (Zen 4 and older) splits AVX-512 into two 256-bit halves: 2 x 8 x 2 = 32.
    Zen 5 (family 26) and Intel server cores with AVX-512 have two 512-bit pipes: 64.  AVX2 with
    FMA: 32; AVX without FMA (a multiply and an add pipe): 16; otherwise SSE: 8."""
    flags, vendor, family = set(facts.get("flags") or ()), facts.get("vendor"), facts.get("family")
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and (family or 0) < 26:
            return 32, "AVX-512 on 256-bit pipes (AMD Zen 4): 2 FMA x 8 lanes x 2"
        return 64, "AVX-512, two 512-bit FMA pipes: 2 FMA x 16 lanes x 2"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: 2 FMA x 8 lanes x 2"
    if "avx" in flags:
        return 16, "AVX without FMA: a multiply and an add pipe x 8 lanes"
    return 8, "SSE: 2 pipes x 4 lanes"


def fma_peak(cores: int, clock_ghz: float | None = None) -> dict[str, Any]:
    """The FMA peak (GFLOP/s) of ``cores`` cores: FLOP/cycle from the ISA times the clock.

    The clock is ``CNNCORE_BENCH_CLOCK_GHZ`` when set (a measured boost clock), else the highest
    "cpu MHz" of /proc/cpuinfo read while the cores are busy; both are recorded, with the basis."""
    facts = cpu_facts()
    per_cycle, why = fp32_flops_per_cycle(facts)
    env = os.environ.get("CNNCORE_BENCH_CLOCK_GHZ")
    if env:
        clock_ghz, source = float(env), "CNNCORE_BENCH_CLOCK_GHZ"
    elif clock_ghz is not None:
        source = "/proc/cpuinfo cpu MHz read while busy"
    else:
        clock_ghz = (facts["cpuinfo_mhz"] or 0.0) / 1e3 or None
        source = "/proc/cpuinfo cpu MHz"
    gflops = cores * per_cycle * clock_ghz if clock_ghz else None
    return {
        "gflops": gflops,
        "flops_per_cycle_per_core": per_cycle,
        "isa": why,
        "clock_ghz": clock_ghz,
        "clock_source": source,
        "cores": cores,
    }


def busy_clock_ghz(seconds: float = 0.3) -> float | None:
    """The highest /proc/cpuinfo clock read while a GEMM keeps the cores busy (GHz)."""
    a = np.ones((1024, 1024), np.float32)
    best = None
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ a
        mhz = cpu_facts()["cpuinfo_mhz"]
        if mhz:
            best = max(best or 0.0, mhz / 1e3)
    return best


def library_versions() -> dict[str, Any]:
    """NumPy, its BLAS (threadpoolctl, else NumPy's config), PyTorch, ONNX Runtime, cnncore."""
    import importlib.metadata as md

    out: dict[str, Any] = {}
    for dist in ("numpy", "torch", "onnxruntime", "onnx", "cnncore", "numba", "threadpoolctl"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    try:
        from threadpoolctl import threadpool_info

        out["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            | {"library": os.path.basename(p.get("filepath", ""))}
            for p in threadpool_info()
        ]
    except ImportError:
        out["threadpools"] = None
        try:
            cfg = np.show_config(mode="dicts")  # NumPy >= 1.26
            out["numpy_blas"] = (cfg or {}).get("Build Dependencies", {}).get("blas")
        except TypeError:  # pragma: no cover - old NumPy
            out["numpy_blas"] = None
    return out


def import_order(names: tuple[str, ...] = ("cnncore_kernels", "torch", "onnxruntime")) -> list:
    """The order in which these modules were first imported in this process (``sys.modules``
    keeps insertion order): the first to load libgomp fixes its wait policy for everyone."""
    import sys

    return [m for m in sys.modules if m in names]


# The environment variables that set thread counts and the OpenMP wait policy.
THREAD_ENV_KEYS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "CNNCORE_NUM_THREADS",
)


def thread_settings() -> dict[str, Any]:
    """The environment and the libraries' thread counts (OpenMP wait policy included)."""
    import sys

    out: dict[str, Any] = {k: os.environ.get(k) for k in THREAD_ENV_KEYS}
    out["libgomp_wait_policy"] = libgomp_wait_policy()
    out["threads"] = threads()
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_num_threads"] = torch.get_num_threads()
        out["torch_interop_threads"] = torch.get_num_interop_threads()
    return out


def libgomp_wait_policy() -> str:
    """The wait policy libgomp runs with in this process: the user's ``OMP_WAIT_POLICY`` and
    ``GOMP_SPINCOUNT`` if any were set (cnncore_kernels then leaves libgomp alone), else cnncore's
    throttle (``cnncore_kernels/_openmp.py``), whichever library was imported first.  (Neither
    library writes these variables, so the environment now is the one libgomp read.)"""
    from cnncore_kernels import _openmp

    if _openmp.throttle_thread() is not None:
        return "throttled by cnncore (100 spins, then sleep)"
    given = {k: os.environ[k] for k in sorted(_openmp.USER_SETTINGS) if k in os.environ}
    if not given:
        return "default (spin, then sleep)"
    return ", ".join(f"{k}={v}" for k, v in given.items()) + " (set by the user)"


def load_average() -> float | None:
    """The 1-minute load average (other processes share the cores: read the numbers with it)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        return None


def load_warning(load: float | None, n_threads: int, when: str) -> str | None:
    """A warning when the load average exceeds the thread count (others competed for the cores)."""
    if load is not None and load > n_threads:
        return (
            f"load average {load} at the {when} exceeds the {n_threads} threads of the run: other "
            "processes competed for the cores, so every time here is pessimistic and noisier"
        )
    return None
