"""Fusion of neighbouring layers in a chain (``Sequential.forward``).

- A convolution followed by ``ReLU``: the bias and the ReLU are applied where the convolution
  writes its output (``forward_relu`` of ``Conv2d`` and of the dense networks' ``SharedConv``), so
  the activation is one pass instead of three (GEMM output, bias, ReLU).
- ``ReLU`` followed by ``MaxPool2d``: pooling runs on the input and the ReLU on the pooled output
  (ReLU commutes with the maximum), a quarter of the work for 2x2/2 pooling.

Outputs are bit for bit those of the unfused chain, and so are the gradients: each fused module
caches what its own ``backward`` needs, in the form that gives the same result.  The ReLU after a
convolution caches its output ``y`` instead of its input ``z``: ``relu_backward(dy, y) ==
relu_backward(dy, z)`` because ``y > 0`` exactly where ``z > 0`` (NaN: neither).  Before a max
pooling the ReLU caches its input as usual and the pooling its argmax over ``x`` instead of over
``relu(x)``: where the maximum is positive both are the same element, elsewhere the ReLU's
backward zeroes the gradient either way.  Only exact ``ReLU``/``MaxPool2d`` instances and classes
whose ``forward`` is the one that goes with their ``forward_relu`` are fused (a subclass that
overrides ``forward`` runs unfused).
"""

from __future__ import annotations

from collections.abc import Sequence

from cnncore import functional as F
from cnncore.functional.fused import relu_max_pool2d
from cnncore.nn.activation import ReLU
from cnncore.nn.module import Module, grad_enabled
from cnncore.nn.pooling import MaxPool2d


def _has_fused_relu(m: Module) -> bool:
    if "forward" in vars(m):  # forward replaced on the instance
        return False
    cls = type(m)
    for owner in cls.__mro__:
        if "forward_relu" in vars(owner):
            return cls.forward is owner.forward
    return False


def _patched(*modules: Module) -> bool:
    return any("forward" in vars(m) for m in modules)


def _relu_then_max_pool(relu: ReLU, pool: MaxPool2d, x):
    args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    if not grad_enabled():
        relu._x = None
        pool._indices = pool._input_shape = None
        y = relu_max_pool2d(x, *args)
    else:
        y, pool._indices = F.max_pool2d(x, *args)
        pool._input_shape = tuple(int(s) for s in x.shape)
        relu._x = x
        y = F.relu(y)
    relu._remember_output(x)  # relu(x) has x's shape, dtype and device
    pool._remember_output(y)
    return y


def run_chain(modules: Sequence[Module], x):
    """``x`` through ``modules`` in order, fusing conv -> ReLU and ReLU -> MaxPool2d pairs."""
    i, n = 0, len(modules)
    while i < n:
        m = modules[i]
        nxt = modules[i + 1] if i + 1 < n else None
        if type(nxt) is ReLU and _has_fused_relu(m) and not _patched(nxt):
            x = m.forward_relu(x)
            nxt._x = x if grad_enabled() else None  # the output's sign gives the same backward
            nxt._remember_output(x)
            i += 2
        elif type(m) is ReLU and type(nxt) is MaxPool2d and not _patched(m, nxt):
            x = _relu_then_max_pool(m, nxt, x)
            i += 2
        else:
            x = m(x)
            i += 1
    return x
