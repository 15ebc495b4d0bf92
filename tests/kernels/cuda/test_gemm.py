"""The tiled SGEMM against float64 NumPy: transposes, partial tiles, batches, bias, beta."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels.cuda import _gemm as G
from tests.kernels.cuda.sim import GPU_TILES, dev, host, tile_constants, use_tiles


def ref(a, b, ta, tb):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64.T if ta else a64) @ (b64.T if tb else b64)


def operands(M, K, N, ta, tb, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    return a, b


def test_gpu_tile_constants_are_consistent():
    t = GPU_TILES
    assert tile_constants(t["BM"], t["BN"], t["BK"], t["TY"], t["TX"]) == t


# Small tiles are 8 x 8 x 4: these sizes leave partial tiles in M, N and K, span several tiles,
# and include K < BK and single rows/columns.
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (9, 5, 17), (8, 3, 8), (13, 11, 2)])
def test_gemm_small_tiles(M, K, N, ta, tb):
    a, b = operands(M, K, N, ta, tb)
    c = G.gemm(dev(a), dev(b), trans_a=ta, trans_b=tb)
    np.testing.assert_allclose(host(c), ref(a, b, ta, tb), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ta, tb", [(False, False), (True, True)])
def test_gemm_gpu_tiles(monkeypatch, ta, tb):
    """The module's real GPU tiles (64 x 64 x 8 on 16 x 16 threads): two row tiles, partial."""
    use_tiles(monkeypatch, GPU_TILES)
    a, b = operands(67, 11, 5, ta, tb, seed=1)
    np.testing.assert_allclose(host(G.gemm(dev(a), dev(b), ta, tb)), ref(a, b, ta, tb),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_gemm_alpha_beta_in_place():
    a, b = operands(5, 6, 7, False, False, seed=2)
    c0 = np.random.default_rng(3).standard_normal((5, 7)).astype(np.float32)
    c = dev(c0)
    out = G.gemm(dev(a), dev(b), alpha=2.0, beta=-0.5, c=c)
    assert out is c
    np.testing.assert_allclose(host(c), 2 * ref(a, b, False, False) - 0.5 * c0, rtol=1e-5,
                               atol=1e-5)  # fmt: skip


def test_beta_zero_ignores_garbage_in_c():
    a, b = operands(4, 3, 5, False, False, seed=4)
    c = dev(np.full((4, 5), np.nan, np.float32))
    G.gemm(dev(a), dev(b), beta=0.0, c=c)
    np.testing.assert_allclose(host(c), ref(a, b, False, False), rtol=1e-5, atol=1e-5)


def test_strided_batched_with_offsets_and_bias():
    """C[z] = A @ B[z] + bias[row], B and C addressed by offset, leading dim and batch stride."""
    rng = np.random.default_rng(5)
    M, K, N, Z = 5, 6, 9, 3
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, Z * N + 2)).astype(np.float32)  # batches side by side, offset 2
    bias = rng.standard_normal(M).astype(np.float32)
    c = dev(np.zeros((Z, M, N + 1), np.float32))  # ldc = N + 1 leaves one untouched column
    G.gemm_strided(M, N, K, dev(a).ravel(), K, dev(b).ravel(), Z * N + 2, c.reshape(c.size),
                   N + 1, b_off=2, b_bs=N, c_bs=M * (N + 1), nz=Z, bias=dev(bias),
                   bias_mode=G.ROW_BIAS)  # fmt: skip
    got = host(c)
    for z in range(Z):
        expect = ref(a, b[:, 2 + z * N : 2 + (z + 1) * N], False, False) + bias[:, None]
        np.testing.assert_allclose(got[z, :, :N], expect, rtol=1e-5, atol=1e-5)
    assert np.all(got[:, :, N] == 0)


def test_strided_batch_reduction_and_column_bias():
    """n_red sums the batch inside the kernel: C = sum_z A[z] @ B[z]^T + bias[col]."""
    rng = np.random.default_rng(6)
    M, K, N, Z = 7, 5, 6, 3
    a = rng.standard_normal((Z, M, K)).astype(np.float32)
    b = rng.standard_normal((Z, N, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    c = dev(np.zeros((M, N), np.float32))
    G.gemm_strided(M, N, K, dev(a).ravel(), K, dev(b).ravel(), K, c.ravel(), N, trans_b=True,
                   a_bs=M * K, b_bs=N * K, n_red=Z, bias=dev(bias),
                   bias_mode=G.COL_BIAS)  # fmt: skip
    expect = sum(ref(a[z], b[z], False, True) for z in range(Z)) + bias[None, :]
    np.testing.assert_allclose(host(c), expect, rtol=1e-5, atol=1e-5)
