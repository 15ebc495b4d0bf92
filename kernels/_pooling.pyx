# cython: language_level=3
"""CPU pooling: max (with and without indices), average, channel max (maxout), global average.

Inputs are trusted (validated in ``cnncore.functional.pooling``): C-contiguous float32/float64 NCHW
arrays, int64 indices in range (the max pooling backward checks its own as it scatters them),
positive sizes, output sizes >= 1, padding <= kernel_size // 2, every window of a max pool (and of
an average pool with ``count_include_pad=False``) holds at least one input element, and
``(H + 2*ph) * (W + 2*pw) < 2**31`` (offsets inside a window fit an int).

Layout of the hot loops (pooling is bandwidth-bound): the output column is innermost.  For one
output row and each window tap (i, j), a whole run of outputs is compared against the shifted input
row, updating value and tap with a branch-free select, so the compiler vectorizes it.  The tap is
tracked as a 32-bit offset inside the window (lane width of float32) and turned into the 64-bit
flat index once per output.  Work is split over the N*C*Ho output rows (never the batch alone).
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memset

from ._geometry cimport out_size
from ._sums cimport plane_sum

cdef enum:
    # Outputs of one row processed at a time (per-call stack buffers of CHUNK elements, <= 8 KB).
    CHUNK = 1024


cdef struct Geom:
    Py_ssize_t H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw
    # tables filled by set_tables (arrays kept alive by the caller):
    const int64_t* jlo      # (kw,): column tap j is inside the input for outputs [jlo[j], jhi[j])
    const int64_t* jhi
    const int32_t* fc       # (Wo,): offset j0*dw of the first column tap inside the input
    const int64_t* colpos   # (Wo,): window origin column ow*sw - pw


cdef Geom make_geom(Py_ssize_t H, Py_ssize_t W, kernel, stride, padding, dilation):
    cdef Geom g
    g.H = H
    g.W = W
    g.kh, g.kw = kernel
    g.sh, g.sw = stride
    g.ph, g.pw = padding
    g.dh, g.dw = dilation
    g.Ho = out_size(H, g.kh, g.sh, g.ph, g.dh)
    g.Wo = out_size(W, g.kw, g.sw, g.pw, g.dw)
    return g


cdef inline Py_ssize_t chunk(Py_ssize_t n) noexcept nogil:
    # Work items per dynamic-schedule chunk: about 1/64 of the loop.  Dynamic rather than static
    # scheduling keeps the threads busy when one of them is descheduled (shared machines).
    return n // 64 if n >= 128 else 1


include "_ranges.pxi"


cdef inline Py_ssize_t first_tap(Py_ssize_t start, Py_ssize_t d) noexcept nogil:
    # index of the first tap start + t*d that is >= 0
    return 0 if start >= 0 else ceil_div(-start, d)


cdef inline Py_ssize_t valid_taps(Py_ssize_t start, Py_ssize_t k, Py_ssize_t d,
                                  Py_ssize_t size) noexcept nogil:
    # number of taps start + t*d (t < k) inside [0, size)
    cdef Py_ssize_t t0 = first_tap(start, d), t1
    if start + t0 * d >= size:
        return 0
    t1 = (size - 1 - start) // d + 1
    if t1 > k:
        t1 = k
    return t1 - t0 if t1 > t0 else 0


cdef object set_tables(Geom* g):
    """Fill the tables of ``g``; returns the arrays that hold them (keep them alive)."""
    cdef int64_t[::1] jlo = np.empty(g.kw, dtype=np.int64)
    cdef int64_t[::1] jhi = np.empty(g.kw, dtype=np.int64)
    cdef Py_ssize_t j
    for j in range(g.kw):
        jlo[j] = out_lo(j * g.dw - g.pw, g.sw)
        jhi[j] = out_hi(j * g.dw - g.pw, g.W, g.sw, g.Wo)
    colpos_arr = np.arange(g.Wo, dtype=np.int64) * g.sw - g.pw
    j0 = np.where(colpos_arr >= 0, 0, (-colpos_arr + g.dw - 1) // g.dw)
    cdef int32_t[::1] fc = np.ascontiguousarray(j0 * g.dw, dtype=np.int32)
    cdef int64_t[::1] colpos = colpos_arr
    g.jlo = &jlo[0]
    g.jhi = &jhi[0]
    g.fc = &fc[0]
    g.colpos = &colpos[0]
    return (jlo, jhi, fc, colpos)


cdef object _valid_col_counts(Geom g, dtype):
    """(Wo,) float: number of taps of each output column's window inside [0, W)."""
    out = np.empty(g.Wo, dtype=dtype)
    cdef Py_ssize_t o
    for o in range(g.Wo):
        out[o] = valid_taps(o * g.sw - g.pw, g.kw, g.dw, g.W)
    return out


# ----------------------------------------------------------------------------------------------
# max_pool2d forward
#
# The plain algorithm, which everything down to max_pool2d_values must equal bit for bit (values
# and indices): for each output (oh, ow), visit the window's taps (oh*sh - ph + i*dh,
# ow*sw - pw + j*dw) that lie inside the input, rows i then columns j; start at -inf with the first
# valid tap's index, and take a tap when it is greater than the running max or NaN.  The float64
# reference is ``max_pool_ref`` in tests/kernels/test_pooling.py (also checked against PyTorch).
# The specialised loops below only reorder the work (output column innermost, taps in pairs).
#
# The taps of a window are visited in window order, two at a time (fewer loads and stores of the
# running max).  Tap (i0, 0), the first one of every output whose window starts inside the input,
# initialises those outputs (a copy, fused with the next tap); outputs on the left border start at
# -inf on their first valid tap (torch's rule: an all -inf window picks its first tap).
# An element replaces the running max when it is greater or NaN (torch's rule: the last NaN wins).

cdef inline void copy_tap(const floating* src, Py_ssize_t sw, Py_ssize_t lo, Py_ssize_t hi,
                          floating* y, int32_t* off, int32_t t) noexcept nogil:
    cdef Py_ssize_t o
    for o in range(lo, hi):
        y[o] = src[o * sw]
    if off != NULL:
        for o in range(lo, hi):
            off[o] = t


cdef inline void max_tap_idx(const floating* src, Py_ssize_t sw, Py_ssize_t lo, Py_ssize_t hi,
                             floating* y, int32_t* off, int32_t t) noexcept nogil:
    # y[o], off[o] <- src[o*sw], t where src[o*sw] > y[o] or is NaN
    cdef Py_ssize_t o
    cdef floating v, cur
    cdef bint take
    for o in range(lo, hi):
        v = src[o * sw]
        cur = y[o]
        take = (v > cur) | (v != v)
        y[o] = v if take else cur
        off[o] = t if take else off[o]


cdef inline void max_tap(const floating* src, Py_ssize_t sw, Py_ssize_t lo, Py_ssize_t hi,
                         floating* y) noexcept nogil:
    cdef Py_ssize_t o
    cdef floating v, cur
    for o in range(lo, hi):
        v = src[o * sw]
        cur = y[o]
        y[o] = v if ((v > cur) | (v != v)) else cur


cdef inline void max_pair_idx(const floating* a, const floating* b, Py_ssize_t sw, Py_ssize_t lo,
                              Py_ssize_t hi, floating* y, int32_t* off, int32_t ta,
                              int32_t tb) noexcept nogil:
    # tap a then tap b on outputs [lo, hi), the running max kept in registers in between
    cdef Py_ssize_t o
    cdef floating v, cur
    cdef int32_t co
    cdef bint take
    for o in range(lo, hi):
        cur = y[o]
        co = off[o]
        v = a[o * sw]
        take = (v > cur) | (v != v)
        cur = v if take else cur
        co = ta if take else co
        v = b[o * sw]
        take = (v > cur) | (v != v)
        y[o] = v if take else cur
        off[o] = tb if take else co


cdef inline void max_pair(const floating* a, const floating* b, Py_ssize_t sw, Py_ssize_t lo,
                          Py_ssize_t hi, floating* y) noexcept nogil:
    cdef Py_ssize_t o
    cdef floating v, cur
    for o in range(lo, hi):
        cur = y[o]
        v = a[o * sw]
        cur = v if ((v > cur) | (v != v)) else cur
        v = b[o * sw]
        y[o] = v if ((v > cur) | (v != v)) else cur


cdef inline void init_pair_idx(const floating* a, const floating* b, Py_ssize_t sw, Py_ssize_t lo,
                               Py_ssize_t hi, floating* y, int32_t* off, int32_t ta,
                               int32_t tb) noexcept nogil:
    # the first tap a initialises (a copy), then tap b compares
    cdef Py_ssize_t o
    cdef floating v, cur
    cdef bint take
    for o in range(lo, hi):
        cur = a[o * sw]
        v = b[o * sw]
        take = (v > cur) | (v != v)
        y[o] = v if take else cur
        off[o] = tb if take else ta


cdef inline void init_pair(const floating* a, const floating* b, Py_ssize_t sw, Py_ssize_t lo,
                           Py_ssize_t hi, floating* y) noexcept nogil:
    cdef Py_ssize_t o
    cdef floating v, cur
    for o in range(lo, hi):
        cur = a[o * sw]
        v = b[o * sw]
        y[o] = v if ((v > cur) | (v != v)) else cur


cdef void tap_any(const floating* src, Py_ssize_t sw, Py_ssize_t lo, Py_ssize_t hi, floating* y,
                  int32_t* off, int32_t t, bint init) noexcept nogil:
    # one tap on outputs [lo, hi); off == NULL: values only; init: copy instead of compare.
    # Constant strides let the compiler specialise (contiguous / even-odd loads).
    if hi <= lo:
        return
    if init:
        if sw == 1:
            copy_tap(src, 1, lo, hi, y, off, t)
        elif sw == 2:
            copy_tap(src, 2, lo, hi, y, off, t)
        else:
            copy_tap(src, sw, lo, hi, y, off, t)
    elif off != NULL:
        if sw == 1:
            max_tap_idx(src, 1, lo, hi, y, off, t)
        elif sw == 2:
            max_tap_idx(src, 2, lo, hi, y, off, t)
        else:
            max_tap_idx(src, sw, lo, hi, y, off, t)
    else:
        if sw == 1:
            max_tap(src, 1, lo, hi, y)
        elif sw == 2:
            max_tap(src, 2, lo, hi, y)
        else:
            max_tap(src, sw, lo, hi, y)


cdef void pair_any(const floating* a, Py_ssize_t la, Py_ssize_t ha, int32_t ta, bint a_init,
                   const floating* b, Py_ssize_t lb, Py_ssize_t hb, int32_t tb,
                   Py_ssize_t sw, floating* y, int32_t* off) noexcept nogil:
    # tap a then tap b, a on outputs [la, ha), b on [lb, hb): fused where both are valid;
    # a_init: tap a is the first tap of its outputs and initialises them (a copy)
    cdef Py_ssize_t lo = la if la > lb else lb, hi = ha if ha < hb else hb
    if hi <= lo:  # disjoint: no output sees both, order is irrelevant
        tap_any(a, sw, la, ha, y, off, ta, a_init)
        tap_any(b, sw, lb, hb, y, off, tb, False)
        return
    tap_any(a, sw, la, lo, y, off, ta, a_init)
    tap_any(a, sw, hi, ha, y, off, ta, a_init)
    tap_any(b, sw, lb, lo, y, off, tb, False)
    tap_any(b, sw, hi, hb, y, off, tb, False)
    if off != NULL:
        if a_init:
            if sw == 1:
                init_pair_idx(a, b, 1, lo, hi, y, off, ta, tb)
            elif sw == 2:
                init_pair_idx(a, b, 2, lo, hi, y, off, ta, tb)
            else:
                init_pair_idx(a, b, sw, lo, hi, y, off, ta, tb)
        elif sw == 1:
            max_pair_idx(a, b, 1, lo, hi, y, off, ta, tb)
        elif sw == 2:
            max_pair_idx(a, b, 2, lo, hi, y, off, ta, tb)
        else:
            max_pair_idx(a, b, sw, lo, hi, y, off, ta, tb)
    else:
        if a_init:
            if sw == 1:
                init_pair(a, b, 1, lo, hi, y)
            elif sw == 2:
                init_pair(a, b, 2, lo, hi, y)
            else:
                init_pair(a, b, sw, lo, hi, y)
        elif sw == 1:
            max_pair(a, b, 1, lo, hi, y)
        elif sw == 2:
            max_pair(a, b, 2, lo, hi, y)
        else:
            max_pair(a, b, sw, lo, hi, y)


cdef inline Py_ssize_t clip(Py_ssize_t v, Py_ssize_t n) noexcept nogil:
    return 0 if v < 0 else (n if v > n else v)


cdef void max_row(const floating* xp, Geom g, Py_ssize_t oh, floating* yrow,
                  int64_t* irow) noexcept nogil:
    # One output row oh of one plane xp (H, W): yrow (Wo,), irow (Wo,) or NULL (values only).
    # Window of output (oh, ow): rows oh*sh - ph + i*dh, columns ow*sw - pw + j*dw; a tap is kept
    # as its offset t = i*dh*W + j*dw from the window origin (oh*sh - ph, ow*sw - pw).
    cdef int32_t offbuf[CHUNK]
    cdef int32_t* off = offbuf if irow != NULL else NULL
    cdef Py_ssize_t h0 = oh * g.sh - g.ph, i0 = first_tap(h0, g.dh)
    cdef Py_ssize_t o0, n, i, j, h, lo, hi, o, sw = g.sw, p_lo = 0, p_hi = 0
    cdef int32_t t, p_t = 0
    cdef int64_t base
    cdef bint pending, p_init
    cdef const floating* row
    cdef const floating* p_src = NULL
    cdef floating* y
    o0 = 0
    while o0 < g.Wo:
        n = g.Wo - o0 if g.Wo - o0 < CHUNK else CHUNK
        y = yrow + o0
        # outputs [lo, hi) start with a copy of tap (i0, 0), the others with -inf
        lo = clip(g.jlo[0] - o0, n)
        hi = clip(g.jhi[0] - o0, n)
        if hi < lo:
            hi = lo
        t = <int32_t> (i0 * g.dh * g.W)
        for o in range(lo):
            y[o] = -INFINITY
        for o in range(hi, n):
            y[o] = -INFINITY
        if off != NULL:
            for o in range(lo):
                off[o] = t + g.fc[o0 + o]
            for o in range(hi, n):
                off[o] = t + g.fc[o0 + o]
        # the pending tap: (i0, 0) first, which initialises [lo, hi) when fused with the next one
        p_src = xp + (h0 + i0 * g.dh) * g.W + o0 * sw - g.pw
        p_lo = lo
        p_hi = hi
        p_t = t
        p_init = True
        pending = True
        for i in range(i0, g.kh):
            h = h0 + i * g.dh
            if h >= g.H:
                break
            row = xp + h * g.W + o0 * sw
            for j in range(1 if i == i0 else 0, g.kw):
                lo = clip(g.jlo[j] - o0, n)
                hi = clip(g.jhi[j] - o0, n)
                if lo >= hi:
                    continue
                t = <int32_t> (i * g.dh * g.W + j * g.dw)
                if pending:
                    pair_any(p_src, p_lo, p_hi, p_t, p_init, row + j * g.dw - g.pw, lo, hi, t, sw,
                             y, off)
                    pending = False
                    p_init = False
                else:
                    p_src = row + j * g.dw - g.pw
                    p_lo = lo
                    p_hi = hi
                    p_t = t
                    pending = True
        if pending:
            tap_any(p_src, sw, p_lo, p_hi, y, off, p_t, p_init)
        if irow != NULL:
            # flat index = window origin row * W + window origin column + offset in the window
            base = <int64_t> (h0 * g.W)
            for o in range(n):
                irow[o0 + o] = base + g.colpos[o0 + o] + off[o]
        o0 += n


cdef void max_rows(const floating* x, Geom g, Py_ssize_t planes, floating* y,
                   int64_t* idx) noexcept nogil:
    cdef Py_ssize_t r, HW = g.H * g.W
    for r in prange(planes * g.Ho, schedule="dynamic", chunksize=chunk(planes * g.Ho)):
        max_row(x + (r // g.Ho) * HW, g, r % g.Ho, y + r * g.Wo,
                idx + r * g.Wo if idx != NULL else NULL)


def max_pool2d(const floating[:, :, :, ::1] x, kernel, stride, padding, dilation):
    """Max pooling with indices.  x: (N, C, H, W) -> (y (N, C, Ho, Wo), indices int64 same shape).

    indices: flat h*W + w of the chosen element in its plane, torch's rule (ties: first in window
    order; a NaN always replaces, so the last NaN wins; padding is never chosen).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Geom g = make_geom(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    dtype = np.float32 if floating is float else np.float64
    y_arr = np.empty((N, C, g.Ho, g.Wo), dtype=dtype)
    i_arr = np.empty((N, C, g.Ho, g.Wo), dtype=np.int64)
    cdef floating[:, :, :, ::1] y = y_arr
    cdef int64_t[:, :, :, ::1] idx = i_arr
    _tables = set_tables(&g)  # owns the arrays that g points into
    with nogil:
        max_rows(&x[0, 0, 0, 0], g, N * C, &y[0, 0, 0, 0], &idx[0, 0, 0, 0])
    return y_arr, i_arr


def max_pool2d_values(const floating[:, :, :, ::1] x, kernel, stride, padding, dilation):
    """Max pooling without indices (inference).  x: (N, C, H, W) -> y (N, C, Ho, Wo)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Geom g = make_geom(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    dtype = np.float32 if floating is float else np.float64
    y_arr = np.empty((N, C, g.Ho, g.Wo), dtype=dtype)
    cdef floating[:, :, :, ::1] y = y_arr
    _tables = set_tables(&g)  # owns the arrays that g points into
    with nogil:
        max_rows(&x[0, 0, 0, 0], g, N * C, &y[0, 0, 0, 0], NULL)
    return y_arr


# ----------------------------------------------------------------------------------------------
# max_pool2d backward: scatter-add through the indices, one thread per plane (race-free)

cdef void scatter_planes(const floating* dy, const int64_t* idx, Py_ssize_t planes, Py_ssize_t M,
                         Py_ssize_t HW, floating* dx, int64_t* bad) noexcept nogil:
    # dx[p] = 0, then dx[p, idx[p, k]] += dy[p, k].  Each plane is zeroed by the thread that
    # scatters into it (in parallel, and the plane is in cache for the scatter).  Each index is
    # checked as it is read: a plane stops at its first index outside [0, HW), bad[p] = k (else
    # -1), so no write leaves the plane and the range check costs no pass of its own over the
    # indices (as a separate pass over their 33 MB it took a third of a (1,64,256,256) k2 s1
    # backward).
    cdef Py_ssize_t p, k
    cdef int64_t i
    cdef floating* d
    cdef const floating* gd
    cdef const int64_t* gi
    for p in prange(planes, schedule="dynamic", chunksize=chunk(planes)):
        d = dx + p * HW
        gd = dy + p * M
        gi = idx + p * M
        memset(d, 0, HW * sizeof(floating))
        bad[p] = -1
        for k in range(M):
            i = gi[k]
            if <uint64_t> i >= <uint64_t> HW:
                bad[p] = k
                break
            d[i] += gd[k]


def max_pool2d_backward_checked(const floating[:, :, :, ::1] dy,
                                const int64_t[:, :, :, ::1] indices, input_shape):
    """(dx, bad): dx (N, C, H, W) from dy and indices (N, C, Ho, Wo), overlapping windows adding
    up; bad None, or (flat position, value) of the first index outside [0, H*W) (dx is then
    unfinished), the indices checked as they are scattered."""
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], M = dy.shape[2] * dy.shape[3]
    cdef Py_ssize_t H = input_shape[2], W = input_shape[3]
    if (indices.shape[0] != N or indices.shape[1] != C or indices.shape[2] != dy.shape[2]
            or indices.shape[3] != dy.shape[3] or input_shape[0] != N or input_shape[1] != C):
        raise ValueError(f"max_pool2d_backward: dy {tuple(dy.shape)[:4]}, indices "
                         f"{tuple(indices.shape)[:4]} and input_shape {tuple(input_shape)} do not "
                         f"match")
    dtype = np.float32 if floating is float else np.float64
    dx_arr = np.empty((N, C, H, W), dtype=dtype)  # every plane is zeroed by scatter_planes
    bad_arr = np.empty(N * C, dtype=np.int64)
    cdef floating[:, :, :, ::1] dx = dx_arr
    cdef int64_t[::1] bad = bad_arr
    if N * C * M == 0:
        dx_arr.fill(0)
        return dx_arr, None
    with nogil:
        scatter_planes(&dy[0, 0, 0, 0], &indices[0, 0, 0, 0], N * C, M, H * W, &dx[0, 0, 0, 0],
                       &bad[0])
    planes = np.flatnonzero(bad_arr >= 0)
    if planes.size == 0:
        return dx_arr, None
    cdef Py_ssize_t at = planes[0] * M + bad_arr[planes[0]]
    return dx_arr, (int(at), int(np.asarray(indices).reshape(-1)[at]))


def max_pool2d_backward(dy, indices, input_shape):
    """dx (N, C, H, W) from dy and indices (N, C, Ho, Wo): overlapping windows add up.  An index
    outside [0, H*W) raises ValueError (``max_pool2d_backward_checked`` says which)."""
    dx, bad = max_pool2d_backward_checked(dy, indices, input_shape)
    if bad is not None:
        raise ValueError(f"max_pool2d_backward: index {bad[1]} at flat position {bad[0]} lies "
                         f"outside [0, {input_shape[2] * input_shape[3]})")
    return dx


# ----------------------------------------------------------------------------------------------
# avg_pool2d forward and backward

cdef inline void add_taps(const floating* src, Py_ssize_t sw, Py_ssize_t lo, Py_ssize_t hi,
                          floating* y) noexcept nogil:
    cdef Py_ssize_t o
    for o in range(lo, hi):
        y[o] += src[o * sw]


cdef void avg_row(const floating* xp, Geom g, Py_ssize_t oh, bint include_pad,
                  const floating* ncols, floating* y) noexcept nogil:
    # y[ow] = (sum of the valid taps of window (oh, ow)) / divisor, taps summed in window order;
    # divisor kh*kw (include_pad) or valid rows * valid columns (ncols[ow]).
    cdef Py_ssize_t h0 = oh * g.sh - g.ph, i, j, h, lo, hi, o, sw = g.sw
    cdef floating dr
    cdef const floating* src
    for o in range(g.Wo):
        y[o] = 0
    for i in range(first_tap(h0, g.dh), g.kh):
        h = h0 + i * g.dh
        if h >= g.H:
            break
        for j in range(g.kw):
            lo = g.jlo[j]
            hi = g.jhi[j]
            src = xp + h * g.W + j * g.dw - g.pw
            if sw == 1:
                add_taps(src, 1, lo, hi, y)
            elif sw == 2:
                add_taps(src, 2, lo, hi, y)
            else:
                add_taps(src, sw, lo, hi, y)
    if include_pad:
        dr = <floating> (g.kh * g.kw)
        for o in range(g.Wo):
            y[o] = y[o] / dr
    else:
        dr = <floating> valid_taps(h0, g.kh, g.dh, g.H)
        for o in range(g.Wo):
            y[o] = y[o] / (dr * ncols[o])


def avg_pool2d(const floating[:, :, :, ::1] x, kernel, stride, padding, dilation,
               bint count_include_pad):
    """Average pooling.  x: (N, C, H, W) -> y (N, C, Ho, Wo); padding counts as zeros."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], r, HW
    cdef Geom g = make_geom(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    _tables = set_tables(&g)  # owns the arrays that g points into
    dtype = np.float32 if floating is float else np.float64
    y_arr = np.empty((N, C, g.Ho, g.Wo), dtype=dtype)
    cdef floating[:, :, :, ::1] y = y_arr
    cdef const floating[::1] nc = _valid_col_counts(g, dtype)
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    HW = g.H * g.W
    with nogil:
        for r in prange(N * C * g.Ho, schedule="dynamic", chunksize=chunk(N * C * g.Ho)):
            avg_row(xp + (r // g.Ho) * HW, g, r % g.Ho, count_include_pad, &nc[0],
                    yp + r * g.Wo)
    return y_arr


cdef inline void add_row(const floating* gs, Py_ssize_t sw, Py_ssize_t lo, Py_ssize_t hi,
                         floating* dst) noexcept nogil:
    # dst[o*sw] += gs[o]
    cdef Py_ssize_t o
    for o in range(lo, hi):
        dst[o * sw] += gs[o]


cdef void avg_back_row(const floating* dyp, Geom g, Py_ssize_t h, const floating* dc,
                       bint include_pad, floating* dxrow) noexcept nogil:
    # Gather for input row h of one plane: every (output, tap) that read row h adds its share
    # dy / divisor, taps in window order (i, then j).  The shares of one output row are computed
    # once per chunk of columns (gs) and added for every column tap.
    cdef floating gs[CHUNK]
    cdef Py_ssize_t i, j, t, oh, lo, hi, w, o, o0, n, sw = g.sw
    cdef const floating* grow
    cdef floating* dst
    cdef floating dr
    for w in range(g.W):
        dxrow[w] = 0
    for i in range(g.kh):
        t = h + g.ph - i * g.dh          # = oh * sh for the output row oh that read row h at tap i
        if t < 0:
            break
        if t % g.sh != 0:
            continue
        oh = t // g.sh
        if oh >= g.Ho:
            continue
        if include_pad:
            dr = <floating> g.kh
        else:
            dr = <floating> valid_taps(oh * g.sh - g.ph, g.kh, g.dh, g.H)
        grow = dyp + oh * g.Wo
        o0 = 0
        while o0 < g.Wo:
            n = g.Wo - o0 if g.Wo - o0 < CHUNK else CHUNK
            for o in range(n):
                gs[o] = grow[o0 + o] / (dr * dc[o0 + o])
            for j in range(g.kw):
                lo = clip(g.jlo[j] - o0, n)
                hi = clip(g.jhi[j] - o0, n)
                dst = dxrow + j * g.dw - g.pw + o0 * sw
                if sw == 1:
                    add_row(gs, 1, lo, hi, dst)
                elif sw == 2:
                    add_row(gs, 2, lo, hi, dst)
                else:
                    add_row(gs, sw, lo, hi, dst)
            o0 += n


def avg_pool2d_backward(const floating[:, :, :, ::1] dy, input_shape, kernel, stride, padding,
                        dilation, bint count_include_pad):
    """dx (N, C, H, W) of avg_pool2d from dy (N, C, Ho, Wo); a gather over input rows."""
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], r, H, M
    cdef Geom g = make_geom(input_shape[2], input_shape[3], kernel, stride, padding, dilation)
    _tables = set_tables(&g)  # owns the arrays that g points into
    dtype = np.float32 if floating is float else np.float64
    H = g.H
    M = g.Ho * g.Wo
    dx_arr = np.empty((N, C, g.H, g.W), dtype=dtype)
    cdef floating[:, :, :, ::1] dx = dx_arr
    dc_arr = (np.full(g.Wo, g.kw, dtype=dtype) if count_include_pad
              else _valid_col_counts(g, dtype))
    cdef const floating[::1] dc = dc_arr
    cdef const floating* dyp = &dy[0, 0, 0, 0]
    cdef floating* dxp = &dx[0, 0, 0, 0]
    with nogil:
        for r in prange(N * C * H, schedule="dynamic", chunksize=chunk(N * C * H)):
            avg_back_row(dyp + (r // H) * M, g, r % H, &dc[0], count_include_pad, dxp + r * g.W)
    return dx_arr


# ----------------------------------------------------------------------------------------------
# channel max pooling (maxout over groups of consecutive channels)

cdef void channel_max_plane(const floating* x, Py_ssize_t c0, Py_ssize_t k, Py_ssize_t HW,
                            floating* y, int64_t* idx) noexcept nogil:
    # x: the k planes of group channels c0 .. c0+k-1; y, idx: (HW,).  Same rule as max_pool2d.
    cdef int32_t t[CHUNK]
    cdef Py_ssize_t p0, n, p, c
    cdef const floating* src
    cdef floating* yy
    p0 = 0
    while p0 < HW:
        n = HW - p0 if HW - p0 < CHUNK else CHUNK
        yy = y + p0
        src = x + p0
        for p in range(n):
            yy[p] = src[p]
            t[p] = 0
        for c in range(1, k):
            max_tap_idx(src + c * HW, 1, 0, n, yy, t, <int32_t> c)
        for p in range(n):
            idx[p0 + p] = c0 + t[p]
        p0 += n


def channel_max_pool(const floating[:, :, :, ::1] x, Py_ssize_t pool_size):
    """Maxout.  x: (N, C, H, W) -> (y (N, C//k, H, W), indices int64: absolute input channel)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef Py_ssize_t k = pool_size, G = C // pool_size, q
    dtype = np.float32 if floating is float else np.float64
    y_arr = np.empty((N, G, x.shape[2], x.shape[3]), dtype=dtype)
    i_arr = np.empty((N, G, x.shape[2], x.shape[3]), dtype=np.int64)
    cdef floating[:, :, :, ::1] y = y_arr
    cdef int64_t[:, :, :, ::1] idx = i_arr
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    cdef int64_t* ip = &idx[0, 0, 0, 0]
    with nogil:
        # q = n*G + group; its input block starts at q*k*HW
        for q in prange(N * G, schedule="dynamic", chunksize=chunk(N * G)):
            channel_max_plane(xp + q * k * HW, (q % G) * k, k, HW, yp + q * HW, ip + q * HW)
    return y_arr, i_arr


cdef void channel_max_back_plane(const floating* dy, const int64_t* idx, Py_ssize_t c0,
                                 Py_ssize_t k, Py_ssize_t HW, floating* dx) noexcept nogil:
    # dx[c0 + c, p] = dy[p] if idx[p] == c0 + c else 0: every element written once, no zeroing
    cdef Py_ssize_t c, p
    cdef floating* d
    for c in range(k):
        d = dx + c * HW
        for p in range(HW):
            d[p] = dy[p] if idx[p] == c0 + c else 0


def channel_max_pool_backward(const floating[:, :, :, ::1] dy, const int64_t[:, :, :, ::1] indices,
                              input_shape):
    """dx (N, C, H, W) of channel_max_pool from dy and indices (N, C//k, H, W)."""
    cdef Py_ssize_t N = dy.shape[0], G = dy.shape[1], HW = dy.shape[2] * dy.shape[3]
    cdef Py_ssize_t C = input_shape[1], k = C // G, q
    dtype = np.float32 if floating is float else np.float64
    dx_arr = np.empty((N, C, dy.shape[2], dy.shape[3]), dtype=dtype)
    cdef floating[:, :, :, ::1] dx = dx_arr
    cdef const floating* dyp = &dy[0, 0, 0, 0]
    cdef const int64_t* ip = &indices[0, 0, 0, 0]
    cdef floating* dxp = &dx[0, 0, 0, 0]
    with nogil:
        for q in prange(N * G, schedule="dynamic", chunksize=chunk(N * G)):
            channel_max_back_plane(dyp + q * HW, ip + q * HW, (q % G) * k, k, HW, dxp + q * k * HW)
    return dx_arr


# ----------------------------------------------------------------------------------------------
# global average pooling (NIN)

def global_avg_pool2d(const floating[:, :, :, ::1] x):
    """x: (N, C, H, W) -> y (N, C, 1, 1), the mean of each plane (summed in float64)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3], p
    dtype = np.float32 if floating is float else np.float64
    y_arr = np.empty((N, C, 1, 1), dtype=dtype)
    cdef floating[:, :, :, ::1] y = y_arr
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    with nogil:
        for p in prange(N * C, schedule="dynamic", chunksize=chunk(N * C)):
            yp[p] = <floating> (plane_sum(xp + p * HW, HW) / HW)
    return y_arr


def global_avg_pool2d_backward(const floating[:, :, :, ::1] dy, input_shape):
    """dx (N, C, H, W) = dy (N, C, 1, 1) / (H*W), broadcast over each plane."""
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], H = input_shape[2], W = input_shape[3]
    cdef Py_ssize_t HW = H * W, p, k
    dtype = np.float32 if floating is float else np.float64
    dx_arr = np.empty((N, C, H, W), dtype=dtype)
    cdef floating[:, :, :, ::1] dx = dx_arr
    cdef const floating* dyp = &dy[0, 0, 0, 0]
    cdef floating* dxp = &dx[0, 0, 0, 0]
    cdef floating v
    with nogil:
        for p in prange(N * C, schedule="dynamic", chunksize=chunk(N * C)):
            v = dyp[p] / <floating> HW
            for k in range(HW):
                dxp[p * HW + k] = v
    return dx_arr
