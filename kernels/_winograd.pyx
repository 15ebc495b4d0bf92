# cython: language_level=3
"""CPU Winograd convolution F(m x m, r x r) (Lavin and Gray 2016), stride 1, any padding/dilation.

Inputs are trusted (validated in ``cnncore.functional``; transform matrices and tile origins built
by ``cnncore_kernels.winograd``): C-contiguous float32/float64 arrays, a square r x r kernel.

Tiles.  Output tile ``t`` covers the m x m outputs ``y[n, :, oh0 + a*dh, ow0 + b*dw]`` (a, b < m):
a convolution dilated by (dh, dw) is dh*dw ordinary convolutions on interleaved sub-grids, so a tile
reads its alpha x alpha inputs (alpha = m + r - 1) with step (dh, dw) from row ``oh0 - ph`` and
column ``ow0 - pw``, zeros outside the image (that is the padding; ph, pw may be negative).  No
sub-image is copied.  Tiles run over the whole batch (tile = n, row origin, column origin), so small
maps in big batches still give large GEMMs.

Per block of ``tb`` tiles, one thread: gather + input transform V[p, c, t] = (B^T d B)[p] (the tile
index t innermost, so the transforms are vector loops), then for each of the alpha^2 points p one
GEMM M[p] (K, tb) = U[p] (K, C) @ V[p] (C, tb), then the output transform A^T M A and the scatter
(+ bias) into y.  Blocks are spread over the OpenMP threads; each GEMM is single-threaded.

The weight gradient (``winograd_weight_grad``) runs the same blocks with F(r x r, m x m): the x
tiles transformed by B^T, the m x m dy tiles by G, and per point a GEMM (K, tb) @ (tb, C) added to
the thread's (alpha^2, K, C) accumulator.

Memory bound: per thread ``alpha^2 * (C + K + 2) * tb`` elements of scratch (tb = 128: 1.2 MB in
float32 for C = K = 64 and alpha = 6), plus U (alpha^2 * K * C) once; the weight gradient adds
``threads * alpha^2 * K * C`` accumulator elements.  Nothing scales with the image or the batch.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid

from ._blas cimport _gemm_parts, gemm_rm


cdef enum:
    # Blocks hold a multiple of VEC tiles and the transforms run on whole multiples of VEC (the
    # unused tail computes on stale finite values, never scattered): no scalar remainder loops.
    VEC = 16


cdef inline void lincomb(floating* out, const floating* coef, Py_ssize_t ncoef,
                         const floating* src, Py_ssize_t src_stride, Py_ssize_t nt) noexcept nogil:
    # out[t] = sum_i coef[i] * src[i*src_stride + t] for t < nt, one vector pass per nonzero
    # coefficient (the Cook-Toom matrices are about half zeros, many entries +-1), the first one
    # assigning (a separate zeroing pass cost 4% of a (64,64,15,15) forward in memset calls).
    # A variant summing a VEC-chunk in registers compiled to scalar FMAs (GCC 12), 3x slower.
    cdef Py_ssize_t i, t
    cdef floating a
    cdef const floating* s
    cdef bint first = True
    for i in range(ncoef):
        a = coef[i]
        if a == 0:
            continue
        s = src + i * src_stride
        if first:
            first = False
            for t in range(nt):
                out[t] = a * s[t]
        elif a == 1:
            for t in range(nt):
                out[t] += s[t]
        elif a == -1:
            for t in range(nt):
                out[t] -= s[t]
        else:
            for t in range(nt):
                out[t] += a * s[t]
    if first:  # all coefficients zero
        for t in range(nt):
            out[t] = 0


cdef void transform_2d(const floating* d, Py_ssize_t d_stride, const floating* T, Py_ssize_t rows,
                       Py_ssize_t cols, floating* tmp, floating* out, Py_ssize_t out_stride,
                       Py_ssize_t tb, Py_ssize_t nt) noexcept nogil:
    # out[(a*rows + b)*out_stride + t] = (T d T^T)[a, b] for each tile t < nt, where T is (rows,
    # cols) row-major and d[(i*cols + j)*d_stride + t] holds the cols x cols tiles.
    # tmp: rows * cols * tb scratch.
    cdef Py_ssize_t a, b, j
    for a in range(rows):       # tmp[a, j] = sum_i T[a, i] d[i, j]
        for j in range(cols):
            lincomb(tmp + (a * cols + j) * tb, T + a * cols, cols, d + j * d_stride,
                    cols * d_stride, nt)
    for a in range(rows):       # out[a, b] = sum_j T[b, j] tmp[a, j]
        for b in range(rows):
            lincomb(out + (a * rows + b) * out_stride, T + b * cols, cols,
                    tmp + a * cols * tb, tb, nt)


cdef void gather_tiles(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t c, const Py_ssize_t* oh0, Py_ssize_t n_rows,
                       const Py_ssize_t* ow0, Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt,
                       Py_ssize_t alpha, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                       Py_ssize_t dw, floating* d, Py_ssize_t tb) noexcept nogil:
    # d[(i*alpha + j)*tb + t] = x[n, c, oh0 - ph + i*dh, ow0 - pw + j*dw] of tile t0 + t (0 outside)
    cdef Py_ssize_t t, tile, n, ih, iw, i, j, h, w
    cdef const floating* row
    for t in range(nt):
        tile = t0 + t
        n = tile // (n_rows * n_cols)
        ih = oh0[(tile // n_cols) % n_rows] - ph
        iw = ow0[tile % n_cols] - pw
        if ih >= 0 and iw >= 0 and ih + (alpha - 1) * dh < H and iw + (alpha - 1) * dw < W:
            for i in range(alpha):
                row = x + ((n * C + c) * H + ih + i * dh) * W + iw
                for j in range(alpha):
                    d[(i * alpha + j) * tb + t] = row[j * dw]
        else:
            for i in range(alpha):
                h = ih + i * dh
                for j in range(alpha):
                    w = iw + j * dw
                    if 0 <= h < H and 0 <= w < W:
                        d[(i * alpha + j) * tb + t] = x[((n * C + c) * H + h) * W + w]
                    else:
                        d[(i * alpha + j) * tb + t] = 0


cdef void scatter_tiles(const floating* out, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                        Py_ssize_t k, floating bias, const Py_ssize_t* oh0, Py_ssize_t n_rows,
                        const Py_ssize_t* ow0, Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt,
                        Py_ssize_t m, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t tb,
                        floating* y) noexcept nogil:
    # y[n, k, oh0 + a*dh, ow0 + b*dw] = out[(a*m + b)*tb + t] + bias (inside the output only)
    cdef Py_ssize_t t, tile, n, oh, ow, a, b
    for t in range(nt):
        tile = t0 + t
        n = tile // (n_rows * n_cols)
        oh = oh0[(tile // n_cols) % n_rows]
        ow = ow0[tile % n_cols]
        for a in range(m):
            if oh + a * dh >= Ho:
                break
            for b in range(m):
                if ow + b * dw >= Wo:
                    break
                y[((n * K + k) * Ho + oh + a * dh) * Wo + ow + b * dw] = (
                    out[(a * m + b) * tb + t] + bias)


cdef void winograd_block(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         const floating* U, Py_ssize_t K, const floating* BT, const floating* AT,
                         Py_ssize_t m, Py_ssize_t alpha, const Py_ssize_t* oh0, Py_ssize_t n_rows,
                         const Py_ssize_t* ow0, Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt,
                         Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                         const floating* bias, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t tb,
                         floating* scratch, floating* y) noexcept nogil:
    # One block of nt <= tb tiles, single-threaded.  scratch: alpha^2 * (C + K + 2) * tb elements.
    cdef Py_ssize_t P = alpha * alpha, c, k, p
    cdef floating* V = scratch                     # (P, C, tb)
    cdef floating* M = V + P * C * tb              # (P, K, tb)
    cdef floating* d = M + P * K * tb              # (P, tb): one channel's raw tiles
    cdef floating* tmp = d + P * tb                # (P, tb)
    cdef Py_ssize_t nv = (nt + VEC - 1) // VEC * VEC
    for c in range(C):
        gather_tiles(x, C, H, W, c, oh0, n_rows, ow0, n_cols, t0, nt, alpha, ph, pw, dh, dw, d, tb)
        transform_2d(d, tb, BT, alpha, alpha, tmp, V + c * tb, C * tb, tb, nv)
    for p in range(P):
        gemm_rm(False, False, <int> K, <int> nt, <int> C, 1, U + p * K * C, <int> C,
                V + p * C * tb, <int> tb, 0, M + p * K * tb, <int> tb)
    for k in range(K):
        # output transform of filter k: M[:, k, :] (alpha x alpha tiles) -> d (m x m tiles)
        transform_2d(M + k * tb, K * tb, AT, m, alpha, tmp, d, tb, tb, nv)
        scatter_tiles(d, K, Ho, Wo, k, bias[k] if bias != NULL else 0, oh0, n_rows, ow0, n_cols,
                      t0, nt, m, dh, dw, tb, y)


cdef Py_ssize_t tiles_per_block(Py_ssize_t tiles, Py_ssize_t tb, Py_ssize_t parts) noexcept nogil:
    # Tiles per block (at most tb, the buffers' stride): the fewest blocks that is a multiple of
    # the thread count, sized evenly, so no thread waits on a short last block (392 tiles on 2
    # threads: 4 blocks of 98, not 128, 128, 128, 8).
    cdef Py_ssize_t nblocks = parts * ((tiles + parts * tb - 1) // (parts * tb))
    return (tiles + nblocks - 1) // nblocks


def winograd_conv(const floating[:, :, :, ::1] x, const floating[:, :, ::1] U,
                  const floating[:, ::1] BT, const floating[:, ::1] AT, const Py_ssize_t[::1] oh0,
                  const Py_ssize_t[::1] ow0, offset, dilation,
                  floating[:, :, :, ::1] y, bias, Py_ssize_t tb, floating[::1] scratch):
    """y[n, k] = sum_c conv(x[n, c], w[k, c]) + bias[k], stride 1, by Winograd tiles (in place).

    x: (N, C, H, W); U: (alpha^2, K, C) the transformed filters G w G^T; BT: (alpha, alpha);
    AT: (m, alpha); oh0, ow0: output row / column origins of the tiles (each tile m x m outputs
    with step dilation); offset: (ph, pw), input position = output position - offset + tap*dilation;
    y: (N, K, Ho, Wo), written fully by the tiles; bias: (K,) or None; tb: tiles per block, a
    multiple of VEC; scratch: at least ``scratch_size(...)`` elements, finite values (the vector
    chunks compute on the unused tail of a block).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = U.shape[1], alpha = BT.shape[0], m = AT.shape[0]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3]
    cdef Py_ssize_t ph = offset[0], pw = offset[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t n_rows = oh0.shape[0], n_cols = ow0.shape[0]
    cdef Py_ssize_t tiles = N * n_rows * n_cols
    cdef Py_ssize_t parts = _gemm_parts, blk
    cdef Py_ssize_t per_block = tiles_per_block(tiles, tb, parts)
    cdef Py_ssize_t nblocks = (tiles + per_block - 1) // per_block
    cdef Py_ssize_t per_thread = alpha * alpha * (C + K + 2) * tb
    cdef const floating[::1] b
    cdef const floating* bp = NULL
    if bias is not None:
        b = bias
        bp = &b[0]
    if parts > nblocks:
        parts = nblocks
    with nogil:
        for blk in prange(nblocks, schedule="dynamic", num_threads=parts):
            winograd_block(&x[0, 0, 0, 0], C, H, W, &U[0, 0, 0], K, &BT[0, 0], &AT[0, 0], m, alpha,
                           &oh0[0], n_rows, &ow0[0], n_cols, blk * per_block,
                           min(per_block, tiles - blk * per_block),
                           ph, pw, dh, dw, bp, Ho, Wo, tb, &scratch[threadid() * per_thread],
                           &y[0, 0, 0, 0])
    return y


def scratch_size(Py_ssize_t C, Py_ssize_t K, Py_ssize_t alpha, Py_ssize_t tb):
    """Elements of scratch ``winograd_conv`` needs: alpha^2 * (C + K + 2) * tb per thread."""
    return alpha * alpha * (C + K + 2) * tb * max(_gemm_parts, 1)


def transform_weight(const floating[:, :, :, ::1] w, const double[:, ::1] G,
                     floating[:, :, ::1] U):
    """U[a*alpha + b, k, c] = (G w[k, c] G^T)[a, b], summed in float64.  w: (K, C, r, r),
    G: (alpha, r), U: (alpha^2, K, C).  Per filter k: first G w (alpha x r) for every channel,
    then the rows U[a*alpha + b, k, :] written contiguously (writing all alpha^2 planes per channel
    instead took 25% of a (8,128,28,28) forward)."""
    cdef Py_ssize_t K = w.shape[0], C = w.shape[1], r = w.shape[2], alpha = G.shape[0]
    cdef Py_ssize_t k, c, a, b, i, j
    cdef double s
    tmp_arr = np.empty((_gemm_parts, alpha * r + 1, C), dtype=np.float64)
    cdef double[:, :, ::1] tmp = tmp_arr
    cdef double* tm
    cdef floating* u
    cdef double* row
    cdef double g
    with nogil:
        for k in prange(K, schedule="static", num_threads=_gemm_parts):
            tm = &tmp[threadid(), 0, 0]
            for c in range(C):              # tm[a, j, c] = sum_i G[a, i] w[k, c, i, j]
                for a in range(alpha):
                    for j in range(r):
                        s = 0
                        for i in range(r):
                            s = s + G[a, i] * w[k, c, i, j]
                        tm[(a * r + j) * C + c] = s
            row = tm + alpha * r * C
            for a in range(alpha):          # U[a, b, k, c] = sum_j tm[a, j, c] G[b, j]
                for b in range(alpha):
                    g = G[b, 0]
                    for c in range(C):
                        row[c] = g * tm[a * r * C + c]
                    for j in range(1, r):
                        g = G[b, j]
                        for c in range(C):
                            row[c] = row[c] + g * tm[(a * r + j) * C + c]
                    u = &U[a * alpha + b, k, 0]
                    for c in range(C):
                        u[c] = <floating> row[c]


cdef void wgrad_block(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                      const floating* dy, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                      const floating* BT, const floating* G, Py_ssize_t m, Py_ssize_t alpha,
                      const Py_ssize_t* oh0, Py_ssize_t n_rows, const Py_ssize_t* ow0,
                      Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t ph,
                      Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t tb,
                      floating* scratch, floating* acc) noexcept nogil:
    # acc[p] (K, C) += sum over the block's tiles t of (G dy_t G^T)[p, k] (B^T x_t B)[p, c].
    cdef Py_ssize_t P = alpha * alpha, c, k, p
    cdef floating* V = scratch                     # (P, C, tb): transformed x tiles
    cdef floating* M = V + P * C * tb              # (P, K, tb): transformed dy tiles
    cdef floating* d = M + P * K * tb              # (P, tb)
    cdef floating* tmp = d + P * tb                # (P, tb)
    cdef Py_ssize_t nv = (nt + VEC - 1) // VEC * VEC
    for c in range(C):
        gather_tiles(x, C, H, W, c, oh0, n_rows, ow0, n_cols, t0, nt, alpha, ph, pw, dh, dw, d, tb)
        transform_2d(d, tb, BT, alpha, alpha, tmp, V + c * tb, C * tb, tb, nv)
    for k in range(K):
        # the m x m dy tile: outputs oh0 + a*dh, ow0 + b*dw (zero past the output's edge)
        gather_tiles(dy, K, Ho, Wo, k, oh0, n_rows, ow0, n_cols, t0, nt, m, 0, 0, dh, dw, d, tb)
        transform_2d(d, tb, G, alpha, m, tmp, M + k * tb, K * tb, tb, nv)
    for p in range(P):
        gemm_rm(False, True, <int> K, <int> C, <int> nt, 1, M + p * K * tb, <int> tb,
                V + p * C * tb, <int> tb, 1, acc + p * K * C, <int> C)


def winograd_weight_grad(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dy,
                         const floating[:, ::1] BT, const floating[:, ::1] G,
                         const double[:, ::1] AT, const Py_ssize_t[::1] oh0,
                         const Py_ssize_t[::1] ow0, offset, dilation,
                         Py_ssize_t tb, floating[::1] scratch, floating[:, :, :, ::1] dw_out):
    """dweight of a stride-1 convolution by Winograd F(r x r, m x m) over the output tiles.

    x: (N, C, H, W); dy: (N, K, Ho, Wo); BT: (alpha, alpha), G: (alpha, m), AT: (r, alpha) the
    matrices of F(r, m); oh0, ow0, offset, dilation, tb, scratch as in ``winograd_conv`` (tiles of
    m x m outputs); dw_out: (K, C, r, r), overwritten.  Each thread sums its own (alpha^2, K, C)
    accumulator over a static share of the blocks; the shares are added in thread order, so the
    result is repeatable for a given thread count.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = dy.shape[1], Ho = dy.shape[2], Wo = dy.shape[3]
    cdef Py_ssize_t alpha = BT.shape[0], m = G.shape[1], r = AT.shape[0]
    cdef Py_ssize_t ph = offset[0], pw = offset[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t n_rows = oh0.shape[0], n_cols = ow0.shape[0]
    cdef Py_ssize_t tiles = N * n_rows * n_cols, P = alpha * alpha
    cdef Py_ssize_t parts = _gemm_parts, blk, t, e
    cdef Py_ssize_t per_block = tiles_per_block(tiles, tb, parts)
    cdef Py_ssize_t nblocks = (tiles + per_block - 1) // per_block
    cdef Py_ssize_t per_thread = P * (C + K + 2) * tb
    cdef Py_ssize_t k, c, a, b, i, j
    cdef double s, u
    if parts > nblocks:
        parts = nblocks
    acc_arr = np.zeros((parts, P, K, C), dtype=np.asarray(x).dtype)
    cdef floating[:, :, :, ::1] acc = acc_arr
    tmp_arr = np.empty((_gemm_parts, r * alpha, C), dtype=np.float64)
    cdef double[:, :, ::1] tmp = tmp_arr
    cdef double* tm
    cdef double* row
    cdef const floating* src
    with nogil:
        for blk in prange(nblocks, schedule="static", num_threads=parts):
            wgrad_block(&x[0, 0, 0, 0], C, H, W, &dy[0, 0, 0, 0], K, Ho, Wo, &BT[0, 0], &G[0, 0],
                        m, alpha, &oh0[0], n_rows, &ow0[0], n_cols, blk * per_block,
                        min(per_block, tiles - blk * per_block), ph, pw, dh, dw, tb,
                        &scratch[threadid() * per_thread], &acc[threadid(), 0, 0, 0])
        for e in prange(P * K * C, schedule="static"):
            for t in range(1, parts):
                (&acc[0, 0, 0, 0])[e] += (&acc[t, 0, 0, 0])[e]
        # dW[k, c] = AT S[:, k, c] AT^T in float64, vector loops over c (reading S[:, k, c] per
        # (k, c) across the alpha^2 planes took 38% of a (64,64,15,15) weight gradient)
        for k in prange(K, schedule="static", num_threads=parts):
            tm = &tmp[threadid(), 0, 0]
            for i in range(r):          # tm[i, b, c] = sum_a AT[i, a] S[a, b, k, c]
                for b in range(alpha):
                    row = tm + (i * alpha + b) * C
                    for c in range(C):
                        row[c] = 0
                    for a in range(alpha):
                        u = AT[i, a]
                        if u != 0:
                            src = &acc[0, a * alpha + b, k, 0]
                            for c in range(C):
                                row[c] = row[c] + u * src[c]
            for i in range(r):          # dW[k, c, i, j] = sum_b tm[i, b, c] AT[j, b]
                for j in range(r):
                    for c in range(C):
                        s = 0
                        for b in range(alpha):
                            s = s + tm[(i * alpha + b) * C + c] * AT[j, b]
                        dw_out[k, c, i, j] = s
    return dw_out
