# cython: language_level=3
"""CPU softmax cross-entropy loss (the twin of ``cnncore_kernels.cuda.loss``).

Inputs are trusted (validated in ``cnncore.functional``): C-contiguous float32/float64 logits,
non-empty; targets int64, each in ``[0, K)`` or equal to ``ignore_index``.

The logits are viewed as ``(outer, K, inner)`` (``K`` the class axis) and split into units of one
``outer`` index and up to ``COLS`` consecutive ``inner`` columns, as softmax in ``_activation.pyx``
(the shared pieces are in ``_softmax.pxi``); units run in parallel, each returns its partial sum of
the loss (accumulated in double).
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log
from libc.stdint cimport int64_t

include "_softmax.pxi"


cdef double cross_entropy_unit(const floating* x, const int64_t* t, floating* d, Py_ssize_t K,
                               Py_ssize_t inner, Py_ssize_t L, int64_t ignore,
                               floating scale) noexcept nogil:
    # Returns sum over counted columns (t != ignore) of -log softmax(x)[t]; writes
    # d = (softmax(x) - onehot(t)) * scale on counted columns and 0 on ignored ones.
    cdef floating mx[COLS]
    cdef double sm[COLS]
    cdef Py_ssize_t k, i
    cdef floating* dr
    cdef floating e
    cdef double loss = 0
    shifted_exp_sums(x, d, mx, sm, K, inner, L)
    for i in range(L):
        if t[i] != ignore:
            # -log_softmax[t] = log(sum) - (x[t] - m), as torch's log_softmax + nll_loss
            loss += log(sm[i]) - (x[t[i] * inner + i] - mx[i])
        sm[i] = 1 / sm[i]
    for k in range(K):
        dr = d + k * inner
        for i in range(L):
            e = dr[i] * <floating> sm[i] - (1 if t[i] == k else 0)
            dr[i] = e * scale if t[i] != ignore else 0
    return loss


def _cross_entropy(const floating[:, :, ::1] x, const int64_t[:, ::1] t, floating[:, :, ::1] d,
                   int64_t ignore, double scale):
    cdef Py_ssize_t outer = x.shape[0], K = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t per = (inner + COLS - 1) // COLS, u, o, i0
    partial_arr = np.zeros(units_of(outer, inner), dtype=np.float64)
    cdef double[::1] partial = partial_arr
    cdef floating sc = scale
    with nogil:
        for u in prange(units_of(outer, inner), schedule="static"):
            o = u // per
            i0 = (u % per) * COLS
            partial[u] = cross_entropy_unit(&x[o, 0, i0], &t[o, i0], &d[o, 0, i0], K, inner,
                                            min(COLS, inner - i0), ignore, sc)
    return float(partial_arr.sum())


def cross_entropy(logits, targets, ignore_index):
    """Mean softmax cross-entropy over the targets != ignore_index, and its gradient.

    logits: (N, K, *S) (S empty or spatial), targets: int64 (N, *S).  Returns (loss, dlogits):
    ``loss`` a Python float, ``dlogits`` (softmax - onehot) / count on counted positions and 0 on
    ignored ones.  With no counted target the loss is nan (as torch) and dlogits is all zeros.
    """
    N, K = logits.shape[0], logits.shape[1]
    inner = int(np.prod(logits.shape[2:], dtype=np.int64))
    count = int(np.count_nonzero(targets != ignore_index))
    d = np.empty_like(logits)
    if count == 0:
        d[...] = 0
        return float("nan"), d
    total = _cross_entropy(
        logits.reshape(N, K, inner), targets.reshape(N, inner), d.reshape(N, K, inner),
        ignore_index, 1.0 / count,
    )
    return total / count, d
