"""Dispatcher for activations and softmax: the CPU (Cython ``_activation``) or GPU (Numba CUDA)
twin.

Twin signatures (``cnncore_kernels._activation`` and ``cnncore_kernels.cuda.activation`` alike;
inputs validated by ``cnncore.functional.activation``: C-contiguous arrays of one float dtype and
one shape, ``axis`` a non-negative int below ``ndim``; each returns a new array of that shape):

- ``relu(x) -> y``,  ``relu_backward(dy, x) -> dx``  (dx = dy where x > 0, else 0)
- ``tanh(x) -> y``,  ``tanh_backward(dy, y) -> dx``  (y = tanh(x); dx = dy * (1 - y*y))
- ``softmax(x, axis) -> y``,  ``log_softmax(x, axis) -> y``
- ``softmax_backward(dy, y, axis) -> dx``  (y = softmax output; dx = y * (dy - sum(dy*y)))
- ``log_softmax_backward(dy, y, axis) -> dx``  (y = log_softmax output; dx = dy - exp(y)*sum(dy))
- ``dropout(x, key, thr, scale) -> x * mask``: ``mask[i]`` is ``scale`` where a hash of ``i`` and
  the 64-bit ``key`` has its top 24 bits ``>= thr``, else 0 (identical on both devices; the
  backward applies the same mask to ``dy``)
"""

from __future__ import annotations

from cnncore_kernels import _activation
from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def relu(x):
    # inputs validated by cnncore.functional.relu
    return twin(x, _activation, "activation").relu(x)


@pooled
def relu_backward(dy, x):
    # inputs validated by cnncore.functional.relu_backward
    return twin(x, _activation, "activation").relu_backward(dy, x)


@pooled
def tanh(x):
    # inputs validated by cnncore.functional.tanh
    return twin(x, _activation, "activation").tanh(x)


@pooled
def tanh_backward(dy, y):
    # inputs validated by cnncore.functional.tanh_backward
    return twin(y, _activation, "activation").tanh_backward(dy, y)


@pooled
def softmax(x, axis):
    # inputs validated by cnncore.functional.softmax
    return twin(x, _activation, "activation").softmax(x, axis)


@pooled
def log_softmax(x, axis):
    # inputs validated by cnncore.functional.log_softmax
    return twin(x, _activation, "activation").log_softmax(x, axis)


@pooled
def softmax_backward(dy, y, axis):
    # inputs validated by cnncore.functional.softmax_backward
    return twin(y, _activation, "activation").softmax_backward(dy, y, axis)


@pooled
def log_softmax_backward(dy, y, axis):
    # inputs validated by cnncore.functional.log_softmax_backward
    return twin(y, _activation, "activation").log_softmax_backward(dy, y, axis)


@pooled
def dropout(x, key, thr, scale):
    # inputs validated by cnncore.functional.dropout; the same op serves the backward
    return twin(x, _activation, "activation").dropout(x, key, thr, scale)
