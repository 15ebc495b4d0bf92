"""Dispatcher for LRN and LCN: the CPU (Cython ``_normalization``) or GPU (Numba CUDA) twin by
array type.

Twin signatures (``cnncore_kernels._normalization`` and ``cnncore_kernels.cuda.normalization``
alike; inputs validated by ``cnncore.functional.normalization``: C-contiguous (N, C, H, W)
arrays of one dtype, python ints and floats for the parameters):

- ``local_response_norm(x, size, alpha, beta, k) -> y``
- ``local_response_norm_backward(dy, x, size, alpha, beta, k) -> dx``
- ``local_contrast_norm(x, size, sigma, threshold, divisor) -> y``  (``divisor``: "mean"/"fixed")
- ``local_contrast_norm_backward(dy, x, size, sigma, threshold, divisor) -> dx``

``lcn_window`` below is the one definition of LCN's Gaussian; both twins use it.
"""

from __future__ import annotations

import numpy as np

from cnncore_kernels import _normalization
from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


def lcn_window(size: int, sigma: float, extent: int) -> tuple[np.ndarray, int]:
    """The 1-D factor ``g1`` of LCN's ``size x size`` Gaussian window ``g1 (x) g1``.

    ``g1[i] = exp(-(i - (size-1)/2)**2 / (2 sigma**2))`` for ``i`` in ``[0, size)``; tap ``i`` reads
    the input at offset ``i - (size-1)//2`` (zero padding ``(size-1)//2`` before, ``size//2``
    after).  Only the taps that can reach inside an axis of length ``extent`` are returned (the
    others only ever multiply padding), scaled so the largest is 1: LCN divides by the weight of
    the valid taps, so any common factor cancels, and the scaling keeps small ``sigma`` from
    underflowing every tap.

    Returns ``(taps, before)``: float64 taps, and the offset ``before`` such that tap ``j`` of the
    returned array reads the input at offset ``j - before``.
    """
    pb = (size - 1) // 2
    lo = max(0, pb - (extent - 1))
    hi = min(size, pb + extent)
    d = np.arange(lo, hi, dtype=np.float64) - (size - 1) / 2.0
    d2 = d * d
    taps = np.exp(-(d2 - d2.min()) / (2.0 * float(sigma) ** 2))
    return taps, pb - lo


@pooled
def local_response_norm(x, size, alpha, beta, k):
    # inputs validated by cnncore.functional.local_response_norm
    return twin(x, _normalization, "normalization").local_response_norm(x, size, alpha, beta, k)


@pooled
def local_response_norm_backward(dy, x, size, alpha, beta, k):
    # inputs validated by cnncore.functional.local_response_norm_backward
    return twin(x, _normalization, "normalization").local_response_norm_backward(
        dy, x, size, alpha, beta, k
    )


@pooled
def local_contrast_norm(x, size, sigma, threshold, divisor):
    # inputs validated by cnncore.functional.local_contrast_norm
    return twin(x, _normalization, "normalization").local_contrast_norm(
        x, size, sigma, threshold, divisor
    )


@pooled
def local_contrast_norm_backward(dy, x, size, sigma, threshold, divisor):
    # inputs validated by cnncore.functional.local_contrast_norm_backward
    return twin(x, _normalization, "normalization").local_contrast_norm_backward(
        dy, x, size, sigma, threshold, divisor
    )
