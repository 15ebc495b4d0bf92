"""Dispatcher for elementwise arithmetic (gradient accumulation, loss scaling): NumPy on the CPU or
the Numba CUDA twin.

Twin signatures (``cnncore_kernels.cuda.elementwise`` matches these; inputs trusted: arrays of one
shape and dtype on one device, float32 on the GPU):

- ``add(a, b) -> a + b`` (a new array);
- ``scale(alpha, x) -> alpha * x`` (a new array; ``alpha`` rounded to the array's dtype first);
- ``axpy(alpha, x, y) -> y``: ``y += alpha * x`` in place.

The CPU twin is NumPy (one ufunc each), a namespace of the same names in this module.
"""

from __future__ import annotations

from types import SimpleNamespace

from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def add(a, b):
    # inputs trusted (same shape, dtype and device)
    return twin(a, _CPU, "elementwise").add(a, b)


@pooled
def scale(alpha, x):
    # inputs trusted
    return twin(x, _CPU, "elementwise").scale(alpha, x)


@pooled
def axpy(alpha, x, y):
    # inputs trusted (same shape, dtype and device)
    return twin(y, _CPU, "elementwise").axpy(alpha, x, y)


def _axpy_cpu(alpha, x, y):
    y += y.dtype.type(alpha) * x
    return y


# the CPU twin: the names and signatures of cnncore_kernels.cuda.elementwise
_CPU = SimpleNamespace(
    add=lambda a, b: a + b,
    scale=lambda alpha, x: x * x.dtype.type(alpha),
    axpy=_axpy_cpu,
)
