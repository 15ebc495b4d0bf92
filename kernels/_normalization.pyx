# cython: language_level=3
"""CPU local response normalization (LRN, across channels) and local contrast normalization (LCN).

Inputs are trusted (validated in ``cnncore.functional.normalization``): C-contiguous float32/float64
NCHW arrays of positive sizes, ``size >= 1``, LRN with ``k > 0`` and ``alpha >= 0`` (so the base
of the power is positive), LCN with ``sigma > 0`` and ``threshold > 0``.

LRN (PyTorch's formula): ``y[c] = x[c] * S[c] ** -beta`` with
``S[c] = k + alpha / size * sum(x[j] ** 2 for j in [c - size//2, c + (size-1)//2] within [0, C))``.
Each thread owns a contiguous chunk of pixels of one image across all its channels, so batch 1
parallelises over the chunks of its planes; the window sum is direct (``size`` multiply-adds per
element, as PyTorch's).

LCN (formula in docs/contract/arrays.rst): the window is ``g1 (x) g1`` with a 1-D Gaussian
``g1``; summed over channels with
weight ``1/C`` each, ``E[z] = B(mean_c z)`` where ``B(p) = filter(p) / filter(1)`` is a separable
zero-padded 1-D filter along W then H, divided by the weight of the valid taps (the border
correction, itself separable: ``Dh[h] * Dw[w]``).  The normalisation of the window cancels in that
quotient, so the taps need not sum to one.  Everything per pixel (``E[x]``, ``s``, ``den``) is one
plane per image; the passes over the ``C`` channels are plain loops over chunks of pixels (in
parallel), and the filter costs ``O(size)`` per plane pixel (parallel over rows).

All passes over (N, C, H, W) data work on contiguous chunks of up to CHUNK pixels of each plane:
the per-chunk accumulators stay in L1 while every channel streams through them (whole rows would
make streams of only W elements, too short for the prefetchers and the vector loops).
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, powf, sqrt, sqrtf
from libc.stdlib cimport free, malloc


cdef enum:
    CHUNK = 2048          # pixels per chunk of a plane
    LRN_SCRATCH = 65536   # elements of the per-chunk scratch of the LRN backward (C * chunk)


cdef inline Py_ssize_t chunks(Py_ssize_t HW, Py_ssize_t L) noexcept nogil:
    return (HW + L - 1) // L


cdef inline floating fsqrt(floating a) noexcept nogil:
    if floating is float:
        return sqrtf(a)
    else:
        return sqrt(a)


# ----------------------------------------------------------------------------------------------
# LRN

cdef enum:
    POW_GENERAL = 0
    POW_075 = 1   # beta == 0.75: s ** -0.75 = 1 / (sqrt(s) * sqrt(sqrt(s))), vectorisable
    POW_05 = 2    # beta == 0.5
    POW_1 = 3     # beta == 1


cdef inline void pow_neg(floating* s, Py_ssize_t W, floating beta, int mode) noexcept nogil:
    # s[w] = s[w] ** -beta for s[w] > 0; one loop per mode so each vectorises
    cdef Py_ssize_t w
    cdef floating b
    if mode == POW_075:
        for w in range(W):
            b = fsqrt(s[w])
            s[w] = 1 / (b * fsqrt(b))
    elif mode == POW_05:
        for w in range(W):
            s[w] = 1 / fsqrt(s[w])
    elif mode == POW_1:
        for w in range(W):
            s[w] = 1 / s[w]
    else:
        for w in range(W):
            if floating is float:
                s[w] = powf(s[w], -beta)
            else:
                s[w] = pow(s[w], -beta)


cdef inline void lrn_base(const floating* x, floating* s, Py_ssize_t c, Py_ssize_t C,
                          Py_ssize_t HW, Py_ssize_t L, Py_ssize_t before, Py_ssize_t after,
                          floating k, floating scale) noexcept nogil:
    # s[i] = k + scale * sum_{j = c-before .. c+after, 0 <= j < C} x[j*HW + i]^2, for i < L
    cdef Py_ssize_t j, i
    cdef Py_ssize_t lo = c - before if c > before else 0
    cdef Py_ssize_t hi = c + after + 1 if c + after + 1 < C else C
    cdef const floating* xj
    for i in range(L):
        s[i] = 0
    for j in range(lo, hi):
        xj = x + j * HW
        for i in range(L):
            s[i] += xj[i] * xj[i]
    for i in range(L):
        s[i] = k + scale * s[i]


cdef void lrn_forward_chunk(const floating* x, floating* y, Py_ssize_t C, Py_ssize_t HW,
                            Py_ssize_t L, Py_ssize_t before, Py_ssize_t after, floating k,
                            floating scale, floating beta, int mode) noexcept nogil:
    # x, y point at pixel p of channel 0 of one image; channel c's chunk starts at c*HW; L <=
    # CHUNK.  S and S**-beta live in a stack buffer, so y is written once.
    cdef floating s[CHUNK]
    cdef Py_ssize_t c, i
    cdef floating* yc
    cdef const floating* xc
    for c in range(C):
        yc = y + c * HW
        xc = x + c * HW
        lrn_base(x, s, c, C, HW, L, before, after, k, scale)
        pow_neg(s, L, beta, mode)
        for i in range(L):
            yc[i] = xc[i] * s[i]


cdef int lrn_backward_chunk(const floating* dy, const floating* x, floating* dx, Py_ssize_t C,
                            Py_ssize_t HW, Py_ssize_t L, Py_ssize_t before, Py_ssize_t after,
                            floating k, floating scale, floating beta, floating coef,
                            int mode) noexcept nogil:
    # dx[j] = dy[j] * S[j]**-beta - coef * x[j] * sum_{c = j-after .. j+before} dy[c] * y[c] / S[c]
    # with y[c] = x[c] * S[c]**-beta and coef = 2 * alpha * beta / size.
    # Returns 1 if out of memory.
    cdef floating* t = <floating*> malloc((C + 2) * L * sizeof(floating))
    cdef floating* acc
    cdef floating* s
    cdef floating* dxc
    cdef const floating* xc
    cdef const floating* dyc
    cdef const floating* tc
    cdef Py_ssize_t c, j, i, lo, hi
    if t == NULL:
        return 1
    acc = t + C * L
    s = acc + L
    for c in range(C):
        # dx chunk c holds S[c]**-beta for now; t row c holds dy[c] * x[c] * S[c]**-beta / S[c]
        xc = x + c * HW
        dyc = dy + c * HW
        dxc = dx + c * HW
        lrn_base(x, s, c, C, HW, L, before, after, k, scale)
        for i in range(L):
            dxc[i] = s[i]
        pow_neg(dxc, L, beta, mode)
        for i in range(L):
            t[c * L + i] = dyc[i] * xc[i] * dxc[i] / s[i]
    for j in range(C):
        lo = j - after if j > after else 0
        hi = j + before + 1 if j + before + 1 < C else C
        for i in range(L):
            acc[i] = 0
        for c in range(lo, hi):
            tc = t + c * L
            for i in range(L):
                acc[i] += tc[i]
        xc = x + j * HW
        dyc = dy + j * HW
        dxc = dx + j * HW
        for i in range(L):
            dxc[i] = dyc[i] * dxc[i] - coef * xc[i] * acc[i]
    free(t)
    return 0


cdef int pow_mode(double beta):
    if beta == 0.75:
        return POW_075
    if beta == 0.5:
        return POW_05
    if beta == 1.0:
        return POW_1
    return POW_GENERAL


def local_response_norm(const floating[:, :, :, ::1] x, Py_ssize_t size, double alpha, double beta,
                        double k):
    """LRN across channels, as torch.  x: (N, C, H, W) -> y: (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef Py_ssize_t nb = chunks(HW, CHUNK), b, p, o
    cdef Py_ssize_t before = size // 2, after = (size - 1) // 2
    cdef floating kk = k, scale = alpha / size, bb = beta
    cdef int mode = pow_mode(beta)
    out = np.empty_like(np.asarray(x))
    cdef floating[:, :, :, ::1] y = out
    with nogil:
        for b in prange(N * nb, schedule="static"):
            p = (b % nb) * CHUNK
            o = (b // nb) * C * HW + p      # pixel p of channel 0 of image b // nb
            lrn_forward_chunk(&x[0, 0, 0, 0] + o, &y[0, 0, 0, 0] + o, C, HW,
                              min(CHUNK, HW - p), before, after, kk, scale, bb, mode)
    return out


def local_response_norm_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                                 Py_ssize_t size, double alpha, double beta, double k):
    """Gradient of LRN.  dy, x: (N, C, H, W) -> dx: (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    # chunk length: the scratch (C + 2) * L of a chunk stays near LRN_SCRATCH elements
    cdef Py_ssize_t L = max(64, min(CHUNK, LRN_SCRATCH // C))
    cdef Py_ssize_t nb = chunks(HW, L), b, p, o
    cdef Py_ssize_t before = size // 2, after = (size - 1) // 2
    cdef floating kk = k, scale = alpha / size, bb = beta, coef = 2 * alpha * beta / size
    cdef int mode = pow_mode(beta)
    cdef int failed = 0
    out = np.empty_like(np.asarray(x))
    cdef floating[:, :, :, ::1] dx = out
    with nogil:
        for b in prange(N * nb, schedule="static"):
            p = (b % nb) * L
            o = (b // nb) * C * HW + p
            failed += lrn_backward_chunk(&dy[0, 0, 0, 0] + o, &x[0, 0, 0, 0] + o,
                                         &dx[0, 0, 0, 0] + o, C, HW, min(L, HW - p), before,
                                         after, kk, scale, bb, coef, mode)
    if failed:
        raise MemoryError("local_response_norm_backward: out of memory for a chunk buffer")
    return out


# ----------------------------------------------------------------------------------------------
# LCN: separable filtering of planes (N, H, W)

cdef void filter_w_row(const floating* src, floating* dst, Py_ssize_t W, const floating* taps,
                       Py_ssize_t nt, Py_ssize_t before) noexcept nogil:
    # dst[w] = sum_i taps[i] * src[w - before + i], zero outside [0, W)
    cdef Py_ssize_t i, w, off, lo, hi
    cdef floating t
    for w in range(W):
        dst[w] = 0
    for i in range(nt):
        off = i - before
        lo = -off if off < 0 else 0
        hi = W - off if off > 0 else W
        t = taps[i]
        for w in range(lo, hi):
            dst[w] += t * src[w + off]


cdef void filter_h_row(const floating* src, floating* dst, Py_ssize_t h, Py_ssize_t H,
                       Py_ssize_t W, const floating* taps, Py_ssize_t nt,
                       Py_ssize_t before) noexcept nogil:
    # dst[w] = sum_i taps[i] * src[(h - before + i) * W + w] over rows inside [0, H); src: (H, W)
    cdef Py_ssize_t i, w, r
    cdef floating t
    cdef const floating* sr
    for w in range(W):
        dst[w] = 0
    for i in range(nt):
        r = h - before + i
        if r < 0 or r >= H:
            continue
        t = taps[i]
        sr = src + r * W
        for w in range(W):
            dst[w] += t * sr[w]


cdef void filter2d(const floating* src, floating* dst, floating* tmp, Py_ssize_t N, Py_ssize_t H,
                   Py_ssize_t W, const floating* taps, Py_ssize_t nt,
                   Py_ssize_t before) noexcept nogil:
    # dst = the separable zero-padded filter (taps along W, then along H) of the planes src
    # (N, H, W)
    cdef Py_ssize_t r, n, h
    for r in prange(N * H, schedule="static"):
        filter_w_row(src + r * W, tmp + r * W, W, taps, nt, before)
    for r in prange(N * H, schedule="static"):
        n = r // H
        h = r % H
        filter_h_row(tmp + n * H * W, dst + r * W, h, H, W, taps, nt, before)


cdef class Window:
    """The LCN window for planes (H, W): taps, their reversal (the adjoint filter) and 1/E[1]."""
    cdef object taps_arr, rtaps_arr, inv_dh_arr, inv_dw_arr
    cdef Py_ssize_t nt, before, rbefore

    def __init__(self, taps, Py_ssize_t before, Py_ssize_t H, Py_ssize_t W, dtype):
        self.taps_arr = np.ascontiguousarray(taps, dtype=dtype)
        self.rtaps_arr = np.ascontiguousarray(self.taps_arr[::-1])
        self.nt = self.taps_arr.shape[0]
        self.before = before
        # adjoint of "tap i reads offset i - before" is "reversed tap i reads i - (nt-1-before)"
        self.rbefore = self.nt - 1 - before
        self.inv_dh_arr = 1 / self._border_weight(H)
        self.inv_dw_arr = 1 / self._border_weight(W)

    def _border_weight(self, Py_ssize_t L):
        # E[1] along one axis: the sum of the taps that land inside [0, L).  Always > 0: the
        # largest tap (1, see lcn_window) reads offset 0 or +1, and the one at offset 0 is > 0.
        ones = np.ones(L, dtype=self.taps_arr.dtype)
        out = np.empty(L, dtype=self.taps_arr.dtype)
        if self.taps_arr.dtype == np.float32:
            _filter_w_f(ones, out, self.taps_arr, self.before)
        else:
            _filter_w_d(ones, out, self.taps_arr, self.before)
        return out


def _filter_w_f(const float[::1] src, float[::1] dst, const float[::1] taps, Py_ssize_t before):
    filter_w_row(&src[0], &dst[0], src.shape[0], &taps[0], taps.shape[0], before)


def _filter_w_d(const double[::1] src, double[::1] dst, const double[::1] taps, Py_ssize_t before):
    filter_w_row(&src[0], &dst[0], src.shape[0], &taps[0], taps.shape[0], before)


cdef void smooth(const floating* src, floating* dst, floating* tmp, Py_ssize_t N, Py_ssize_t H,
                 Py_ssize_t W, const floating* taps, Py_ssize_t nt, Py_ssize_t before,
                 const floating* inv_dh, const floating* inv_dw) noexcept nogil:
    # B(p) = filter(p) / E[1]: the border-corrected local mean of the planes src (N, H, W)
    cdef Py_ssize_t r, h, w
    cdef floating a
    filter2d(src, dst, tmp, N, H, W, taps, nt, before)
    for r in prange(N * H, schedule="static"):
        h = r % H
        a = inv_dh[h]
        for w in range(W):
            dst[r * W + w] = dst[r * W + w] * (a * inv_dw[w])


cdef void channel_mean_chunk(const floating* x, floating* m, Py_ssize_t C, Py_ssize_t HW,
                             Py_ssize_t L) noexcept nogil:
    # m[i] = mean over c of x[c*HW + i] for i < L (x, m point at the chunk's first pixel)
    cdef Py_ssize_t c, i
    cdef const floating* xc
    cdef floating inv = 1.0 / C
    for i in range(L):
        m[i] = 0
    for c in range(C):
        xc = x + c * HW
        for i in range(L):
            m[i] += xc[i]
    for i in range(L):
        m[i] *= inv


cdef void centered_moments_chunk(const floating* x, const floating* dy, const floating* ex,
                                 floating* vv, floating* sdyv, floating* sdy, Py_ssize_t C,
                                 Py_ssize_t HW, Py_ssize_t L) noexcept nogil:
    # with v = x - ex over a chunk of L <= CHUNK pixels: vv = mean_c v^2; if dy != NULL also
    # sdyv = sum_c dy v and sdy = sum_c dy.  The sums live in stack arrays (which cannot alias the
    # inputs, so the compiler vectorises without runtime alias checks) and are copied out.
    cdef floating a_vv[CHUNK]
    cdef floating a_dyv[CHUNK]
    cdef floating a_dy[CHUNK]
    cdef Py_ssize_t c, i
    cdef const floating* xc
    cdef const floating* dyc
    cdef floating v, inv = 1.0 / C
    for i in range(L):
        a_vv[i] = 0
    if dy == NULL:
        for c in range(C):
            xc = x + c * HW
            for i in range(L):
                v = xc[i] - ex[i]
                a_vv[i] += v * v
    else:
        for i in range(L):
            a_dyv[i] = 0
            a_dy[i] = 0
        for c in range(C):
            xc = x + c * HW
            dyc = dy + c * HW
            for i in range(L):
                v = xc[i] - ex[i]
                a_vv[i] += v * v
                a_dyv[i] += dyc[i] * v
                a_dy[i] += dyc[i]
        for i in range(L):
            sdyv[i] = a_dyv[i]
            sdy[i] = a_dy[i]
    for i in range(L):
        vv[i] = a_vv[i] * inv


cdef void den_chunk(const floating* s, floating* den, Py_ssize_t L, floating floor,
                    bint mean_divisor) noexcept nogil:
    # "mean": den = s where s > floor (= max(c, threshold)) else floor; "fixed" (floor is the
    # threshold): den = s where s > threshold else 1
    cdef Py_ssize_t i
    if mean_divisor:
        for i in range(L):
            den[i] = s[i] if s[i] > floor else floor
    else:
        for i in range(L):
            den[i] = s[i] if s[i] > floor else 1


cdef void lcn_den(floating* s, floating* den, Py_ssize_t N, Py_ssize_t HW, floating threshold,
                  bint mean_divisor, floating* cmax, floating* craw) noexcept nogil:
    # s (N, HW) holds E[v*v] on entry and its square root on exit.  "mean": craw[n] = c, the mean
    # of s over image n, cmax[n] = max(c, threshold), den = s where s > cmax[n] else cmax[n]
    # (= max(s, c, threshold)); "fixed": den = s where s > threshold else 1.
    cdef Py_ssize_t n, p, b
    cdef Py_ssize_t nb = chunks(HW, CHUNK)
    cdef double acc
    cdef floating cm
    for p in prange(N * HW, schedule="static"):
        s[p] = fsqrt(s[p])
    if mean_divisor:
        for n in range(N):
            acc = 0
            for p in range(n * HW, (n + 1) * HW):
                acc = acc + s[p]
            cm = <floating> (acc / HW)
            craw[n] = cm
            cmax[n] = cm if cm >= threshold else threshold
    for b in prange(N * nb, schedule="static"):
        n = b // nb
        p = n * HW + (b % nb) * CHUNK
        den_chunk(s + p, den + p, min(CHUNK, (n + 1) * HW - p),
                  cmax[n] if mean_divisor else threshold, mean_divisor)


cdef void divide_chunk(const floating* x, const floating* ex, const floating* den, floating* y,
                       Py_ssize_t L) noexcept nogil:
    # y = (x - E[x]) / den over a chunk of L pixels of one channel
    cdef Py_ssize_t i
    for i in range(L):
        y[i] = (x[i] - ex[i]) / den[i]


def local_contrast_norm(const floating[:, :, :, ::1] x, Py_ssize_t size, double sigma,
                        double threshold, divisor):
    """LCN (docs/contract/arrays.rst).  x: (N, C, H, W) -> y: (N, C, H, W).

    divisor: "mean" or "fixed"."""
    from cnncore_kernels.normalization import lcn_window

    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t HW = H * W, b, n, p
    cdef Py_ssize_t nb = chunks(HW, CHUNK)
    cdef bint mean_divisor = divisor == "mean"
    dtype = np.asarray(x).dtype
    taps, before = lcn_window(size, sigma, max(H, W))
    cdef Window win = Window(taps, before, H, W, dtype)
    cdef floating[::1] tp = win.taps_arr, idh = win.inv_dh_arr, idw = win.inv_dw_arr
    cdef floating thr = threshold
    out = np.empty((N, C, H, W), dtype=dtype)
    planes = np.empty((5, N, H, W), dtype=dtype)
    cvals = np.empty((2, N), dtype=dtype)
    cdef floating[:, :, :, ::1] y = out, pl = planes
    cdef floating[:, ::1] cv = cvals
    # planes: 0 = mean_c x, then mean_c v^2; 1 = E[x]; 2 = E[v^2], then s; 3 = den; 4 = scratch
    cdef floating* m = &pl[0, 0, 0, 0]
    cdef floating* ex = &pl[1, 0, 0, 0]
    cdef floating* s = &pl[2, 0, 0, 0]
    cdef floating* den = &pl[3, 0, 0, 0]
    cdef floating* tmp = &pl[4, 0, 0, 0]
    with nogil:
        for b in prange(N * nb, schedule="static"):
            n = b // nb
            p = (b % nb) * CHUNK
            channel_mean_chunk(&x[n, 0, 0, 0] + p, m + n * HW + p, C, HW, min(CHUNK, HW - p))
        smooth(m, ex, tmp, N, H, W, &tp[0], win.nt, win.before, &idh[0], &idw[0])
        for b in prange(N * nb, schedule="static"):
            n = b // nb
            p = (b % nb) * CHUNK
            centered_moments_chunk(&x[n, 0, 0, 0] + p, NULL, ex + n * HW + p, m + n * HW + p, NULL,
                                 NULL, C, HW, min(CHUNK, HW - p))
        smooth(m, s, tmp, N, H, W, &tp[0], win.nt, win.before, &idh[0], &idw[0])
        lcn_den(s, den, N, HW, thr, mean_divisor, &cv[0, 0], &cv[1, 0])
        for b in prange(N * C * nb, schedule="static"):
            n = b // (C * nb)
            p = (b % nb) * CHUNK
            divide_chunk(&x[0, 0, 0, 0] + (b // nb) * HW + p, ex + n * HW + p, den + n * HW + p,
                       &y[0, 0, 0, 0] + (b // nb) * HW + p, min(CHUNK, HW - p))
    return out


cdef void dq_row(floating* g, const floating* s, Py_ssize_t W, floating floor, floating dc_share,
                 floating a_h, const floating* inv_dw) noexcept nogil:
    # g holds d_den on entry.  ds = d_den where den is s (s > floor), plus dc_share (the c-branch
    # sum / HW, "mean" only); exit: g = dq / E[1] = ds / (2 s) * inv_dh * inv_dw, 0 where s == 0
    cdef Py_ssize_t w
    cdef floating dd
    for w in range(W):
        dd = (g[w] if s[w] > floor else 0) + dc_share
        g[w] = dd / (2 * s[w]) * (a_h * inv_dw[w]) if s[w] > 0 else 0


cdef void sum_dv_row(floating* r2, floating* sdy, const floating* den, const floating* sv,
                     Py_ssize_t W, floating two_over_c, floating a_h,
                     const floating* inv_dw) noexcept nogil:
    # r2 <- 2 r (r2 holds B^T(dq) without the 1/C);  sdy <- (sum_c dv) / E[1] with
    # sum_c dv = sum_c dy / den + 2 r sum_c v
    cdef Py_ssize_t w
    for w in range(W):
        r2[w] = r2[w] * two_over_c
        sdy[w] = (sdy[w] / den[w] + r2[w] * sv[w]) * (a_h * inv_dw[w])


cdef void lcn_grad_chunk(const floating* x, const floating* dy, const floating* ex,
                         const floating* den, const floating* r2, const floating* t,
                         floating* dx, Py_ssize_t L) noexcept nogil:
    # dx = dy / den + (x - ex) * r2 - t over a chunk of L pixels (r2 = 2 r, see the backward)
    cdef Py_ssize_t i
    for i in range(L):
        dx[i] = dy[i] / den[i] + (x[i] - ex[i]) * r2[i] - t[i]


def local_contrast_norm_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                                 Py_ssize_t size, double sigma, double threshold, divisor):
    """Exact gradient of LCN.  dy, x: (N, C, H, W) -> dx: (N, C, H, W).

    With E = broadcast . B . mean_c (B the border-corrected smoothing of a plane, B^T its adjoint):
    v = x - E[x], q = B(mean_c v^2), s = sqrt(q), den = max(s, c, thr), y = v / den.
      d_den = -sum_c dy v / den^2
      ds    = d_den where den is s, plus (sum of d_den where den is c) / HW everywhere ("mean")
      dq    = ds / (2 s)  (0 where s == 0: then v == 0 on the whole window, so nothing flows)
      r     = B^T(dq) / C          -> dv = dy / den + 2 v r
      t     = B^T(sum_c dv) / C    -> dx = dv - t,   sum_c dv = sum_c dy / den + 2 r sum_c v
    Branch choice: den is s where s > max(c, thr), else c where c >= thr, else thr.
    """
    from cnncore_kernels.normalization import lcn_window

    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t HW = H * W, b, n, r, p, q, o
    cdef Py_ssize_t nb = chunks(HW, CHUNK)
    cdef bint mean_divisor = divisor == "mean"
    dtype = np.asarray(x).dtype
    taps, before = lcn_window(size, sigma, max(H, W))
    cdef Window win = Window(taps, before, H, W, dtype)
    cdef floating[::1] tp = win.taps_arr, rtp = win.rtaps_arr
    cdef floating[::1] idh = win.inv_dh_arr, idw = win.inv_dw_arr
    cdef floating thr = threshold
    out = np.empty((N, C, H, W), dtype=dtype)
    planes = np.empty((9, N, H, W), dtype=dtype)
    cvals = np.empty((2, N), dtype=dtype)
    dc_arr = np.zeros(N, dtype=np.float64)
    cdef floating[:, :, :, ::1] dx = out, pl = planes
    cdef floating[:, ::1] cv = cvals
    cdef floating* cmax = &cv[0, 0]
    cdef floating* craw = &cv[1, 0]
    cdef double[::1] dc = dc_arr
    cdef floating* m = &pl[0, 0, 0, 0]      # mean_c x, then mean_c v^2
    cdef floating* ex = &pl[1, 0, 0, 0]     # E[x]
    cdef floating* sv = &pl[2, 0, 0, 0]     # sum_c v = C * (mean_c x - E[x])
    cdef floating* s = &pl[3, 0, 0, 0]      # q, then s
    cdef floating* den = &pl[4, 0, 0, 0]
    cdef floating* g = &pl[5, 0, 0, 0]      # sum_c dy v, then d_den, then dq / E[1], then t
    cdef floating* sdy = &pl[6, 0, 0, 0]    # sum_c dy, then (sum_c dv) / E[1]
    cdef floating* r2 = &pl[7, 0, 0, 0]     # 2 r
    cdef floating* tmp = &pl[8, 0, 0, 0]
    cdef floating inv_hw = 1.0 / HW
    with nogil:
        for b in prange(N * nb, schedule="static"):
            n = b // nb
            p = (b % nb) * CHUNK
            channel_mean_chunk(&x[n, 0, 0, 0] + p, m + n * HW + p, C, HW, min(CHUNK, HW - p))
        smooth(m, ex, tmp, N, H, W, &tp[0], win.nt, win.before, &idh[0], &idw[0])
        for p in prange(N * HW, schedule="static"):
            sv[p] = C * (m[p] - ex[p])
        for b in prange(N * nb, schedule="static"):
            n = b // nb
            p = (b % nb) * CHUNK
            q = n * HW + p
            centered_moments_chunk(&x[n, 0, 0, 0] + p, &dy[n, 0, 0, 0] + p, ex + q, m + q, g + q,
                                 sdy + q, C, HW, min(CHUNK, HW - p))
        smooth(m, s, tmp, N, H, W, &tp[0], win.nt, win.before, &idh[0], &idw[0])
        lcn_den(s, den, N, HW, thr, mean_divisor, cmax, craw)
        for p in prange(N * HW, schedule="static"):
            g[p] = -g[p] / (den[p] * den[p])
        if mean_divisor:  # dc[n]: d_den summed where den is c
            for n in range(N):
                if craw[n] >= thr:
                    for p in range(n * HW, (n + 1) * HW):
                        if not (s[p] > cmax[n]):
                            dc[n] += g[p]
        # ds, then dq / E[1]  (the adjoint of B = filter . (1/E[1]) starts with 1/E[1])
        for r in prange(N * H, schedule="static"):
            n = r // H
            dq_row(g + r * W, s + r * W, W, cmax[n] if mean_divisor else thr,
                   <floating> (dc[n] * inv_hw) if mean_divisor else 0, idh[r % H], &idw[0])
        # r2 = 2 B^T(dq) / C
        filter2d(g, r2, tmp, N, H, W, &rtp[0], win.nt, win.rbefore)
        for r in prange(N * H, schedule="static"):
            sum_dv_row(r2 + r * W, sdy + r * W, den + r * W, sv + r * W, W, <floating> 2.0 / C,
                       idh[r % H], &idw[0])
        # t = B^T(sum_c dv) / C, into g
        filter2d(sdy, g, tmp, N, H, W, &rtp[0], win.nt, win.rbefore)
        for p in prange(N * HW, schedule="static"):
            g[p] = g[p] * (<floating> 1.0 / C)
        for b in prange(N * C * nb, schedule="static"):
            p = (b % nb) * CHUNK
            q = (b // (C * nb)) * HW + p        # offset in the planes (N, H, W)
            o = (b // nb) * HW + p              # offset in (N, C, H, W)
            lcn_grad_chunk(&x[0, 0, 0, 0] + o, &dy[0, 0, 0, 0] + o, ex + q, den + q, r2 + q, g + q,
                         &dx[0, 0, 0, 0] + o, min(CHUNK, HW - p))
    return out
