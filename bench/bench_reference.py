"""The machine's ceilings, measured in the same run as the kernels: float32 GEMM through NumPy's
BLAS (2048-4096 matrices, GFLOP/s) and a large array copy (GB/s, bytes read plus written)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.machine import sgemm_flops


@pytest.mark.parametrize("n", (2048, 3072, 4096))
@pytest.mark.benchmark(
    group="reference sgemm", min_rounds=2, max_time=2.0, warmup=True, warmup_iterations=1
)
def test_sgemm(benchmark, throughput, n):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    benchmark(np.matmul, a, b, out=c)
    throughput(
        benchmark,
        kernel="sgemm",
        direction="forward",
        config=f"{n}x{n}x{n}",
        impl="numpy",
        flops=sgemm_flops(n),
        sgemm_peak_gflops=None,
    )


@pytest.mark.parametrize("mbytes", (256,))
@pytest.mark.benchmark(
    group="reference copy", min_rounds=5, max_time=1.0, warmup=True, warmup_iterations=1
)
def test_copy(benchmark, throughput, mbytes):
    src = np.ones(mbytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    benchmark(np.copyto, dst, src)
    throughput(
        benchmark,
        kernel="copy",
        direction="forward",
        config=f"{mbytes} MB",
        impl="numpy",
        bytes=2 * src.nbytes,
        copy_bandwidth_gbs=None,
    )
