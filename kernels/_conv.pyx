# cython: language_level=3
"""CPU convolution: im2col / col2im and conv2d forward and backward (im2col + BLAS GEMM).

Inputs are trusted (validated in ``cnncore.functional``): C-contiguous float32/float64 NCHW arrays,
positive sizes, output sizes >= 1, per-plane sizes below 2**31.

Memory bound.  The column buffer never holds a whole batch: it holds ``C*kh*kw`` rows for a chunk of
output rows of one image, at most ``max(COL_BUDGET, C*kh*kw*Wo)`` elements (``COL_BUDGET`` = 4M
elements, 16 MB in float32), one per thread.  For small maps (the batched path) it holds the columns
of a block of whole images, at most ``max(BATCH_BUDGET, C*kh*kw*Ho*Wo)`` elements per thread
(``BATCH_BUDGET`` = 2M, 8 MB in float32), beside a ``K x images*Ho*Wo`` output (or dy) block.  The
stride-1 "shifted GEMM" path needs no column buffer at all, only a zero-padded copy of one image
(when padding > 0) and a ``K x rows x Wp`` accumulator for a chunk.  Strided rows with more taps
than the stride go through the row's phases, a stack array of at most ``PHASE_MAX`` elements
(``phases_to_columns``, ``phase_col2im_row``).
"""

import numpy as np

cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

from ._blas cimport _gemm_parts, gemm_rm, pgemm_rm
from ._geometry cimport out_size
from ._sums cimport plane_sum
from ._blas import blas_info  # no-cython-lint  (the BLAS in use; kept importable here)

cdef enum:
    # Elements of one column-buffer chunk (the memory bound stated above).
    COL_BUDGET = 4194304
    # Elements of the shifted-GEMM accumulator chunk (K x rows x Wp); small enough to stay in L2.
    ACC_BUDGET = 262144
    # Most elements of one input row's phases (``phase_span``), a stack array of
    # ``phases_to_columns`` and ``phase_col2im_row``.
    PHASE_MAX = 2048


include "_ranges.pxi"


cdef inline Py_ssize_t phase_span(Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t dw,
                                  Py_ssize_t Wo) noexcept nogil:
    # L, the elements per phase of a strided row (``split_phases``): phases start at t0 =
    # floor(-pw / sw) and the last tap reads phase element Wo - 1 + floor(((kw-1)*dw - pw) / sw)
    return Wo + floor_div((kw - 1) * dw - pw, sw) - floor_div(-pw, sw)


cdef inline bint use_phases(Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t dw,
                            Py_ssize_t Wo) noexcept nogil:
    # strided rows with more taps than phases, whose phases fit the stack buffer
    return sw > 1 and kw > sw and sw * phase_span(kw, sw, pw, dw, Wo) <= PHASE_MAX


cdef inline void split_phases(const floating* row, Py_ssize_t W, Py_ssize_t sw, Py_ssize_t L,
                              Py_ssize_t t0, floating* ph) noexcept nogil:
    # ph[q*L + u] = row[(u + t0)*sw + q] (0 outside [0, W)): the sw phases of one input row
    cdef Py_ssize_t q, u, w
    for q in range(sw):
        for u in range(L):
            w = (u + t0) * sw + q
            ph[q * L + u] = row[w] if 0 <= w < W else 0


cdef inline Py_ssize_t tap_in_phases(Py_ssize_t j, Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t dw,
                                     Py_ssize_t L, Py_ssize_t t0) noexcept nogil:
    # Where tap j's Wo elements start in a row's phases (``split_phases``): phase
    # (j*dw - pw) mod sw, element floor((j*dw - pw) / sw) - t0 on
    cdef Py_ssize_t off = j * dw - pw
    cdef Py_ssize_t s0 = floor_div(off, sw)
    return (off - s0 * sw) * L + s0 - t0


cdef inline void taps_from_phases(const floating* ph, Py_ssize_t L, Py_ssize_t t0,
                                  Py_ssize_t kw, Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t dw,
                                  Py_ssize_t Wo, floating* dst, Py_ssize_t ld) noexcept nogil:
    # dst[j*ld + ow] = row[ow*sw - pw + j*dw], the kw taps j of the row whose phases are ph,
    # each a contiguous copy (``tap_in_phases``).  (One strided gather per tap took 11% of an
    # (8,3,227,227) 11x11 stride-4 forward under perf.)
    cdef Py_ssize_t j
    for j in range(kw):
        memcpy(dst + j * ld, ph + tap_in_phases(j, sw, pw, dw, L, t0), Wo * sizeof(floating))


cdef inline Py_ssize_t chunk_row_reading(Py_ssize_t h, Py_ssize_t i, Py_ssize_t sh, Py_ssize_t ph,
                                         Py_ssize_t dh, Py_ssize_t row0,
                                         Py_ssize_t nrows) noexcept nogil:
    # The output row oh - row0 of the chunk (row0 .. row0 + nrows - 1) that read input row h at
    # kernel row i (h = oh*sh - ph + i*dh), or -1 when none did
    cdef Py_ssize_t t = h + ph - i * dh
    if t < 0 or t % sh != 0 or t // sh < row0 or t // sh >= row0 + nrows:
        return -1
    return t // sh - row0


cdef void phase_col2im_row(const floating* col, Py_ssize_t P, Py_ssize_t c, Py_ssize_t h,
                           Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                           Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                           Py_ssize_t dw, Py_ssize_t Wo, Py_ssize_t row0, Py_ssize_t nrows,
                           floating* dst) noexcept nogil:
    # The adjoint of ``phases_to_columns`` (``col2im_rows``, ``use_phases``), for input row h of c:
    # every column row that read row h (taps i of the chunk's output rows, all kw taps j) added
    # contiguously into the row's phases, then the phases added to dst = dx[c, h, :] once.
    cdef floating buf[PHASE_MAX]
    cdef Py_ssize_t L = phase_span(kw, sw, pw, dw, Wo), t0 = floor_div(-pw, sw)
    cdef Py_ssize_t i, j, oh, ow, q, u, w
    cdef bint read = False
    cdef floating* d
    cdef const floating* src
    memset(buf, 0, sw * L * sizeof(floating))
    for i in range(kh):
        oh = chunk_row_reading(h, i, sh, ph, dh, row0, nrows)
        if oh < 0:
            continue
        read = True
        for j in range(kw):
            d = buf + tap_in_phases(j, sw, pw, dw, L, t0)
            src = col + ((c * kh + i) * kw + j) * P + oh * Wo
            for ow in range(Wo):
                d[ow] += src[ow]
    if read:
        for q in range(sw):
            for u in range(L):
                w = (u + t0) * sw + q
                if 0 <= w < W:
                    dst[w] += buf[q * L + u]


cdef void phases_to_columns(const floating* x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t c,
                            Py_ssize_t h, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                            Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                            Py_ssize_t dw, Py_ssize_t Wo, Py_ssize_t row0, Py_ssize_t nrows,
                            Py_ssize_t P, floating* col) noexcept nogil:
    # ``im2col_rows``' columns that read input row h of channel c (``use_phases``): for each
    # kernel row i and chunk row r with h = (row0 + r)*sh - ph + i*dh, the kw taps, from h's
    # phases (zeros if h lies outside the map)
    cdef floating buf[PHASE_MAX]
    cdef Py_ssize_t L = phase_span(kw, sw, pw, dw, Wo), t0 = floor_div(-pw, sw)
    cdef Py_ssize_t i, j, r
    cdef bint split = False
    cdef floating* dst
    for i in range(kh):
        r = chunk_row_reading(h, i, sh, ph, dh, row0, nrows)
        if r < 0:
            continue
        dst = col + (c * kh + i) * kw * P + r * Wo
        if h < 0 or h >= H:
            for j in range(kw):
                memset(dst + j * P, 0, Wo * sizeof(floating))
            continue
        if not split:
            split_phases(x + (c * H + h) * W, W, sw, L, t0, buf)
            split = True
        taps_from_phases(buf, L, t0, kw, sw, pw, dw, Wo, dst, P)


cdef void im2col_rows(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t Wo, Py_ssize_t row0, Py_ssize_t nrows, Py_ssize_t ld,
                      floating* col) noexcept nogil:
    # col[(c*kh + i)*kw + j, r*Wo + ow] = x[c, (row0+r)*sh - ph + i*dh, ow*sw - pw + j*dw]
    # (0 outside)
    # ld: elements between rows of col (nrows*Wo, or more when col holds several images)
    cdef Py_ssize_t R = C * kh * kw, P = ld
    cdef Py_ssize_t rr, c, i, j, r, h, ow, lo, hi, off, ci, h0, nh
    cdef floating* dst
    cdef const floating* src
    if use_phases(kw, sw, pw, dw, Wo):
        # per (channel, input row h of the chunk's span): h split into its phases once, then
        # all kw taps of every (kernel row i, output row r) that reads h copied from them (a
        # split per (i, r) split each row about kh / sh times: 11x11 stride 4, 2.75)
        h0 = row0 * sh - ph
        nh = (nrows - 1) * sh + (kh - 1) * dh + 1
        for ci in prange(C * nh, schedule="static"):
            phases_to_columns(x, H, W, ci // nh, h0 + ci % nh, kh, kw, sh, sw, ph, pw, dh, dw,
                              Wo, row0, nrows, P, col)
        return
    for rr in prange(R, schedule="static"):
        c = rr // (kh * kw)
        i = (rr // kw) % kh
        j = rr % kw
        off = j * dw - pw
        lo = out_lo(off, sw)
        hi = out_hi(off, W, sw, Wo)
        for r in range(nrows):
            dst = col + rr * P + r * Wo
            h = (row0 + r) * sh - ph + i * dh
            if h < 0 or h >= H or lo >= hi:
                memset(dst, 0, Wo * sizeof(floating))
                continue
            src = x + (c * H + h) * W + off
            for ow in range(lo):
                dst[ow] = 0
            if sw == 1:
                for ow in range(lo, hi):
                    dst[ow] = src[ow]
            else:
                for ow in range(lo, hi):
                    dst[ow] = src[ow * sw]
            for ow in range(hi, Wo):
                dst[ow] = 0


cdef void col2im_rows(const floating* col, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t Wo, Py_ssize_t row0, Py_ssize_t nrows, Py_ssize_t ld,
                      floating* dx) noexcept nogil:
    # Adjoint of im2col_rows, as a gather: each thread owns whole input rows dx[c, h, :] and adds
    # every column entry that im2col read from that row, so no two threads write the same element.
    # ld: elements between consecutive rows of col, as in im2col_rows.
    cdef Py_ssize_t P = ld
    cdef Py_ssize_t h_lo = row0 * sh - ph
    cdef Py_ssize_t h_hi = (row0 + nrows - 1) * sh - ph + (kh - 1) * dh + 1
    cdef Py_ssize_t ch, c, h, i, j, oh, ow, lo, hi, off
    cdef floating* dst
    cdef const floating* src
    if h_lo < 0:
        h_lo = 0
    if h_hi > H:
        h_hi = H
    if h_hi <= h_lo:
        return
    if use_phases(kw, sw, pw, dw, Wo):
        for ch in prange(C * (h_hi - h_lo), schedule="static"):
            c = ch // (h_hi - h_lo)
            h = h_lo + ch % (h_hi - h_lo)
            phase_col2im_row(col, P, c, h, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo, row0, nrows,
                             dx + (c * H + h) * W)
        return
    for ch in prange(C * (h_hi - h_lo), schedule="static"):
        c = ch // (h_hi - h_lo)
        h = h_lo + ch % (h_hi - h_lo)
        dst = dx + (c * H + h) * W
        for i in range(kh):
            oh = chunk_row_reading(h, i, sh, ph, dh, row0, nrows)
            if oh < 0:
                continue
            for j in range(kw):
                off = j * dw - pw
                lo = out_lo(off, sw)
                hi = out_hi(off, W, sw, Wo)
                src = col + ((c * kh + i) * kw + j) * P + oh * Wo
                if sw == 1:
                    for ow in range(lo, hi):
                        dst[ow + off] += src[ow]
                else:
                    for ow in range(lo, hi):
                        dst[ow * sw + off] += src[ow]


cdef Py_ssize_t rows_per_chunk(Py_ssize_t R, Py_ssize_t Wo, Py_ssize_t Ho) noexcept nogil:
    cdef Py_ssize_t n = COL_BUDGET // (R * Wo)
    if n < 1:
        n = 1
    if n > Ho:
        n = Ho
    return n


def im2col(const floating[:, :, ::1] x, kernel, stride, padding, dilation):
    """Column matrix of one image. x: (C, H, W) -> (C*kh*kw, Ho*Wo)."""
    cdef Py_ssize_t kh = kernel[0], kw = kernel[1], sh = stride[0], sw = stride[1]
    cdef Py_ssize_t ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t Ho = out_size(H, kh, sh, ph, dh)
    cdef Py_ssize_t Wo = out_size(W, kw, sw, pw, dw)
    out = np.empty((C * kh * kw, Ho * Wo), dtype=np.asarray(x).dtype)
    cdef floating[:, ::1] o = out
    with nogil:
        im2col_rows(&x[0, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo, 0, Ho, Ho * Wo,
                    &o[0, 0])
    return out


def col2im(const floating[:, ::1] col, input_shape, kernel, stride, padding, dilation):
    """Adjoint of ``im2col``. col: (C*kh*kw, Ho*Wo) -> (C, H, W)."""
    cdef Py_ssize_t kh = kernel[0], kw = kernel[1], sh = stride[0], sw = stride[1]
    cdef Py_ssize_t ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t C = input_shape[0], H = input_shape[1], W = input_shape[2]
    cdef Py_ssize_t Ho = out_size(H, kh, sh, ph, dh)
    cdef Py_ssize_t Wo = out_size(W, kw, sw, pw, dw)
    out = np.zeros((C, H, W), dtype=np.asarray(col).dtype)
    cdef floating[:, :, ::1] o = out
    with nogil:
        col2im_rows(&col[0, 0], C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo, 0, Ho, Ho * Wo,
                    &o[0, 0, 0])
    return out


# ----------------------------------------------------------------------------------------------
# Epilogue: the bias and the ReLU applied where the convolution output is written (no extra pass
# over the output).  The same float operations as the separate passes (y = gemm; y += b; then
# relu(y) = 0 if y <= 0 else y, NaN kept, as torch.relu), so fused and unfused results are equal.

cdef inline void epilogue_copy(const floating* src, floating* dst, Py_ssize_t L, floating bk,
                               bint has_bias, bint relu) noexcept nogil:
    # dst[p] = act(src[p] + bk) for p < L; src may equal dst (in place)
    cdef Py_ssize_t p
    cdef floating v
    if relu and has_bias:
        for p in range(L):
            v = src[p] + bk
            dst[p] = 0 if v <= 0 else v
    elif relu:
        for p in range(L):
            v = src[p]
            dst[p] = 0 if v <= 0 else v
    elif has_bias:
        for p in range(L):
            dst[p] = src[p] + bk
    elif src != dst:
        memcpy(dst, src, L * sizeof(floating))


cdef void epilogue_rows(floating* y, Py_ssize_t K, Py_ssize_t L, Py_ssize_t ld, const floating* b,
                        bint relu) noexcept nogil:
    # In place on K rows of length L, ld apart: y[k*ld + p] = act(y[k*ld + p] + b[k]); b may be NULL
    cdef Py_ssize_t k
    if b == NULL and not relu:
        return
    for k in range(K):
        epilogue_copy(y + k * ld, y + k * ld, L, b[k] if b != NULL else 0, b != NULL, relu)


# ----------------------------------------------------------------------------------------------
# Stride-1 "shifted GEMM": one GEMM per kernel tap over a shifted view of the (padded) image.
# With the image padded to (C, Hp, Wp), output row oh, column ow of tap (i, j) reads
# xp[c, oh + i*dh, ow + j*dw].  Computing the output on the padded width Wp (columns ow >= Wo are
# garbage and dropped) makes every tap a plain matrix: rows c with stride Hp*Wp, and
# L = (nr-1)*Wp + Wo contiguous columns starting at (oh0 + i*dh)*Wp + j*dw.

cdef void shifted_rows(const floating* xp, const floating* wt, Py_ssize_t C, Py_ssize_t Hp,
                       Py_ssize_t Wp, Py_ssize_t K, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t dh,
                       Py_ssize_t dw, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t oh0, Py_ssize_t nr,
                       floating* acc, floating* y, const floating* b, bint relu) noexcept nogil:
    # Output rows oh0..oh0+nr of one image, single-threaded (callers parallelise over row blocks).
    # wt: (kh, kw, K, C) contiguous; y: (K, Ho, Wo); acc: K * nr * Wp scratch of this thread;
    # b: (K,) bias or NULL; the bias and ReLU are applied in the copy from acc to y (the epilogue).
    cdef Py_ssize_t i, j, k, r
    cdef Py_ssize_t L = (nr - 1) * Wp + Wo
    cdef int plane = <int> (Hp * Wp)
    for i in range(kh):
        for j in range(kw):
            gemm_rm(False, False, <int> K, <int> L, <int> C, 1,
                    wt + (i * kw + j) * K * C, <int> C,
                    xp + (oh0 + i * dh) * Wp + j * dw, plane,
                    0 if (i == 0 and j == 0) else 1, acc, <int> (nr * Wp))
    for k in range(K):
        for r in range(nr):
            epilogue_copy(acc + k * nr * Wp + r * Wp, y + (k * Ho + oh0 + r) * Wo, Wo,
                          b[k] if b != NULL else 0, b != NULL, relu)


cdef void shifted_backward_rows(const floating* xp, const floating* wt, const floating* dy,
                                Py_ssize_t C, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t K,
                                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t dh, Py_ssize_t dw,
                                Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t oh0, Py_ssize_t nr,
                                floating* dyw, floating* dwt, floating* dxp) noexcept nogil:
    # Output rows oh0..oh0+nr of one image, single-threaded.  dy: (K, Ho, Wo); dyw: K * nr * Wp
    # scratch (dy on the padded width, zeros in the dropped columns); dwt: (kh, kw, K, C) and
    # dxp: (C, Hp, Wp) are this thread's accumulators (either may be NULL).
    cdef Py_ssize_t i, j, k, r, c
    cdef Py_ssize_t L = (nr - 1) * Wp + Wo
    cdef int plane = <int> (Hp * Wp)
    for k in range(K):
        for r in range(nr):
            for c in range(Wp):
                dyw[k * nr * Wp + r * Wp + c] = dy[(k * Ho + oh0 + r) * Wo + c] if c < Wo else 0
    for i in range(kh):
        for j in range(kw):
            if dwt != NULL:  # dW[i, j] (K, C) += dyw (K, L) @ xshift^T (L, C)
                gemm_rm(False, True, <int> K, <int> C, <int> L, 1, dyw, <int> (nr * Wp),
                        xp + (oh0 + i * dh) * Wp + j * dw, plane, 1,
                        dwt + (i * kw + j) * K * C, <int> C)
            if dxp != NULL:  # dxshift (C, L) += W[i, j]^T (C, K) @ dyw (K, L)
                gemm_rm(True, False, <int> C, <int> L, <int> K, 1,
                        wt + (i * kw + j) * K * C, <int> C, dyw, <int> (nr * Wp), 1,
                        dxp + (oh0 + i * dh) * Wp + j * dw, plane)


cdef void sum_parts(floating* buf, Py_ssize_t parts, Py_ssize_t size) noexcept nogil:
    # buf[0:size] += buf[t*size:(t+1)*size] for t >= 1 (per-thread partial results)
    cdef Py_ssize_t e, t
    if parts <= 1:
        return
    for e in prange(size, schedule="static"):
        for t in range(1, parts):
            buf[e] += buf[t * size + e]


cdef void pad_image(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                    Py_ssize_t pw, floating* xp) noexcept nogil:
    # xp (C, H+2ph, W+2pw) must be zeroed by the caller; copies the interior.
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw, ch, c, h, w
    for ch in prange(C * H, schedule="static"):
        c = ch // H
        h = ch % H
        for w in range(W):
            xp[(c * Hp + h + ph) * Wp + pw + w] = x[(c * H + h) * W + w]


cdef void crop_image(const floating* xp, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                     Py_ssize_t pw, floating* x) noexcept nogil:
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw, ch, c, h, w
    for ch in prange(C * H, schedule="static"):
        c = ch // H
        h = ch % H
        for w in range(W):
            x[(c * H + h) * W + w] = xp[(c * Hp + h + ph) * Wp + pw + w]


cdef Py_ssize_t acc_rows_for(Py_ssize_t K, Py_ssize_t Wp, Py_ssize_t Ho) noexcept nogil:
    cdef Py_ssize_t n = ACC_BUDGET // (K * Wp)
    if n < 4:
        n = 4
    if n > Ho:
        n = Ho
    return n


PATHS = ("auto", "im2col", "shifted", "batched")


def check_path(path):
    """ValueError unless ``path`` names a strategy: "auto" (the rule below), "im2col" (image by
    image), "shifted" (stride-1 layers) or "batched" (columns over the batch, every layer but the
    1x1 one-GEMM case)."""
    if not isinstance(path, str) or path not in PATHS:
        raise ValueError(f"path must be 'auto', 'im2col', 'shifted' or 'batched', got {path!r}")
    return path


# Small maps, big batches.  Image by image, a layer with small output maps gives GEMMs with few
# columns (Ho*Wo = 49 for a 7x7 map, split further into row blocks per thread) where OpenBLAS runs
# far below its peak, and the backward pays per image for its per-thread dx planes (zeroed, summed,
# copied) and for a dweight update of only Ho*Wo columns.  Columns over a block of images
# (images*Ho*Wo of them, at most BATCH_BUDGET elements per thread) make the GEMMs large; the
# per-image layout of y (and of dy) is restored by a copy that also applies the bias and ReLU.
# The rule, from interleaved medians on the shared 2-core machine (provisional, 2026-12-01, load
# 4-11, so only the large differences count), forward / backward in ms, per image -> batched:
#   (256,64,7,7) k3:     fwd 30-36 -> 17.5, bwd 75-79 -> 34
#   (128,256,8,8) k3:    fwd 86 -> 75 (165 -> 150 at load 11), bwd 198 -> 128 (339 -> 317)
#   (128,128,16,16) k3:  fwd 60 -> 71 (worse), bwd 204 -> 127 (409 -> 416 at load 11)
#   (64,64,15,15) k5 p2: fwd 26 -> 35 (worse), bwd 76 -> 57 (75 -> 76 at load 11)
#   (32,96,27,27) k5 p2: fwd and bwd within noise
# and against the previous release in fresh processes, interleaved, 9 rounds at load 5-7:
#   (128,256,8,8) k3: fwd 1.17x, bwd 1.08x faster; (64,64,15,15) k5: fwd 1.00x, bwd 0.97x (noise).
# The forward's extra copy of y costs more than the larger GEMM gains beyond about 10x10 maps (the
# per-image column chunk still fits in L2 there); the backward gains up to 16x16.  A budget of 2M
# elements per thread measured faster than 0.5M and 8M (8M leaves L2 and L3 far behind).
cdef enum:
    BATCH_MAX_P_FORWARD = 100
    BATCH_MAX_P_BACKWARD = 256
    BATCH_BUDGET = 2097152


def use_batched(Py_ssize_t N, Py_ssize_t P, bint backward=False, path="auto"):
    """Whether conv2d builds its columns over blocks of images (N*Ho*Wo columns): with ``path``
    "auto", more than one image and output maps of at most ``BATCH_MAX_P_FORWARD`` (forward) or
    ``BATCH_MAX_P_BACKWARD`` (backward) pixels; always with "batched"; never otherwise."""
    if path == "batched":
        return True
    return path == "auto" and N > 1 and P <= (BATCH_MAX_P_BACKWARD if backward
                                              else BATCH_MAX_P_FORWARD)


cdef Py_ssize_t _batch_budget = BATCH_BUDGET


def _set_batch_budget(Py_ssize_t elements):
    """Column elements per thread of the batched path (tests use tiny budgets: many blocks)."""
    global _batch_budget
    _batch_budget = elements


cdef Py_ssize_t images_per_block(Py_ssize_t N, Py_ssize_t R, Py_ssize_t P,
                                 Py_ssize_t parts) noexcept nogil:
    # Images per block of the batched path: a column buffer of R x nb*P within the budget (or one
    # image), and blocks balanced over the threads (each thread gets the same number of blocks).
    cdef Py_ssize_t fit = _batch_budget // (R * P), per_thread = (N + parts - 1) // parts, blocks
    if fit < 1:
        fit = 1
    blocks = (per_thread + fit - 1) // fit
    return (per_thread + blocks - 1) // blocks


cdef void batched_forward_block(const floating* x, const floating* wgt, const floating* b,
                                bint relu, Py_ssize_t n0, Py_ssize_t nb, Py_ssize_t C,
                                Py_ssize_t H, Py_ssize_t W, Py_ssize_t K, Py_ssize_t kh,
                                Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                                Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t Ho,
                                Py_ssize_t Wo, floating* col, floating* tmp,
                                floating* y) noexcept nogil:
    # Images n0..n0+nb, single-threaded: col (R, nb*P) = columns of the nb images side by side,
    # tmp (K, nb*P) = W (K, R) @ col, then y[n0+t, k, :] = act(tmp[k, t*P:(t+1)*P] + b[k]).
    cdef Py_ssize_t R = C * kh * kw, P = Ho * Wo, L = nb * P, t, k
    for t in range(nb):
        im2col_rows(x + (n0 + t) * C * H * W, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo, 0, Ho,
                    L, col + t * P)
    gemm_rm(False, False, <int> K, <int> L, <int> R, 1, wgt, <int> R, col, <int> L, 0, tmp,
            <int> L)
    for t in range(nb):
        for k in range(K):
            epilogue_copy(tmp + k * L + t * P, y + ((n0 + t) * K + k) * P, P,
                          b[k] if b != NULL else 0, b != NULL, relu)


cdef void batched_backward_block(const floating* dy, const floating* x, const floating* wgt,
                                 Py_ssize_t n0, Py_ssize_t nb, Py_ssize_t C, Py_ssize_t H,
                                 Py_ssize_t W, Py_ssize_t K, Py_ssize_t kh, Py_ssize_t kw,
                                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                                 Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t Ho, Py_ssize_t Wo,
                                 floating* col, floating* dyb, floating* dwt,
                                 floating* dx) noexcept nogil:
    # Images n0..n0+nb, single-threaded.  dyb (K, nb*P): dy of the nb images side by side;
    # dwt (K, R) += dyb @ col^T (this thread's partial dweight, or NULL); dx (N, C, H, W) zeroed,
    # images n0..n0+nb written only here: dcol (R, nb*P) = W^T @ dyb, gathered by col2im (or NULL).
    cdef Py_ssize_t R = C * kh * kw, P = Ho * Wo, L = nb * P, t, k
    for t in range(nb):
        for k in range(K):
            memcpy(dyb + k * L + t * P, dy + ((n0 + t) * K + k) * P, P * sizeof(floating))
    if dwt != NULL:
        for t in range(nb):
            im2col_rows(x + (n0 + t) * C * H * W, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo, 0,
                        Ho, L, col + t * P)
        gemm_rm(False, True, <int> K, <int> R, <int> L, 1, dyb, <int> L, col, <int> L, 1, dwt,
                <int> R)
    if dx != NULL:  # the column buffer is free again: it holds dcol
        gemm_rm(True, False, <int> R, <int> L, <int> K, 1, wgt, <int> R, dyb, <int> L, 0, col,
                <int> L)
        for t in range(nb):
            col2im_rows(col + t * P, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo, 0, Ho, L,
                        dx + (n0 + t) * C * H * W)


def use_shifted(Py_ssize_t C, Py_ssize_t K, kernel, stride, padding, dilation, Py_ssize_t Wo,
                path="auto"):
    """Whether conv2d takes the stride-1 shifted-GEMM path (no column buffer) for this layer:
    the rule below with ``path`` "auto"; for any other path, whether it is "shifted" (and the
    layer has stride 1 and a kernel other than 1x1).

    The per-tap GEMM has inner dimension C, so it pays when C is large enough for BLAS to run near
    its peak (C >= 16, any K: toy15's 16- and 32-channel layers run 1.2-2.3x faster than with
    im2col, K = 2 included); im2col + one GEMM keeps the reduction C*kh*kw whole and wins for
    few channels (3-channel first layers: 1.1-2.6x).  It
    also computes the dropped columns of the padded width Wp = Wo + dw*(kw-1), so it is used only
    where they cost at most 25% (e.g. not for pixel65's 5x5/d8 head on a 53x53 map: 2.5x waste).
    """
    if stride[0] != 1 or stride[1] != 1 or (kernel[0] == 1 and kernel[1] == 1):
        return False
    if path != "auto":
        return path == "shifted"
    cdef Py_ssize_t Wp = Wo + dilation[1] * (kernel[1] - 1)
    return C >= 16 and 4 * Wp <= 5 * Wo


# ----------------------------------------------------------------------------------------------
# conv2d forward and backward


@cython.boundscheck(False)
def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight, bias,
                   stride, padding, dilation, out=None, activation=None, path="auto"):
    """y = act(conv2d(x, weight) + bias).  x: (N, C, H, W), weight: (K, C, kh, kw), bias: (K,) or
    None; ``activation``: None or ``"relu"`` (applied with the bias where y is written); ``path``:
    "auto" (the rule below) or the strategy to force (see ``check_path``): a 1x1 stride-1
    unpadded layer keeps its one-GEMM path unless "batched", and "shifted" applies to stride-1
    layers only (the others take im2col).

    Returns y: (N, K, Ho, Wo).  Paths: small maps (Ho*Wo <= BATCH_MAX_P_FORWARD, N > 1) build
    columns over blocks of images (at most max(2M, C*kh*kw*Ho*Wo) column elements per thread,
    plus a K x (images*Ho*Wo) output block); 1x1/stride 1/no padding is one GEMM per image;
    stride 1 with C >= 16 uses one GEMM per tap over a shifted view (no column buffer); everything
    else uses im2col on chunks of output rows (column buffer at most max(4M, C*kh*kw*Wo) elements)
    + GEMM.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = weight.shape[0], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t Ho = out_size(H, kh, sh, ph, dh)
    cdef Py_ssize_t Wo = out_size(W, kw, sw, pw, dw)
    cdef Py_ssize_t R = C * kh * kw, P = Ho * Wo, n, row0, nr, chunk, k, nb
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw, acc_rows, nblocks, blk, tid
    cdef Py_ssize_t parts = _gemm_parts
    cdef floating[:, :, ::1] col3, tmp3
    cdef floating[:, :, :, ::1] acc4
    if activation not in (None, "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    check_path(path)
    cdef bint relu = activation == "relu"
    dtype = np.asarray(x).dtype
    y_arr = np.empty((N, K, Ho, Wo), dtype=dtype) if out is None else out
    cdef floating[:, :, :, ::1] y = y_arr
    cdef floating[:, :, ::1] xpad
    cdef const floating[:, :, :, ::1] wt
    cdef const floating[::1] bv
    cdef const floating* b = NULL
    cdef const floating* xp
    if bias is not None:
        bv = bias
        b = &bv[0]
    if use_batched(N, P, False, path):
        nb = images_per_block(N, R, P, parts)
        nblocks = (N + nb - 1) // nb
        col3 = np.empty((parts, R, nb * P), dtype=dtype)
        tmp3 = np.empty((parts, K, nb * P), dtype=dtype)
        with nogil:
            for blk in prange(nblocks, schedule="dynamic", num_threads=parts):
                tid = threadid()
                batched_forward_block(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], b, relu, blk * nb,
                                      min(nb, N - blk * nb), C, H, W, K, kh, kw, sh, sw, ph, pw,
                                      dh, dw, Ho, Wo, &col3[tid, 0, 0], &tmp3[tid, 0, 0],
                                      &y[0, 0, 0, 0])
    elif kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0:
        with nogil:
            for n in range(N):
                pgemm_rm(False, False, <int> K, <int> P, <int> C, 1, &weight[0, 0, 0, 0], <int> C,
                        &x[n, 0, 0, 0], <int> P, 0, &y[n, 0, 0, 0], <int> P)
            if b != NULL or relu:
                for k in prange(N * K, schedule="static"):
                    epilogue_rows(&y[0, 0, 0, 0] + k * P, 1, P, 0, b + k % K if b != NULL else NULL,
                                  relu)
    elif use_shifted(C, K, (kh, kw), (sh, sw), (ph, pw), (dh, dw), Wo, path):
        wt = np.ascontiguousarray(np.asarray(weight).transpose(2, 3, 0, 1))
        # row blocks: at most ACC_BUDGET accumulator elements, at least one block per thread
        acc_rows = min(acc_rows_for(K, Wp, Ho), (Ho + parts - 1) // parts)
        nblocks = (Ho + acc_rows - 1) // acc_rows
        acc4 = np.empty((parts, K, acc_rows, Wp), dtype=dtype)
        if ph or pw:
            xpad = np.zeros((C, Hp, Wp), dtype=dtype)
        with nogil:
            for n in range(N):
                if ph or pw:
                    pad_image(&x[n, 0, 0, 0], C, H, W, ph, pw, &xpad[0, 0, 0])
                    xp = &xpad[0, 0, 0]
                else:
                    xp = &x[n, 0, 0, 0]
                # one parallel region per image: each thread computes whole row blocks
                for blk in prange(nblocks, schedule="dynamic", num_threads=parts):
                    shifted_rows(xp, &wt[0, 0, 0, 0], C, Hp, Wp, K, kh, kw, dh, dw, Ho, Wo,
                                 blk * acc_rows, min(acc_rows, Ho - blk * acc_rows),
                                 &acc4[threadid(), 0, 0, 0], &y[n, 0, 0, 0], b, relu)
    else:
        # row blocks of at most COL_BUDGET column elements, at least one block per thread; each
        # thread owns a column buffer and runs im2col + a single-threaded GEMM per block
        chunk = min(rows_per_chunk(R, Wo, Ho), (Ho + parts - 1) // parts)
        nblocks = (Ho + chunk - 1) // chunk
        col3 = np.empty((parts, R, chunk * Wo), dtype=dtype)
        with nogil:
            for blk in prange(N * nblocks, schedule="dynamic", num_threads=parts):
                n = blk // nblocks
                row0 = (blk % nblocks) * chunk
                nr = min(chunk, Ho - row0)
                tid = threadid()
                im2col_rows(&x[n, 0, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo,
                            row0, nr, nr * Wo, &col3[tid, 0, 0])
                # y[n][:, rows] (K, nr*Wo) = W (K, R) @ col (R, nr*Wo), then the epilogue on
                # those rows while they are in cache
                gemm_rm(False, False, <int> K, <int> (nr * Wo), <int> R, 1,
                        &weight[0, 0, 0, 0], <int> R, &col3[tid, 0, 0], <int> (nr * Wo), 0,
                        &y[n, 0, row0, 0], <int> P)
                epilogue_rows(&y[n, 0, row0, 0], K, nr * Wo, P, b, relu)
    return y_arr


def conv2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] weight, stride, padding, dilation,
                    bint need_dx=True, bint need_dweight=True, bint need_dbias=True,
                    path="auto"):
    """Gradients of conv2d.  dy: (N, K, Ho, Wo) -> (dx (N,C,H,W), dweight (K,C,kh,kw), dbias (K,)).

    Entries not asked for are None.  Same paths as ``conv2d_forward`` (``path`` likewise).  Small
    maps: each thread works on whole blocks of images (columns over the block, its own partial
    dweight; scratch ``threads * (C*kh*kw + K) * images*Ho*Wo``).  Otherwise each thread works on
    whole blocks of output rows of one image and keeps its own partial dweight and dx of that image
    (summed afterwards), so the scratch memory is about ``threads * (column buffer + C*H*W)``.
    Blocks go to threads statically, so results are repeatable run to run (same thread count).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = weight.shape[0], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t Ho = dy.shape[2], Wo = dy.shape[3]
    cdef Py_ssize_t R = C * kh * kw, P = Ho * Wo, n, row0, nr, chunk, k, blk, nblocks, tid
    cdef Py_ssize_t Hp = H + 2 * ph, Wp = W + 2 * pw, acc_rows, plane, nb
    cdef Py_ssize_t parts = _gemm_parts
    check_path(path)
    dtype = np.asarray(x).dtype
    dx_arr = np.zeros((N, C, H, W), dtype=dtype) if need_dx else None
    dw_arr = np.zeros((K, C, kh, kw), dtype=dtype) if need_dweight else None
    db_arr = np.zeros((K,), dtype=dtype) if need_dbias else None
    cdef floating[:, :, :, ::1] dx, dwv
    cdef const floating[:, :, :, ::1] wt
    cdef floating[:, :, :, :, ::1] dwt5
    cdef floating[::1] db
    cdef floating[:, :, ::1] col3, dcol3, dw3, xpad, dyb3
    cdef floating[:, :, :, ::1] dx4, dyw4
    cdef const floating* xp
    cdef double sd
    if need_dx:
        dx = dx_arr
    if need_dweight:
        dwv = dw_arr
    if need_dbias:
        db = db_arr
        with nogil:
            for k in prange(K, schedule="static"):
                sd = 0
                for n in range(N):
                    sd = sd + plane_sum(&dy[n, k, 0, 0], P)
                db[k] = <floating> sd
    if not (need_dx or need_dweight):
        return dx_arr, dw_arr, db_arr
    if use_batched(N, P, True, path):
        # blocks of images, statically assigned (repeatable partial sums): each thread owns the dx
        # of its images and a partial dweight (summed afterwards)
        nb = images_per_block(N, R, P, parts)
        nblocks = (N + nb - 1) // nb
        col3 = np.empty((parts, R, nb * P), dtype=dtype)
        dyb3 = np.empty((parts, K, nb * P), dtype=dtype)
        dw3 = np.zeros((parts, K, R), dtype=dtype) if need_dweight else None
        with nogil:
            for blk in prange(nblocks, schedule="static", num_threads=parts):
                tid = threadid()
                batched_backward_block(
                    &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &weight[0, 0, 0, 0], blk * nb,
                    min(nb, N - blk * nb), C, H, W, K, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo,
                    &col3[tid, 0, 0], &dyb3[tid, 0, 0],
                    &dw3[tid, 0, 0] if need_dweight else NULL,
                    &dx[0, 0, 0, 0] if need_dx else NULL)
            if need_dweight:
                sum_parts(&dw3[0, 0, 0], parts, K * R)
        if need_dweight:
            dw_arr[...] = np.asarray(dw3[0]).reshape(K, C, kh, kw)
    elif kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0:
        with nogil:
            for n in range(N):
                if need_dweight:  # dW (K, C) += dy[n] (K, P) @ x[n]^T (P, C)
                    pgemm_rm(False, True, <int> K, <int> C, <int> P, 1, &dy[n, 0, 0, 0], <int> P,
                             &x[n, 0, 0, 0], <int> P, 1, &dwv[0, 0, 0, 0], <int> C)
                if need_dx:  # dx[n] (C, P) = W^T (C, K) @ dy[n] (K, P)
                    pgemm_rm(True, False, <int> C, <int> P, <int> K, 1, &weight[0, 0, 0, 0],
                             <int> C, &dy[n, 0, 0, 0], <int> P, 0, &dx[n, 0, 0, 0], <int> P)
    elif use_shifted(C, K, (kh, kw), (sh, sw), (ph, pw), (dh, dw), Wo, path):
        wt = np.ascontiguousarray(np.asarray(weight).transpose(2, 3, 0, 1))
        acc_rows = min(acc_rows_for(K, Wp, Ho), (Ho + parts - 1) // parts)
        nblocks = (Ho + acc_rows - 1) // acc_rows
        dyw4 = np.empty((parts, K, acc_rows, Wp), dtype=dtype)
        dwt5 = np.zeros((parts, kh, kw, K, C), dtype=dtype) if need_dweight else None
        dx4 = np.empty((parts, C, Hp, Wp), dtype=dtype) if need_dx else None
        if ph or pw:
            xpad = np.zeros((C, Hp, Wp), dtype=dtype)
        plane = C * Hp * Wp
        with nogil:
            for n in range(N):
                if ph or pw:
                    pad_image(&x[n, 0, 0, 0], C, H, W, ph, pw, &xpad[0, 0, 0])
                    xp = &xpad[0, 0, 0]
                else:
                    xp = &x[n, 0, 0, 0]
                if need_dx:
                    memset(&dx4[0, 0, 0, 0], 0, parts * plane * sizeof(floating))
                for blk in prange(nblocks, schedule="static", num_threads=parts):
                    tid = threadid()
                    shifted_backward_rows(
                        xp, &wt[0, 0, 0, 0], &dy[n, 0, 0, 0], C, Hp, Wp, K, kh, kw, dh, dw, Ho,
                        Wo, blk * acc_rows, min(acc_rows, Ho - blk * acc_rows),
                        &dyw4[tid, 0, 0, 0],
                        &dwt5[tid, 0, 0, 0, 0] if need_dweight else NULL,
                        &dx4[tid, 0, 0, 0] if need_dx else NULL)
                if need_dx:
                    sum_parts(&dx4[0, 0, 0, 0], parts, plane)
                    crop_image(&dx4[0, 0, 0, 0], C, H, W, ph, pw, &dx[n, 0, 0, 0])
            if need_dweight:
                sum_parts(&dwt5[0, 0, 0, 0, 0], parts, kh * kw * K * C)
        if need_dweight:
            dw_arr[...] = np.asarray(dwt5[0]).transpose(2, 3, 0, 1)
    else:
        chunk = min(rows_per_chunk(R, Wo, Ho), (Ho + parts - 1) // parts)
        nblocks = (Ho + chunk - 1) // chunk
        col3 = np.empty((parts, R, chunk * Wo), dtype=dtype)
        dw3 = np.zeros((parts, K, R), dtype=dtype) if need_dweight else None
        if need_dx:
            dcol3 = np.empty((parts, R, chunk * Wo), dtype=dtype)
            dx4 = np.empty((parts, C, H, W), dtype=dtype)
        plane = C * H * W
        with nogil:
            for n in range(N):
                if need_dx:
                    memset(&dx4[0, 0, 0, 0], 0, parts * plane * sizeof(floating))
                for blk in prange(nblocks, schedule="static", num_threads=parts):
                    tid = threadid()
                    row0 = blk * chunk
                    nr = min(chunk, Ho - row0)
                    if need_dweight:
                        im2col_rows(&x[n, 0, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Wo,
                                    row0, nr, nr * Wo, &col3[tid, 0, 0])
                        # dW (K, R) += dy rows (K, nr*Wo) @ col^T (nr*Wo, R)
                        gemm_rm(False, True, <int> K, <int> R, <int> (nr * Wo), 1,
                                &dy[n, 0, row0, 0], <int> P, &col3[tid, 0, 0], <int> (nr * Wo),
                                1, &dw3[tid, 0, 0], <int> R)
                    if need_dx:
                        # dcol (R, nr*Wo) = W^T (R, K) @ dy rows (K, nr*Wo), then gathered
                        gemm_rm(True, False, <int> R, <int> (nr * Wo), <int> K, 1,
                                &weight[0, 0, 0, 0], <int> R, &dy[n, 0, row0, 0], <int> P, 0,
                                &dcol3[tid, 0, 0], <int> (nr * Wo))
                        col2im_rows(&dcol3[tid, 0, 0], C, H, W, kh, kw, sh, sw, ph, pw, dh, dw,
                                    Wo, row0, nr, nr * Wo, &dx4[tid, 0, 0, 0])
                if need_dx:
                    sum_parts(&dx4[0, 0, 0, 0], parts, plane)
                    memcpy(&dx[n, 0, 0, 0], &dx4[0, 0, 0, 0], plane * sizeof(floating))
            if need_dweight:
                sum_parts(&dw3[0, 0, 0], parts, K * R)
        if need_dweight:
            dw_arr[...] = np.asarray(dw3[0]).reshape(K, C, kh, kw)
    return dx_arr, dw_arr, db_arr
