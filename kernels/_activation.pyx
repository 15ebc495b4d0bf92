# cython: language_level=3
"""CPU activations and softmax / log-softmax (the twins of ``cnncore_kernels.cuda.activation``).

Inputs are trusted (validated in ``cnncore.functional``): C-contiguous float32/float64 arrays of one
dtype, non-empty; softmax axes in range.

Choices:
- ReLU, its backward and tanh's backward are Cython loops over blocks of the flat array, in
  parallel.  They are memory-bound: ReLU runs about as fast as ``np.maximum(x, 0)``, and the
  backward passes are one fused loop where NumPy needs temporaries (``np.where(x > 0, dy, 0)``,
  ``dy * (1 - y * y)``).  tanh itself is ``np.tanh`` (NumPy's SIMD implementation, accurate and
  faster than a libm call per element, which the compiler cannot vectorise).
- Softmax and log-softmax (and the cross-entropy of ``_loss.pyx``) view the array as
  ``(outer, K, inner)`` (``K`` the softmax axis) and split it into units of one ``outer`` index
  and up to ``COLS`` consecutive ``inner`` columns; each unit reduces over ``K`` with the columns
  as the vectorised axis, so the dense case (N, K, H, W) streams contiguous rows.  Units run in
  parallel.
- float32 exponentials use ``cnn_expf`` (``_softmax.pxi``), a Cephes-style polynomial that the
  compiler vectorises (within 2 ulp of exp over the float range, checked by the tests); float64
  uses libm's ``exp``.  Exponentials take ``x - max`` (no overflow); sums over ``K`` accumulate in
  double.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log
from libc.stdint cimport uint32_t, uint64_t

include "_softmax.pxi"


cdef enum:
    BLOCK = 16384   # elements per parallel block of the elementwise loops


def exp_f32(const float[::1] x):
    """``cnn_expf`` over a float32 vector (exposed for the accuracy tests)."""
    out = np.empty(x.shape[0], dtype=np.float32)
    cdef float[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            o[i] = cnn_expf(x[i])
    return out


# ----------------------------------------------------------------------------------------------
# Elementwise

cdef void relu_block(const floating* x, floating* y, Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(L):
        y[i] = 0 if x[i] <= 0 else x[i]   # NaN stays NaN, as torch.relu


cdef void relu_backward_block(const floating* dy, const floating* x, floating* dx,
                              Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(L):
        dx[i] = 0 if x[i] <= 0 else dy[i]   # torch's threshold_backward


cdef void tanh_backward_block(const floating* dy, const floating* y, floating* dx,
                              Py_ssize_t L) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(L):
        dx[i] = dy[i] * (1 - y[i] * y[i])


def _relu(const floating[::1] x, floating[::1] y):
    cdef Py_ssize_t n = x.shape[0], b, p
    with nogil:
        for b in prange((n + BLOCK - 1) // BLOCK, schedule="static"):
            p = b * BLOCK
            relu_block(&x[0] + p, &y[0] + p, min(BLOCK, n - p))


def _relu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx):
    cdef Py_ssize_t n = x.shape[0], b, p
    with nogil:
        for b in prange((n + BLOCK - 1) // BLOCK, schedule="static"):
            p = b * BLOCK
            relu_backward_block(&dy[0] + p, &x[0] + p, &dx[0] + p, min(BLOCK, n - p))


def _tanh_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx):
    cdef Py_ssize_t n = y.shape[0], b, p
    with nogil:
        for b in prange((n + BLOCK - 1) // BLOCK, schedule="static"):
            p = b * BLOCK
            tanh_backward_block(&dy[0] + p, &y[0] + p, &dx[0] + p, min(BLOCK, n - p))


def relu(x):
    """max(x, 0) elementwise (NaN propagates).  x: any shape -> y: same shape."""
    y = np.empty_like(x)
    _relu(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy, x):
    """dx = dy where x > 0, else 0.  dy, x: same shape."""
    dx = np.empty_like(x)
    _relu_backward(dy.reshape(-1), x.reshape(-1), dx.reshape(-1))
    return dx


def tanh(x):
    """tanh elementwise (NumPy's SIMD ufunc)."""
    return np.tanh(x)


def tanh_backward(dy, y):
    """dx = dy * (1 - y**2) with y = tanh(x)."""
    dx = np.empty_like(y)
    _tanh_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


# ----------------------------------------------------------------------------------------------
# Dropout: the mask is a hash of the element's flat index and a 64-bit key (two rounds of
# MurmurHash3's 32-bit finaliser), so it needs no stored state: the backward recomputes it, and
# the CUDA twin (cuda/activation.py) gives bit-identical masks.  Element i is kept when the top 24
# bits of its hash are >= thr = ceil(p * 2**24) (kept with probability 1 - p, to within 2**-24).

cdef inline uint32_t fmix32(uint32_t h) noexcept nogil:
    h ^= h >> 16
    h *= 0x85EBCA6Bu
    h ^= h >> 13
    h *= 0xC2B2AE35u
    h ^= h >> 16
    return h


cdef inline bint dropout_keep(uint64_t i, uint32_t k0, uint32_t k1, uint32_t thr) noexcept nogil:
    cdef uint32_t h = fmix32(<uint32_t>i * 0x9E3779B9u + k0)
    h = fmix32(h ^ k1 ^ <uint32_t>(i >> 32))
    return (h >> 8) >= thr


def _dropout(const floating[::1] x, floating[::1] y, uint32_t k0, uint32_t k1, uint32_t thr,
             floating scale):
    cdef Py_ssize_t n = x.shape[0], i
    with nogil:
        for i in prange(n, schedule="static"):
            y[i] = x[i] * scale if dropout_keep(i, k0, k1, thr) else 0


def dropout(x, key, thr, scale):
    """``x * mask`` with ``mask[i] = scale`` where element ``i`` is kept, else 0 (see above).

    ``key``: a 64-bit int; ``thr``: an int in ``[0, 2**24]``; forward and backward alike."""
    y = np.empty_like(x)
    _dropout(x.reshape(-1), y.reshape(-1), key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF, thr,
             scale)
    return y


# ----------------------------------------------------------------------------------------------
# Softmax family on (outer, K, inner) views (units: see _softmax.pxi).

cdef void softmax_unit(const floating* x, floating* y, Py_ssize_t K, Py_ssize_t inner,
                       Py_ssize_t L, bint log_out) noexcept nogil:
    # softmax: y = exp(x - m) / sum exp(x - m); log_softmax: y = (x - m) - log(sum exp(x - m))
    # (sums accumulate in double)
    cdef floating mx[COLS]
    cdef double sm[COLS]
    cdef Py_ssize_t k, i
    cdef const floating* xr
    cdef floating* yr
    shifted_exp_sums(x, y, mx, sm, K, inner, L)
    if log_out:
        for i in range(L):
            sm[i] = log(sm[i])
        for k in range(K):
            xr = x + k * inner
            yr = y + k * inner
            for i in range(L):
                yr[i] = (xr[i] - mx[i]) - <floating> sm[i]
    else:
        for i in range(L):
            sm[i] = 1 / sm[i]
        for k in range(K):
            yr = y + k * inner
            for i in range(L):
                yr[i] = yr[i] * <floating> sm[i]


cdef void softmax_backward_unit(const floating* dy, const floating* y, floating* dx,
                                Py_ssize_t K, Py_ssize_t inner, Py_ssize_t L,
                                bint log_out) noexcept nogil:
    # softmax: dx = y * (dy - sum_k dy y); log_softmax: dx = dy - exp(y) * sum_k dy (sums in double)
    cdef double acc[COLS]
    cdef Py_ssize_t k, i
    cdef const floating* dyr
    cdef const floating* yr
    cdef floating* dxr
    for i in range(L):
        acc[i] = 0
    for k in range(K):
        dyr = dy + k * inner
        yr = y + k * inner
        if log_out:
            for i in range(L):
                acc[i] += dyr[i]
        else:
            for i in range(L):
                acc[i] += <double> dyr[i] * yr[i]
    for k in range(K):
        dyr = dy + k * inner
        yr = y + k * inner
        dxr = dx + k * inner
        if log_out:
            for i in range(L):
                dxr[i] = dyr[i] - fexp(yr[i]) * <floating> acc[i]
        else:
            for i in range(L):
                dxr[i] = yr[i] * (dyr[i] - <floating> acc[i])


def _softmax(const floating[:, :, ::1] x, floating[:, :, ::1] y, bint log_out):
    cdef Py_ssize_t outer = x.shape[0], K = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t per = (inner + COLS - 1) // COLS, u, o, i0
    with nogil:
        for u in prange(units_of(outer, inner), schedule="static"):
            o = u // per
            i0 = (u % per) * COLS
            softmax_unit(&x[o, 0, i0], &y[o, 0, i0], K, inner, min(COLS, inner - i0), log_out)


def _softmax_backward(const floating[:, :, ::1] dy, const floating[:, :, ::1] y,
                      floating[:, :, ::1] dx, bint log_out):
    cdef Py_ssize_t outer = y.shape[0], K = y.shape[1], inner = y.shape[2]
    cdef Py_ssize_t per = (inner + COLS - 1) // COLS, u, o, i0
    with nogil:
        for u in prange(units_of(outer, inner), schedule="static"):
            o = u // per
            i0 = (u % per) * COLS
            softmax_backward_unit(&dy[o, 0, i0], &y[o, 0, i0], &dx[o, 0, i0], K, inner,
                                  min(COLS, inner - i0), log_out)


def softmax(x, axis):
    """exp(x - max) / sum(exp(x - max)) along ``axis`` (0 <= axis < x.ndim)."""
    y = np.empty_like(x)
    s3 = _three_d(x.shape, axis)
    _softmax(x.reshape(s3), y.reshape(s3), False)
    return y


def log_softmax(x, axis):
    """(x - max) - log(sum(exp(x - max))) along ``axis``."""
    y = np.empty_like(x)
    s3 = _three_d(x.shape, axis)
    _softmax(x.reshape(s3), y.reshape(s3), True)
    return y


def softmax_backward(dy, y, axis):
    """dx = y * (dy - sum(dy * y, axis)) with y = softmax(x, axis)."""
    dx = np.empty_like(y)
    s3 = _three_d(y.shape, axis)
    _softmax_backward(dy.reshape(s3), y.reshape(s3), dx.reshape(s3), False)
    return dx


def log_softmax_backward(dy, y, axis):
    """dx = dy - exp(y) * sum(dy, axis) with y = log_softmax(x, axis)."""
    dx = np.empty_like(y)
    s3 = _three_d(y.shape, axis)
    _softmax_backward(dy.reshape(s3), y.reshape(s3), dx.reshape(s3), True)
    return dx
