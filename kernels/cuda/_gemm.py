"""Tiled shared-memory SGEMM for the CUDA twins (conv2d, linear), BLAS-style on flat arrays.

``C[z] = alpha * sum_{r < n_red} op(A[z+r]) @ op(B[z+r]) + beta * C[z] (+ bias)``, z = 0..nz-1.

Each block computes a BM x BN tile of C with TY x TX threads, each thread an RM x RN register tile
(rows ty + TY*i, columns tx + TX*j).  The loop over K walks ceil(K / BK) tiles of A and B staged
in shared memory (times ``n_red`` when a batch is summed), so its trip count comes from K, never
from the grid; tiles that stick out of A, B or C (partial tiles) are zero-filled on load and
masked on store.  The batch goes on grid axis z (``nz`` independent products, e.g. one per image)
or, with ``n_red > 1``, is summed inside the block (``dW = sum_n dY[n] @ col[n]^T``).
"""

from __future__ import annotations

from typing import Any

from numba import cuda, float32

from cnncore_kernels.cuda import _launch as L

BM, BN, BK = 64, 64, 8  # tile of C, and depth of one K step
TY, TX = 16, 16  # threads per block (rows, columns)
RM, RN = BM // TY, BN // TX  # register tile per thread
RMN = RM * RN  # (a named constant: local array sizes must be compile-time constants)
NTHREADS = TY * TX
A_LOADS = BM * BK // NTHREADS  # elements of the A tile each thread loads per K step
B_LOADS = BK * BN // NTHREADS

# bias_mode: 0 none, 1 bias[m] added to row m (conv: per output channel), 2 bias[n] to column n.
NO_BIAS, ROW_BIAS, COL_BIAS = 0, 1, 2


@cuda.jit
def _sgemm(
    M,
    N,
    K,
    alpha,
    a,
    a_off,
    a_bs,
    lda,
    trans_a,
    b,
    b_off,
    b_bs,
    ldb,
    trans_b,
    beta,
    c,
    c_off,
    c_bs,
    ldc,
    n_red,
    bias,
    bias_mode,
):
    # a, b, c: flat float32.  op(A)[m, k] = a[off + m*lda + k] (trans_a: a[off + k*lda + m]);
    # op(B)[k, n] = b[off + k*ldb + n] (trans_b: b[off + n*ldb + k]); C[m, n] = c[off + m*ldc + n].
    As = cuda.shared.array((BK, BM), float32)
    Bs = cuda.shared.array((BK, BN), float32)
    acc = cuda.local.array(RMN, float32)
    ra = cuda.local.array(RM, float32)
    rb = cuda.local.array(RN, float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TX + tx
    m0 = cuda.blockIdx.y * BM
    n0 = cuda.blockIdx.x * BN
    z = cuda.blockIdx.z
    for i in range(RMN):
        acc[i] = float32(0.0)
    ktiles = (K + BK - 1) // BK
    for t in range(n_red * ktiles):
        r = t // ktiles
        k0 = (t - r * ktiles) * BK
        ao = a_off + (z + r) * a_bs
        bo = b_off + (z + r) * b_bs
        # Stage A[m0:m0+BM, k0:k0+BK] as As[k, m]; threads walk the contiguous axis of the storage.
        for e in range(A_LOADS):
            idx = tid + e * NTHREADS
            if trans_a:
                mm = idx % BM
                kk = idx // BM
            else:
                kk = idx % BK
                mm = idx // BK
            gm = m0 + mm
            gk = k0 + kk
            v = float32(0.0)
            if gm < M and gk < K:
                if trans_a:
                    v = a[ao + gk * lda + gm]
                else:
                    v = a[ao + gm * lda + gk]
            As[kk, mm] = v
        # Stage B[k0:k0+BK, n0:n0+BN] as Bs[k, n].
        for e in range(B_LOADS):
            idx = tid + e * NTHREADS
            if trans_b:
                kk = idx % BK
                nn = idx // BK
            else:
                nn = idx % BN
                kk = idx // BN
            gn = n0 + nn
            gk = k0 + kk
            v = float32(0.0)
            if gn < N and gk < K:
                if trans_b:
                    v = b[bo + gn * ldb + gk]
                else:
                    v = b[bo + gk * ldb + gn]
            Bs[kk, nn] = v
        cuda.syncthreads()
        for kk in range(BK):
            for i in range(RM):
                ra[i] = As[kk, ty + TY * i]
            for j in range(RN):
                rb[j] = Bs[kk, tx + TX * j]
            for i in range(RM):
                for j in range(RN):
                    acc[i * RN + j] += ra[i] * rb[j]
        cuda.syncthreads()
    co = c_off + z * c_bs
    for i in range(RM):
        gm = m0 + ty + TY * i
        if gm < M:
            for j in range(RN):
                gn = n0 + tx + TX * j
                if gn < N:
                    v = alpha * acc[i * RN + j]
                    if bias_mode == 1:
                        v += bias[gm]
                    elif bias_mode == 2:
                        v += bias[gn]
                    idx = co + gm * ldc + gn
                    if beta != 0:
                        v += beta * c[idx]
                    c[idx] = v


_dummy: dict[str, Any] = {}


def _no_bias() -> Any:
    if "bias" not in _dummy:
        _dummy["bias"] = L.empty((1,))
    return _dummy["bias"]


def gemm_strided(
    M: int,
    N: int,
    K: int,
    a: Any,
    lda: int,
    b: Any,
    ldb: int,
    c: Any,
    ldc: int,
    *,
    trans_a: bool = False,
    trans_b: bool = False,
    a_off: int = 0,
    b_off: int = 0,
    c_off: int = 0,
    a_bs: int = 0,
    b_bs: int = 0,
    c_bs: int = 0,
    nz: int = 1,
    n_red: int = 1,
    alpha: float = 1.0,
    beta: float = 0.0,
    bias: Any = None,
    bias_mode: int = NO_BIAS,
) -> None:
    """Launch ``_sgemm`` on flat device arrays (see the module docstring); writes into ``c``.

    Inputs are trusted: every index the offsets, leading dimensions and batch strides reach is in
    range.  ``beta == 0`` never reads ``c`` (it may hold garbage).
    """
    if M <= 0 or N <= 0:
        return
    grid = (L.cdiv(N, BN), L.cdiv(M, BM), nz)
    _sgemm[grid, (TX, TY)](
        M,
        N,
        K,
        L.f32(alpha),
        a,
        a_off,
        a_bs,
        lda,
        int(bool(trans_a)),
        b,
        b_off,
        b_bs,
        ldb,
        int(bool(trans_b)),
        L.f32(beta),
        c,
        c_off,
        c_bs,
        ldc,
        n_red,
        _no_bias() if bias is None else bias,
        bias_mode if bias is not None else NO_BIAS,
    )


def gemm(
    a: Any,
    b: Any,
    trans_a: bool = False,
    trans_b: bool = False,
    alpha: float = 1.0,
    beta: float = 0.0,
    c: Any = None,
) -> Any:
    """``alpha * op(a) @ op(b) + beta * c`` for 2-D float32 device arrays; returns ``c``.

    ``op(a) = a.T`` when ``trans_a`` (likewise ``b``).  ``c`` (M, N) is written in place when given.
    """
    a, b = L.device(a), L.device(b)
    M, K = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    N = b.shape[0] if trans_b else b.shape[1]
    if c is None:
        c = L.empty((M, N))
        beta = 0.0
    gemm_strided(
        M,
        N,
        K,
        L.flat(a),
        a.shape[1],
        L.flat(b),
        b.shape[1],
        L.flat(c),
        N,
        trans_a=trans_a,
        trans_b=trans_b,
        alpha=alpha,
        beta=beta,
    )
    return c
