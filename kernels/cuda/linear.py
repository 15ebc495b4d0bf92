"""CUDA fully connected layer: twin of ``cnncore_kernels.linear`` (the tiled SGEMM, bias fused).

Inputs are trusted (validated in ``cnncore.functional.linear``): float32 device arrays, x (N, in),
weight (out, in), bias (out,) or None, dy (N, out).  Transposes are GEMM flags, never copies.
"""

from __future__ import annotations

from typing import Any

from cnncore_kernels.cuda import _launch as L
from cnncore_kernels.cuda._gemm import COL_BIAS, gemm_strided


def linear(x: Any, weight: Any, bias: Any) -> Any:
    """``y = x @ weight.T + bias``: (N, out)."""
    x, weight = L.device(x), L.device(weight)
    bias = None if bias is None else L.device(bias)
    N, fin = x.shape
    fout = weight.shape[0]
    y = L.empty((N, fout))
    # y (N, out) = x (N, in) @ W^T (in, out), bias added per column
    gemm_strided(N, fout, fin, L.flat(x), fin, L.flat(weight), fin, L.flat(y), fout, trans_b=True,
                 bias=bias, bias_mode=COL_BIAS)  # fmt: skip
    return y


def linear_backward(dy: Any, x: Any, weight: Any, need_dx: bool, need_dweight: bool,
                    need_dbias: bool) -> tuple[Any, Any, Any]:  # fmt: skip
    """``dx = dy @ weight`` (N, in), ``dweight = dy.T @ x`` (out, in), ``dbias = dy.sum(0)``."""
    dy, x, weight = L.device(dy), L.device(x), L.device(weight)
    N, fin = x.shape
    fout = weight.shape[0]
    dx = dweight = dbias = None
    if need_dx:  # (N, in) = dy (N, out) @ W (out, in)
        dx = L.empty((N, fin))
        gemm_strided(N, fin, fout, L.flat(dy), fout, L.flat(weight), fin, L.flat(dx), fin)
    if need_dweight:  # (out, in) = dy^T (out, N) @ x (N, in)
        dweight = L.empty((fout, fin))
        gemm_strided(fout, fin, N, L.flat(dy), fout, L.flat(x), fin, L.flat(dweight), fin,
                     trans_a=True)  # fmt: skip
    if need_dbias:
        dbias = L.sum_middle(dy, N, fout, 1)
    return dx, dweight, dbias
