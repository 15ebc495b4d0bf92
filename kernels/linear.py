"""Dispatcher for the fully connected layer: NumPy/BLAS on the CPU or the Numba CUDA twin.

Twin signatures (``cnncore_kernels.cuda.linear`` matches these; inputs validated by
``cnncore.functional.linear``: C-contiguous arrays of one float dtype, x (N, in), weight
(out, in), bias (out,) or None, dy (N, out)):

- ``linear(x, weight, bias) -> y``: ``y = x @ weight.T + bias``, (N, out)
- ``linear_backward(dy, x, weight, need_dx, need_dweight, need_dbias) -> (dx, dweight, dbias)``:
  ``dx = dy @ weight`` (N, in), ``dweight = dy.T @ x`` (out, in), ``dbias = dy.sum(0)`` (out,);
  the ones not needed are None.

The CPU twin is NumPy around ``_linear.matmul`` (OpenBLAS through ``_blas``, under the library's
one threading scheme; transposes are passed as flags, not copied), a namespace of the same names
in this module.
"""

from __future__ import annotations

from types import SimpleNamespace

from cnncore_kernels import _linear
from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def linear(x, weight, bias):
    # inputs validated by cnncore.functional.linear
    return twin(x, _CPU, "linear").linear(x, weight, bias)


@pooled
def linear_backward(dy, x, weight, need_dx, need_dweight, need_dbias):
    # inputs validated by cnncore.functional.linear_backward
    return twin(x, _CPU, "linear").linear_backward(dy, x, weight, need_dx, need_dweight, need_dbias)


def _linear_cpu(x, weight, bias):
    y = _linear.matmul(x, weight, trans_b=True)
    if bias is not None:
        y += bias
    return y


def _linear_backward_cpu(dy, x, weight, need_dx, need_dweight, need_dbias):
    dx = _linear.matmul(dy, weight) if need_dx else None
    dweight = _linear.matmul(dy, x, trans_a=True) if need_dweight else None
    dbias = dy.sum(axis=0) if need_dbias else None
    return dx, dweight, dbias


# the CPU twin: the names and signatures of cnncore_kernels.cuda.linear
_CPU = SimpleNamespace(linear=_linear_cpu, linear_backward=_linear_backward_cpu)
