"""CUDA softmax cross-entropy: twin of ``cnncore_kernels._loss.cross_entropy``.

Inputs are trusted (validated in ``cnncore.functional.cross_entropy``): float32 logits (N, K) or
(N, K, H, W) and int32/int64 targets (N,) or (N, H, W) on the device, each target in ``[0, K)`` or
equal to ``ignore_index``.  One thread per (n, pixel) column computes the column's loss term and
its unscaled gradient; one block sums the terms and counts the targets in float64; a last kernel
scales the gradient by 1 / count read on the device.  Only the two totals come back to the host
(the loss is a Python float by contract).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float32, float64

from cnncore_kernels.cuda import _launch as L
from cnncore_kernels.cuda._launch import RED_THREADS  # a plain global: a compile-time constant
from cnncore_kernels.cuda.activation import column_max


@cuda.jit
def _ce_columns(x, t, K, inner, ignore, d, term):
    # x, d: flat (N, K, inner); t: flat (N, inner).  Counted column: term = log(sum e) - (x[t] - m),
    # d = e / sum - onehot (unscaled); ignored column: term = 0 and d = 0.
    for c in range(cuda.grid(1), t.size, cuda.gridsize(1)):
        base = (c // inner) * K * inner + c % inner  # element (n, 0, i)
        tc = t[c]
        if tc == ignore:
            for k in range(K):
                d[base + k * inner] = float32(0.0)
            term[c] = float32(0.0)
            continue
        m = column_max(x, base, K, inner)
        s = float32(0.0)
        for k in range(K):
            e = math.exp(x[base + k * inner] - m)
            d[base + k * inner] = e
            s += e
        term[c] = math.log(s) - (x[base + tc * inner] - m)
        inv = float32(1.0) / s
        for k in range(K):
            d[base + k * inner] = d[base + k * inner] * inv - (
                float32(1.0) if tc == k else float32(0.0)
            )


@cuda.jit
def _ce_totals(term, t, ignore, totals):
    # one block: totals[0] = sum of the terms, totals[1] = number of counted targets (float64)
    s_part = cuda.shared.array(RED_THREADS, float64)
    n_part = cuda.shared.array(RED_THREADS, float64)
    tid = cuda.threadIdx.x
    s = float64(0.0)
    n = float64(0.0)
    for c in range(tid, t.size, cuda.blockDim.x):
        if t[c] != ignore:
            s += term[c]
            n += 1
    s_part[tid] = s
    n_part[tid] = n
    s = L.block_sum(s_part)
    n = L.block_sum(n_part)
    if tid == 0:
        totals[0] = s
        totals[1] = n


@cuda.jit
def _ce_scale(d, totals):
    # d *= float32(1 / count) when count > 0 (else d is already all zeros)
    count = totals[1]
    if count > 0:
        sc = float32(1.0 / count)
        for i in range(cuda.grid(1), d.size, cuda.gridsize(1)):
            d[i] = d[i] * sc


def cross_entropy(logits: Any, targets: Any, ignore_index: int) -> tuple[float, Any]:
    """Mean softmax cross-entropy over the targets != ignore_index, and its gradient.

    Returns ``(loss, dlogits)``: a Python float (nan when no target counts, as torch) and the
    device array ``(softmax - onehot) / count`` on counted positions, 0 on ignored ones.
    """
    x = L.device(logits)
    t = L.device(targets, None)  # int32 or int64 (torch dtypes are not NumPy's: take the view's)
    K = x.shape[1]
    inner = math.prod(int(s) for s in x.shape[2:])
    d = L.empty(x.shape)
    term = L.empty((t.size,))
    totals = L.empty((2,), np.float64)
    blocks, threads = L.config(t.size)
    _ce_columns[blocks, threads](L.flat(x), L.flat(t), K, inner, ignore_index, L.flat(d), term)
    _ce_totals[1, L.red_threads()](term, L.flat(t), ignore_index, totals)
    blocks, threads = L.config(d.size)
    _ce_scale[blocks, threads](L.flat(d), totals)
    total, count = totals.copy_to_host()
    return (float(total / count) if count > 0 else float("nan")), d
