"""CUDA activations and softmax: twins of ``cnncore_kernels._activation``, same signatures.

Inputs are trusted (validated in ``cnncore.functional.activation``): float32 device arrays of one
shape, ``axis`` in range.  Softmax views the array as ``(outer, K, inner)`` (``K`` the softmax
axis) and runs one thread per ``(outer, inner)`` column, reducing over ``K`` after subtracting the
column maximum; consecutive threads read consecutive ``inner`` columns (coalesced in the dense
(N, K, H, W) case).  Exponentials are CUDA's ``expf`` (the CPU twin uses its own polynomial: the
two agree to a few ulp, not bit for bit).
"""

from __future__ import annotations

import math
from typing import Any

from numba import cuda, float32, uint64

from cnncore_kernels.cuda import _launch as L


@cuda.jit
def _relu(x, y, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        y[i] = float32(0.0) if v <= 0 else v  # NaN stays NaN, as torch.relu


@cuda.jit
def _relu_backward(dy, x, dx, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dx[i] = float32(0.0) if x[i] <= 0 else dy[i]  # torch's threshold_backward


@cuda.jit
def _tanh(x, y, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = math.tanh(x[i])


@cuda.jit
def _tanh_backward(dy, y, dx, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = y[i]
        dx[i] = dy[i] * (float32(1.0) - v * v)


# Dropout: the mask of the CPU twin (_activation.pyx), bit for bit: two rounds of MurmurHash3's
# 32-bit finaliser over the element's flat index and a 64-bit key, in uint64 arithmetic kept
# below 2**64 by masking to 32 bits after every product.
_M32 = uint64(0xFFFFFFFF)


@cuda.jit(device=True)
def _fmix32(h):
    h ^= h >> uint64(16)
    h = (h * uint64(0x85EBCA6B)) & _M32
    h ^= h >> uint64(13)
    h = (h * uint64(0xC2B2AE35)) & _M32
    h ^= h >> uint64(16)
    return h


@cuda.jit
def _dropout(x, k0, k1, thr, scale, y, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = uint64(i)
        h = _fmix32(((j & _M32) * uint64(0x9E3779B9) + k0) & _M32)
        h = _fmix32(h ^ k1 ^ (j >> uint64(32)))
        y[i] = x[i] * scale if (h >> uint64(8)) >= thr else float32(0.0)


@cuda.jit(device=True)
def column_max(x, base, K, inner):
    # max over k of x[base + k*inner]; a NaN in row 0 stays, later NaNs lose every comparison
    m = x[base]
    for k in range(1, K):
        v = x[base + k * inner]
        m = v if v > m else m
    return m


@cuda.jit
def _softmax(x, K, inner, log_out, y):
    # x, y: flat (outer, K, inner); one thread per column (o, i)
    cols = x.size // K
    for t in range(cuda.grid(1), cols, cuda.gridsize(1)):
        base = (t // inner) * K * inner + t % inner  # element (o, 0, i)
        m = column_max(x, base, K, inner)
        s = float32(0.0)
        for k in range(K):
            e = math.exp(x[base + k * inner] - m)
            y[base + k * inner] = e
            s += e
        if log_out:
            ls = math.log(s)
            for k in range(K):
                y[base + k * inner] = (x[base + k * inner] - m) - ls
        else:
            inv = float32(1.0) / s
            for k in range(K):
                y[base + k * inner] = y[base + k * inner] * inv


@cuda.jit
def _softmax_backward(dy, y, K, inner, log_out, dx):
    # softmax: dx = y * (dy - sum_k dy y); log_softmax: dx = dy - exp(y) * sum_k dy
    cols = y.size // K
    for t in range(cuda.grid(1), cols, cuda.gridsize(1)):
        base = (t // inner) * K * inner + t % inner
        acc = float32(0.0)
        for k in range(K):
            if log_out:
                acc += dy[base + k * inner]
            else:
                acc += dy[base + k * inner] * y[base + k * inner]
        for k in range(K):
            j = base + k * inner
            if log_out:
                dx[j] = dy[j] - math.exp(y[j]) * acc
            else:
                dx[j] = y[j] * (dy[j] - acc)


def _elementwise(kernel, *arrays):
    arrays = [L.device(a) for a in arrays]
    out = L.empty(arrays[0].shape)
    n = out.size
    blocks, threads = L.config(n)
    kernel[blocks, threads](*[L.flat(a) for a in arrays], L.flat(out), n)
    return out


def relu(x: Any) -> Any:
    """max(x, 0) elementwise (NaN propagates).  x: any shape -> y: same shape."""
    return _elementwise(_relu, x)


def relu_backward(dy: Any, x: Any) -> Any:
    """dx = dy where x > 0, else 0.  dy, x: same shape."""
    return _elementwise(_relu_backward, dy, x)


def tanh(x: Any) -> Any:
    """tanh elementwise."""
    return _elementwise(_tanh, x)


def tanh_backward(dy: Any, y: Any) -> Any:
    """dx = dy * (1 - y**2) with y = tanh(x)."""
    return _elementwise(_tanh_backward, dy, y)


def _three_d(shape, axis):
    outer = math.prod(int(s) for s in shape[:axis])
    inner = math.prod(int(s) for s in shape[axis + 1 :])
    return outer, int(shape[axis]), inner


def _softmax_launch(x, axis, log_out):
    x = L.device(x)
    _, K, inner = _three_d(x.shape, axis)
    y = L.empty(x.shape)
    blocks, threads = L.config(x.size // K)
    _softmax[blocks, threads](L.flat(x), K, inner, int(log_out), L.flat(y))
    return y


def _softmax_backward_launch(dy, y, axis, log_out):
    dy, y = L.device(dy), L.device(y)
    _, K, inner = _three_d(y.shape, axis)
    dx = L.empty(y.shape)
    blocks, threads = L.config(y.size // K)
    _softmax_backward[blocks, threads](L.flat(dy), L.flat(y), K, inner, int(log_out), L.flat(dx))
    return dx


def softmax(x: Any, axis: int) -> Any:
    """exp(x - max) / sum(exp(x - max)) along ``axis`` (0 <= axis < x.ndim)."""
    return _softmax_launch(x, axis, False)


def log_softmax(x: Any, axis: int) -> Any:
    """(x - max) - log(sum(exp(x - max))) along ``axis``."""
    return _softmax_launch(x, axis, True)


def softmax_backward(dy: Any, y: Any, axis: int) -> Any:
    """dx = y * (dy - sum(dy * y, axis)) with y = softmax(x, axis)."""
    return _softmax_backward_launch(dy, y, axis, False)


def log_softmax_backward(dy: Any, y: Any, axis: int) -> Any:
    """dx = dy - exp(y) * sum(dy, axis) with y = log_softmax(x, axis)."""
    return _softmax_backward_launch(dy, y, axis, True)


def dropout(x: Any, key: int, thr: int, scale: float) -> Any:
    """``x * mask``, the CPU twin's mask (``mask[i] = scale`` where element ``i`` is kept)."""
    x = L.device(x)
    y = L.empty(x.shape)
    blocks, threads = L.config(x.size)
    k0, k1 = uint64(key & 0xFFFFFFFF), uint64((key >> 32) & 0xFFFFFFFF)
    _dropout[blocks, threads](L.flat(x), k0, k1, uint64(thr), L.f32(scale), L.flat(y), x.size)
    return y
