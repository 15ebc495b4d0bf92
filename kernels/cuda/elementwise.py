"""Elementwise CUDA kernels: ``add`` (gradient accumulation), ``scale``, ``axpy``; twins of the
NumPy functions in the dispatcher ``cnncore_kernels.elementwise``, same signatures.

Inputs are trusted (same shapes, float32 device arrays).
"""

from __future__ import annotations

from typing import Any

from numba import cuda

from cnncore_kernels.cuda import _launch as L


@cuda.jit
def _add(a, b, out, n):
    # a, b, out: (n,) flat
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = a[i] + b[i]


@cuda.jit
def _axpy(alpha, x, y, n):
    # y += alpha * x, all (n,) flat
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] += alpha * x[i]


@cuda.jit
def _scale(alpha, x, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = alpha * x[i]


def add(a: Any, b: Any) -> Any:
    """``a + b`` as a new device array (same shape)."""
    a, b = L.device(a), L.device(b)
    out = L.empty(a.shape)
    blocks, threads = L.config(a.size)
    _add[blocks, threads](L.flat(a), L.flat(b), L.flat(out), a.size)
    return out


def axpy(alpha: float, x: Any, y: Any) -> Any:
    """``y += alpha * x`` in place on the device array ``y``; returns ``y``."""
    x, y = L.device(x), L.inplace(y)
    blocks, threads = L.config(x.size)
    _axpy[blocks, threads](L.f32(alpha), L.flat(x), L.flat(y), x.size)
    return y


def scale(alpha: float, x: Any) -> Any:
    """``alpha * x`` as a new device array."""
    x = L.device(x)
    out = L.empty(x.shape)
    blocks, threads = L.config(x.size)
    _scale[blocks, threads](L.f32(alpha), L.flat(x), L.flat(out), x.size)
    return out
