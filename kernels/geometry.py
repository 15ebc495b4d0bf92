"""The output length of a sliding window (convolution, pooling) along one axis.

``out_size`` is the one rule every Python caller uses (the CUDA launchers, ``cnncore``'s validation,
shape rules and cost model, the benchmarks); ``kernels/_geometry.pxd`` is the same rule for the
Cython twins, and a test holds the two equal.
"""

from __future__ import annotations

__all__ = ["out_size"]


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``.

    PyTorch's rule with ``ceil_mode=False``, in Python ints; 0 or less means the (dilated) window
    does not fit the padded input.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
