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

Per block of ``tb`` tiles, one thread: gather + input transform V[c, p, t] = (B^T d B)[p] (the
tile index t innermost, so the transforms are vector loops), then for each of the alpha^2 points p
one GEMM M[:, p] (K, tb) = U[p] (K, C) @ V[:, p] (C, tb), then the output transform A^T M A and
the scatter (+ bias, + ReLU if asked) into y.  The point index sits between channel and tile
(V (C, P, tb), M (K, P, tb)), so one channel's or filter's alpha^2 rows are one contiguous block:
a (P, C, tb) layout put them C*tb elements apart, 64 KB for C = 128, all in one L1 set.  Blocks
are spread over the OpenMP threads; each GEMM is single-threaded.  The transforms run on chunks
of CH tiles: gathered into a local array, both 1-D passes in L1 (straight-line vector code for
the matrices of the default tiles, one load per input and one store per output; a
coefficient-by-coefficient pass for the others).  Tile positions are computed once per block.
The gather and the scatter move four tiles at a time with 4-lane vectors where all four lie
inside the map: a 4x4 transpose for dilation 1, a plain copy for tiles on neighbouring sub-grids
(column dilation >= 4, where consecutive tiles start on consecutive columns), two interleaved
pairs for column dilation 2 (tiles on the two sub-grids, 2-element halves); a chunk with tiles
over the image's edge first copies the input rows it reads into zero-padded local strips, so that
its edge tiles move the same way; while it gathers a channel, the gather prefetches the same rows
of the next one; while it computes one filter, the output loop asks for the lines the next
filter's scatter will write, unless the output is streamed: for large float32 outputs, four 4x4
tiles side by side whose rows start on cache lines are written by non-temporal stores, whole
lines without reading them first (``stream``; with column dilation 2, two pairs of tiles 8
columns apart fill the line).  With few input channels (``fused``) the
element-wise stage runs per chunk and filter as vector loops straight into the output transform,
instead of the alpha^2 thin GEMMs and the M buffer (for F(4,3) and F(4,5) and up to 8 channels
into its first pass, the products never stored), with the filters' weights as (K, alpha^2, C).

The weight gradient (``winograd_weight_grad``) runs the same blocks as the adjoint of the forward's
tile, dW = G^T [sum over tiles (A dy A^T) * (B^T x B)] G: the x tiles transformed by B^T, the m x m
dy tiles by A = (A^T)^T, and per point a GEMM (K, tb) @ (tb, C) added to the thread's (alpha^2, K,
C) accumulator.  With few input channels the backward instead runs as
the adjoint of the forward's tiles, dx, dweight and dbias from one pass over dy
(``winograd_backward_fused``, in ``_winograd_backward.pxi``).

Memory bound: per thread ``alpha^2 * (C + K) * tb`` elements of scratch (``winograd.py`` picks tb
from 64 to 256 tiles by channel count: 1.2 MB in float32 for C = K = 64 and alpha = 6, 19 MB for
C = K = 256; 16 tiles in the x86-64-v3 build's float32 GEMM stage: 0.3 MB for C = K = 128; the
weight gradient 256 from 128 channels up: 9.4 MB for C = K = 128), plus U (alpha^2 * K * C) once
(twice with the fused stage, which copies it to (K, alpha^2, C); that GEMM stage takes it packed
by six filters, as ``transform_weight(..., packed=True)`` writes it); the weight gradient adds
``threads * alpha^2 * K * C`` accumulator elements.  Nothing scales with the image or the batch.
"""

import numpy as np

cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid

from ._blas cimport _gemm_parts, gemm_rm


cdef enum:
    # Blocks hold a multiple of VEC tiles (the buffers' stride).
    VEC = 16
    # The transforms run on chunks of CH tiles, from and to small local arrays (alpha <= MAXA), so
    # a chunk's raw, half-transformed and transformed tiles stay in L1.  (CH = 8 made GCC unroll
    # the tile loops completely, and then not vectorize them.)  A chunk past the block's last tile
    # computes on zeros or on stale finite values and is never scattered: no remainder loops.
    CH = 16
    MAXA = 8
    CHUNK = 1024  # MAXA * MAXA * CH: elements of a chunk's local array
    MAXTB = 1024  # most tiles per block
    MAXTB4 = 256  # MAXTB / 4: groups of four tiles per block
    # A chunk with tiles over the image's edge is gathered from zero-padded copies of its rows
    # (``gather_strips``) of at most STRIP elements; longer ones (large dilations) tile by tile.
    # (Not float32 runs of tiles in the x86-64-v4 build: ``gather_runs`` reads zeros there.)
    STRIP = 3072
    # transform_weight's vector loops run over groups of filters of at least this many
    # (filter, channel) pairs; below TW_SERIAL elements of U, on one thread
    TW_PAIRS = 64
    TW_SERIAL = 524288
    # The element-wise GEMMs sum at most SUMC channels per call, adding the calls' results: the
    # float32 error of a sum over C channels then does not depend on how the BLAS kernel blocks
    # its inner dimension.  (OpenBLAS's AVX-512 small-matrix sgemm summed all 512 or 2048
    # channels in one running sum, where its AVX2 kernels add blocks of a few hundred: F(2,5)'s
    # forward error at C = 512 / 2048 was 5.3e-6 / 1.1e-5 on AVX-512, 2.9e-6 / 3.1e-6 on AVX2.)
    SUMC = 256
    # OpenBLAS (the build SciPy ships, SkylakeX kernels) runs GEMMs of at most 100^3
    # multiply-adds by its small-matrix kernels, straight from the operands, but "TN" (column-
    # major; the weight gradient's row-major (K, tiles) @ (C, tiles)^T) slower than the other
    # layouts, as fast only from that size up, where every layout is packed.  Measured
    # (2026-12, Intel Xeon AVX-512, one thread, beta 1, us per call, NN / TN): 64x64x64 5.7 / 6.9,
    # 64x64x128 10.7 / 15.9, 100x100x100 19.9 / 26.1; from 101x100x100 up 1.00-1.11x.  The weight
    # gradient transposes V's point (``wg_transpose``) to run "NN" up to this size: weight
    # gradient 1.11-1.16x faster on (8,64,56,56) 3x3, (64,64,15,15) 5x5 and (128,64,32,32) 3x3
    # (7 interleaved rounds); larger GEMMs keep "TN" (the transpose cost 0.94x on (8,128,28,28)
    # and (128,256,8,8)).
    SMALL_GEMM_MNK = 1000000


# Kinds of 1-D transform (``transform_kind``): GENERIC runs ``lincomb`` per row of any matrix; the
# others are straight-line code for one matrix (the hard-coded coefficients are those of
# ``cook_toom``, checked entry by entry before use), one load per input and one store per output.
cdef enum:
    GENERIC = 0
    BT6 = 1     # B^T of the points 0, +-1, +-2 (alpha 6: F(4,3), F(2,5))
    BT8 = 2     # B^T of the points 0, +-1, +-2, +-1/2 (alpha 8: F(6,3), F(4,5))
    AT46 = 3    # A^T of F(4,3)
    AT48 = 4    # A^T of F(4,5)
    BT6T = 6    # (B^T)^T of alpha 6 and 8: the fused backward's transform of dx tiles
    BT8T = 7
    AT46T = 8   # (A^T)^T of F(4,3) and F(4,5): the backward's transform of dy tiles (fused
    # backward and weight gradient), both passes at once (``dy_chunk`` in _winograd_backward.pxi),
    # never through tx1d
    AT48T = 9

# The epilogue of an output transform's last pass (``chunk_epilogue``, ``WG_EPI``)
cdef enum:
    EPI_NONE = 0    # none
    EPI_BIAS = 1    # + bias
    EPI_RELU = 2    # ReLU(+ bias)

_KIND_MATRICES = {
    BT6: np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float),
    BT8: np.array([[-1, 0, 5.25, 0, -5.25, 0, 1, 0], [0, 1, 1, -4.25, -4.25, 1, 1, 0],
                   [0, -1, 1, 4.25, -4.25, -1, 1, 0], [0, 0.5, 0.25, -2.5, -1.25, 2, 1, 0],
                   [0, -0.5, 0.25, 2.5, -1.25, -2, 1, 0], [0, 2, 4, -2.5, -5, 0.5, 1, 0],
                   [0, -2, 4, 2.5, -5, -0.5, 1, 0], [0, -1, 0, 5.25, 0, -5.25, 0, 1]]),
    AT46: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=float),
    AT48: np.array([[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0.5, -0.5, 0],
                    [0, 1, 1, 4, 4, 0.25, 0.25, 0], [0, 1, -1, 8, -8, 0.125, -0.125, 1]]),
}
_KIND_MATRICES.update({BT6T: _KIND_MATRICES[BT6].T, BT8T: _KIND_MATRICES[BT8].T,
                       AT46T: _KIND_MATRICES[AT46].T, AT48T: _KIND_MATRICES[AT48].T})


def transform_kind(T, bint specialise=True):
    """The 1-D transform code that runs matrix T (a kind above; GENERIC when ``specialise`` is
    false or T matches no specialisation)."""
    T = np.asarray(T)
    if specialise:
        for kind, ref in _KIND_MATRICES.items():
            if T.shape == ref.shape and np.array_equal(T, ref):
                return kind
    return GENERIC


cdef inline void lincomb(floating* out, const floating* coef, Py_ssize_t ncoef,
                         const floating* src, Py_ssize_t src_stride, Py_ssize_t nt) noexcept nogil:
    # out[t] = sum_i coef[i] * src[i*src_stride + t] for t < nt, one vector pass per nonzero
    # coefficient, the first one assigning.
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


cdef extern from *:
    # The specialised 1-D transforms in C with GCC vector types (8 float32 or 4 float64 lanes, one
    # AVX2 register; two SSE2 halves in the baseline build): o[a*os + t] = sum_i T[a, i] s[i*ss + t]
    # for t < n (n a multiple of 8) and the rows a of T.  Written in Cython, GCC unrolled the tile
    # loop and vectorized it in one of four inlined copies only.  The vector types are unaligned
    # (aligned(4)/(8)) and may_alias, because they read and write float/double buffers.  (One
    # AVX-512 register, 16 float32 lanes, in the x86-64-v4 build ran 0.86-0.93x as fast on most
    # GEMM-stage layers on an Intel Xeon, 2026-12, 5 interleaved rounds, so their transforms keep
    # 32-byte vectors.  The few-channel paths, whose loops are the whole arithmetic, use wg_vwf:
    # 64 bytes in that build, 32 elsewhere: the fused forward's products and output transform
    # and the fused backward's transposed transforms and products; the (64,3,32,32)->64 5x5
    # layer ran 1.16x (forward) and 1.14x (backward) as fast with them, 10-16 interleaved
    # rounds.)
    """
    #define WG_CH 16  /* tiles per chunk: CH below (checked at import) */
    typedef float wg_vf __attribute__((vector_size(32), aligned(4), may_alias));
    typedef double wg_vd __attribute__((vector_size(32), aligned(8), may_alias));
    #if defined(__AVX512F__)
    typedef float wg_vwf __attribute__((vector_size(64), aligned(4), may_alias));
    #else
    typedef wg_vf wg_vwf;
    #endif
    enum { WG_LANES_WF = (int)(sizeof(wg_vwf) / sizeof(float)) };
    #define WG_LD(V, p) (*(const V*)(p))
    #define WG_ST(V, p, v) (*(V*)(p) = (v))
    #define WG_BT6(NAME, T, V)                                                                   \
    static void NAME(const T* s, Py_ssize_t ss, T* o, Py_ssize_t os, Py_ssize_t n) {             \
        for (Py_ssize_t t = 0; t < n; t += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                \
            V d0 = WG_LD(V, s + t), d1 = WG_LD(V, s + ss + t), d2 = WG_LD(V, s + 2 * ss + t);    \
            V d3 = WG_LD(V, s + 3 * ss + t), d4 = WG_LD(V, s + 4 * ss + t);                      \
            V d5 = WG_LD(V, s + 5 * ss + t), a, b;                                               \
            WG_ST(V, o + t, (T)4 * d0 - (T)5 * d2 + d4);                                         \
            a = d4 - (T)4 * d2; b = d3 - (T)4 * d1;                                              \
            WG_ST(V, o + os + t, a + b); WG_ST(V, o + 2 * os + t, a - b);                        \
            a = d4 - d2; b = (T)2 * (d3 - d1);                                                   \
            WG_ST(V, o + 3 * os + t, a + b); WG_ST(V, o + 4 * os + t, a - b);                    \
            WG_ST(V, o + 5 * os + t, (T)4 * d1 - (T)5 * d3 + d5);                                \
        }                                                                                        \
    }
    #define WG_BT8(NAME, T, V)                                                                   \
    static void NAME(const T* s, Py_ssize_t ss, T* o, Py_ssize_t os, Py_ssize_t n) {             \
        for (Py_ssize_t t = 0; t < n; t += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                \
            V d0 = WG_LD(V, s + t), d1 = WG_LD(V, s + ss + t), d2 = WG_LD(V, s + 2 * ss + t);    \
            V d3 = WG_LD(V, s + 3 * ss + t), d4 = WG_LD(V, s + 4 * ss + t);                      \
            V d5 = WG_LD(V, s + 5 * ss + t), d6 = WG_LD(V, s + 6 * ss + t);                      \
            V d7 = WG_LD(V, s + 7 * ss + t), a, b;                                               \
            WG_ST(V, o + t, (d6 - d0) + (T)5.25 * (d2 - d4));                                    \
            a = d2 + d6 - (T)4.25 * d4; b = d1 + d5 - (T)4.25 * d3;                              \
            WG_ST(V, o + os + t, a + b); WG_ST(V, o + 2 * os + t, a - b);                        \
            a = (T)0.25 * d2 - (T)1.25 * d4 + d6; b = (T)0.5 * d1 - (T)2.5 * d3 + (T)2 * d5;     \
            WG_ST(V, o + 3 * os + t, a + b); WG_ST(V, o + 4 * os + t, a - b);                    \
            a = (T)4 * d2 - (T)5 * d4 + d6; b = (T)2 * d1 - (T)2.5 * d3 + (T)0.5 * d5;           \
            WG_ST(V, o + 5 * os + t, a + b); WG_ST(V, o + 6 * os + t, a - b);                    \
            WG_ST(V, o + 7 * os + t, (d7 - d1) + (T)5.25 * (d3 - d5));                           \
        }                                                                                        \
    }
    /* The output transforms' epilogue, as ``chunk_epilogue``: epi 0 none, 1 x + bias, 2 ReLU of
       x + bias (0 where it is <= 0, NaN kept).  In the last pass of the output transform it
       saves a pass over the chunk: that pass was 10% of a (64,3,32,32)->64 5x5 forward with
       bias (2.70 ms against 2.46 without). */
    #define WG_EPI(V, x, bias, epi) ({                                                           \
        V e_ = (x);                                                                              \
        if (epi) {                                                                               \
            e_ = e_ + (bias);                                                                    \
            if ((epi) == 2) {                                                                    \
                __typeof__(e_ <= 0) z_ = e_ <= 0;                                                \
                e_ = (V)((__typeof__(z_))e_ & ~z_);                                              \
            }                                                                                    \
        }                                                                                        \
        e_; })
    #define WG_AT46(NAME, T, V)                                                                  \
    static void NAME(const T* s, Py_ssize_t ss, T* o, Py_ssize_t os, Py_ssize_t n, T bias,       \
                     int epi) {                                                                  \
        for (Py_ssize_t t = 0; t < n; t += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                \
            V d1 = WG_LD(V, s + ss + t), d2 = WG_LD(V, s + 2 * ss + t);                          \
            V d3 = WG_LD(V, s + 3 * ss + t), d4 = WG_LD(V, s + 4 * ss + t);                      \
            V p12 = d1 + d2, m12 = d1 - d2, p34 = d3 + d4, m34 = d3 - d4;                        \
            WG_ST(V, o + t, WG_EPI(V, WG_LD(V, s + t) + p12 + p34, bias, epi));                  \
            WG_ST(V, o + os + t, WG_EPI(V, m12 + (T)2 * m34, bias, epi));                        \
            WG_ST(V, o + 2 * os + t, WG_EPI(V, p12 + (T)4 * p34, bias, epi));                    \
            WG_ST(V, o + 3 * os + t,                                                             \
                  WG_EPI(V, m12 + (T)8 * m34 + WG_LD(V, s + 5 * ss + t), bias, epi));            \
        }                                                                                        \
    }
    #define WG_AT48(NAME, T, V)                                                                  \
    static void NAME(const T* s, Py_ssize_t ss, T* o, Py_ssize_t os, Py_ssize_t n, T bias,       \
                     int epi) {                                                                  \
        for (Py_ssize_t t = 0; t < n; t += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                \
            V d1 = WG_LD(V, s + ss + t), d2 = WG_LD(V, s + 2 * ss + t);                          \
            V d3 = WG_LD(V, s + 3 * ss + t), d4 = WG_LD(V, s + 4 * ss + t);                      \
            V d5 = WG_LD(V, s + 5 * ss + t), d6 = WG_LD(V, s + 6 * ss + t);                      \
            V p12 = d1 + d2, m12 = d1 - d2, p34 = d3 + d4, m34 = d3 - d4;                        \
            V p56 = d5 + d6, m56 = d5 - d6;                                                      \
            WG_ST(V, o + t, WG_EPI(V, WG_LD(V, s + t) + p12 + p34 + p56, bias, epi));            \
            WG_ST(V, o + os + t, WG_EPI(V, m12 + (T)2 * m34 + (T)0.5 * m56, bias, epi));         \
            WG_ST(V, o + 2 * os + t, WG_EPI(V, p12 + (T)4 * p34 + (T)0.25 * p56, bias, epi));    \
            WG_ST(V, o + 3 * os + t, WG_EPI(V, m12 + (T)8 * m34 + (T)0.125 * m56                 \
                                             + WG_LD(V, s + 7 * ss + t), bias, epi));            \
        }                                                                                        \
    }
    WG_BT6(wg_bt6_f, float, wg_vf)
    WG_BT6(wg_bt6_d, double, wg_vd)
    WG_BT8(wg_bt8_f, float, wg_vf)
    WG_BT8(wg_bt8_d, double, wg_vd)
    WG_AT46(wg_at46_f, float, wg_vf)
    WG_AT46(wg_at46_d, double, wg_vd)
    WG_AT48(wg_at48_f, float, wg_vf)
    WG_AT48(wg_at48_d, double, wg_vd)
    /* The transposes, for the fused backward, by pair sums of the symmetric points:
       s1 +- s2, s3 +- s4 (and s5 +- s6 for alpha 8) */
    #define WG_BT6T(NAME, T, V)                                                                  \
    static void NAME(const T* s, Py_ssize_t ss, T* o, Py_ssize_t os, Py_ssize_t n) {             \
        for (Py_ssize_t t = 0; t < n; t += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                \
            V d0 = WG_LD(V, s + t), d1 = WG_LD(V, s + ss + t), d2 = WG_LD(V, s + 2 * ss + t);    \
            V d3 = WG_LD(V, s + 3 * ss + t), d4 = WG_LD(V, s + 4 * ss + t);                      \
            V d5 = WG_LD(V, s + 5 * ss + t);                                                     \
            V p1 = d1 + d2, m1 = d1 - d2, p2 = d3 + d4, m2 = d3 - d4;                            \
            WG_ST(V, o + t, (T)4 * d0);                                                          \
            WG_ST(V, o + os + t, (T)4 * (d5 - m1) - (T)2 * m2);                                  \
            WG_ST(V, o + 2 * os + t, (T)-5 * d0 - (T)4 * p1 - p2);                               \
            WG_ST(V, o + 3 * os + t, m1 + (T)2 * m2 - (T)5 * d5);                                \
            WG_ST(V, o + 4 * os + t, d0 + p1 + p2);                                              \
            WG_ST(V, o + 5 * os + t, d5);                                                        \
        }                                                                                        \
    }
    #define WG_BT8T(NAME, T, V)                                                                  \
    static void NAME(const T* s, Py_ssize_t ss, T* o, Py_ssize_t os, Py_ssize_t n) {             \
        for (Py_ssize_t t = 0; t < n; t += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                \
            V d0 = WG_LD(V, s + t), d1 = WG_LD(V, s + ss + t), d2 = WG_LD(V, s + 2 * ss + t);    \
            V d3 = WG_LD(V, s + 3 * ss + t), d4 = WG_LD(V, s + 4 * ss + t);                      \
            V d5 = WG_LD(V, s + 5 * ss + t), d6 = WG_LD(V, s + 6 * ss + t);                      \
            V d7 = WG_LD(V, s + 7 * ss + t);                                                     \
            V p1 = d1 + d2, m1 = d1 - d2, p2 = d3 + d4, m2 = d3 - d4, p3 = d5 + d6, m3 = d5 - d6;\
            WG_ST(V, o + t, -d0);                                                                \
            WG_ST(V, o + os + t, m1 + (T)0.5 * m2 + (T)2 * m3 - d7);                             \
            WG_ST(V, o + 2 * os + t, (T)5.25 * d0 + p1 + (T)0.25 * p2 + (T)4 * p3);              \
            WG_ST(V, o + 3 * os + t, (T)5.25 * d7 - (T)4.25 * m1 - (T)2.5 * (m2 + m3));          \
            WG_ST(V, o + 4 * os + t, (T)-5.25 * d0 - (T)4.25 * p1 - (T)1.25 * p2 - (T)5 * p3);   \
            WG_ST(V, o + 5 * os + t, m1 + (T)2 * m2 + (T)0.5 * m3 - (T)5.25 * d7);               \
            WG_ST(V, o + 6 * os + t, d0 + p1 + p2 + p3);                                         \
            WG_ST(V, o + 7 * os + t, d7);                                                        \
        }                                                                                        \
    }
    WG_BT6T(wg_bt6t_f, float, wg_vwf)
    WG_BT6T(wg_bt6t_d, double, wg_vd)
    WG_BT8T(wg_bt8t_f, float, wg_vwf)
    WG_BT8T(wg_bt8t_d, double, wg_vd)
    /* The element-wise stage of one chunk without a GEMM (for few input channels):
       o[p*WG_CH + s] = sum_c u[p*C + c] * v[c*vs + p*ps + s] for the alpha^2 points p < P and
       the WG_CH tiles s of a chunk; u holds one filter's transformed weights, points by channels
       (contiguous: with U's (P, K, C) layout the 64 points of one filter lay on 64 cache lines,
       which the loop over 64 filters evicted from L1 before their next use).  PU points at a
       time, so 2*PU (float) or 4*PU (double) independent vector accumulators.  Instantiated for
       each channel count up to WG_FUSED_C, so that the loop over the channels unrolls (C = 3 ran
       2 iterations of a loop whose set-up spilled its pointers to the stack). */
    #define WG_FUSED_C 8
    #define WG_POINTWISE(NAME, T, V, PU)                                                         \
    static inline __attribute__((always_inline)) void NAME##_c(                                 \
            const T* u, const T* v, Py_ssize_t vs, Py_ssize_t ps, Py_ssize_t C, Py_ssize_t P,   \
            T* o) {                                                                              \
        enum { L = (int)(sizeof(V) / sizeof(T)), NV = WG_CH / L };                               \
        Py_ssize_t p = 0;                                                                        \
        for (; p + PU <= P; p += PU) {                                                           \
            V acc[PU][NV];                                                                       \
            for (int q = 0; q < PU; q++)                                                         \
                for (int h = 0; h < NV; h++)                                                     \
                    acc[q][h] = u[(p + q) * C] * WG_LD(V, v + (p + q) * ps + h * L);             \
            for (Py_ssize_t c = 1; c < C; c++)                                                   \
                for (int q = 0; q < PU; q++)                                                     \
                    for (int h = 0; h < NV; h++)                                                 \
                        acc[q][h] += u[(p + q) * C + c]                                          \
                                     * WG_LD(V, v + c * vs + (p + q) * ps + h * L);              \
            for (int q = 0; q < PU; q++)                                                         \
                for (int h = 0; h < NV; h++)                                                     \
                    WG_ST(V, o + (p + q) * WG_CH + h * L, acc[q][h]);                            \
        }                                                                                        \
        for (; p < P; p++) {                                                                     \
            V acc[NV];                                                                           \
            for (int h = 0; h < NV; h++)                                                         \
                acc[h] = u[p * C] * WG_LD(V, v + p * ps + h * L);                                \
            for (Py_ssize_t c = 1; c < C; c++)                                                   \
                for (int h = 0; h < NV; h++)                                                     \
                    acc[h] += u[p * C + c] * WG_LD(V, v + c * vs + p * ps + h * L);              \
            for (int h = 0; h < NV; h++)                                                         \
                WG_ST(V, o + p * WG_CH + h * L, acc[h]);                                         \
        }                                                                                        \
    }                                                                                            \
    static void NAME(const T* u, const T* v, Py_ssize_t vs, Py_ssize_t ps, Py_ssize_t C,        \
                     Py_ssize_t P, T* o) {                                                       \
        switch (C) {                                                                             \
        case 1: NAME##_c(u, v, vs, ps, 1, P, o); break;                                          \
        case 2: NAME##_c(u, v, vs, ps, 2, P, o); break;                                          \
        case 3: NAME##_c(u, v, vs, ps, 3, P, o); break;                                          \
        case 4: NAME##_c(u, v, vs, ps, 4, P, o); break;                                          \
        case 5: NAME##_c(u, v, vs, ps, 5, P, o); break;                                          \
        case 6: NAME##_c(u, v, vs, ps, 6, P, o); break;                                          \
        case 7: NAME##_c(u, v, vs, ps, 7, P, o); break;                                          \
        case 8: NAME##_c(u, v, vs, ps, 8, P, o); break;                                          \
        default: NAME##_c(u, v, vs, ps, C, P, o);                                                \
        }                                                                                        \
    }
    WG_POINTWISE(wg_pointwise_f, float, wg_vf, 4)
    WG_POINTWISE(wg_pointwise_d, double, wg_vd, 2)
    /* The fused element-wise stage and the first pass of the output transform A^T of F(4,3)
       (alpha 6) or F(4,5) (alpha 8), for one chunk and one filter, with the alpha^2 products
       never stored: per column j of the alpha x alpha tiles, the products of rows i
       (m_i = sum_c u[(i*alpha + j)*C + c] v[c*vs + (i*alpha + j)*ps + s]) are summed in
       registers straight into the four output rows, pair by pair of symmetric points:
       tmp[(a*alpha + j)*WG_CH + s] = sum_i AT[a, i] m_i, the same operations in the same order as
       WG_AT46 / WG_AT48 on the products.  HV vectors of tiles at a time (4 HV output accumulators
       + 2 HV products in registers).  Instantiated for 1 to 6 channels (8 unrolled ran 1.1x
       slower than the loop, on (32,8,28,28)->16 5x5). */
    #define WG_FUSED_ROW(V, HV, i)                                                               \
        for (int hv = 0; hv < HV; hv++) {                                                        \
            V x_ = WG_LD(V, v + ((i) * A + j) * ps + (h + hv) * L);                              \
            for (int f = 0; f < NF; f++)                                                         \
                r[f][hv] = u[f][((i) * A + j) * C] * x_;                                         \
        }                                                                                        \
        for (Py_ssize_t c = 1; c < C; c++)                                                       \
            for (int hv = 0; hv < HV; hv++) {                                                    \
                V x_ = WG_LD(V, v + c * vs + ((i) * A + j) * ps + (h + hv) * L);                 \
                for (int f = 0; f < NF; f++)                                                     \
                    r[f][hv] += u[f][((i) * A + j) * C + c] * x_;                                \
            }
    #define WG_FUSED_EACH(HV) for (int f = 0; f < NF; f++) for (int hv = 0; hv < HV; hv++)
    #define WG_FUSED_PAIR(T, V, HV, i, c1, c2, c3)                                               \
        WG_FUSED_ROW(V, HV, i) WG_FUSED_EACH(HV) q[f][hv] = r[f][hv];                              \
        WG_FUSED_ROW(V, HV, i + 1)                                                               \
        WG_FUSED_EACH(HV) {                                                                        \
            V pl = q[f][hv] + r[f][hv], mi = q[f][hv] - r[f][hv];                                \
            o0[f][hv] += pl; o1[f][hv] += (T)(c1) * mi; o2[f][hv] += (T)(c2) * pl;               \
            o3[f][hv] += (T)(c3) * mi;                                                           \
        }
    /* NAME##_c with the channel count C (a variable in scope) made a constant up to 6 */
    #define WG_FUSED_AT_CASES(NAME, A, NF)                                                       \
        switch (C) {                                                                             \
        case 1: NAME##_c(uu, v, vs, ps, 1, A, tt, NF); break;                                    \
        case 2: NAME##_c(uu, v, vs, ps, 2, A, tt, NF); break;                                    \
        case 3: NAME##_c(uu, v, vs, ps, 3, A, tt, NF); break;                                    \
        case 4: NAME##_c(uu, v, vs, ps, 4, A, tt, NF); break;                                    \
        case 5: NAME##_c(uu, v, vs, ps, 5, A, tt, NF); break;                                    \
        case 6: NAME##_c(uu, v, vs, ps, 6, A, tt, NF); break;                                    \
        default: NAME##_c(uu, v, vs, ps, C, A, tt, NF);                                          \
        }
    /* NF = 1 or 2 filters (u[f], out tmp[f]) at a time: each vector of v loaded once for both
       filters (for one, the loads, two per product, bound the loop).  Measured (2026-12, Intel
       Xeon with AVX-512, 2 threads, the two builds alternated call by call in one process,
       1400-2200 pairs, median ratio): 1.04-1.05x faster on (64,3,32,32)->64 5x5 and 3x3,
       (32,8,28,28)->16 5x5 and (8,3,64,64)->32 3x3.  Two filters only with 16-lane vectors
       (HV = 1): with 8 lanes (HV = 2, 16 vector registers) they ran 0.97-0.98x. */
    #define WG_FUSED_AT(NAME, T, V, HV)                                                          \
    static inline __attribute__((always_inline)) void NAME##_c(                                  \
            const T* const* u, const T* v, Py_ssize_t vs, Py_ssize_t ps, Py_ssize_t C, int A,    \
            T* const* tmp, int NF) {                                                             \
        enum { L = (int)(sizeof(V) / sizeof(T)), NV = WG_CH / L };                               \
        for (int j = 0; j < A; j++)                                                              \
            for (int h = 0; h < NV; h += HV) {                                                   \
                V o0[2][HV], o1[2][HV], o2[2][HV], o3[2][HV], q[2][HV], r[2][HV];                \
                WG_FUSED_ROW(V, HV, 0)                                                           \
                WG_FUSED_EACH(HV) o0[f][hv] = r[f][hv];                                            \
                WG_FUSED_ROW(V, HV, 1) WG_FUSED_EACH(HV) q[f][hv] = r[f][hv];                      \
                WG_FUSED_ROW(V, HV, 2)                                                           \
                WG_FUSED_EACH(HV) {                                                                \
                    V pl = q[f][hv] + r[f][hv], mi = q[f][hv] - r[f][hv];                        \
                    o0[f][hv] += pl; o1[f][hv] = mi; o2[f][hv] = pl; o3[f][hv] = mi;             \
                }                                                                                \
                WG_FUSED_PAIR(T, V, HV, 3, 2, 4, 8)                                              \
                if (A == 8) {                                                                    \
                    WG_FUSED_PAIR(T, V, HV, 5, 0.5, 0.25, 0.125)                                 \
                }                                                                                \
                WG_FUSED_ROW(V, HV, A - 1)                                                       \
                WG_FUSED_EACH(HV) {                                                                \
                    o3[f][hv] += r[f][hv];                                                       \
                    WG_ST(V, tmp[f] + (0 * A + j) * WG_CH + (h + hv) * L, o0[f][hv]);            \
                    WG_ST(V, tmp[f] + (1 * A + j) * WG_CH + (h + hv) * L, o1[f][hv]);            \
                    WG_ST(V, tmp[f] + (2 * A + j) * WG_CH + (h + hv) * L, o2[f][hv]);            \
                    WG_ST(V, tmp[f] + (3 * A + j) * WG_CH + (h + hv) * L, o3[f][hv]);            \
                }                                                                                \
            }                                                                                    \
    }                                                                                            \
    static void NAME(const T* u, const T* u2, const T* v, Py_ssize_t vs, Py_ssize_t ps,         \
                     Py_ssize_t C, int A, T* tmp, T* tmp2) {                                     \
        const T* uu[2] = {u, u2};                                                                \
        T* tt[2] = {tmp, tmp2};                                                                  \
        if (u2 != NULL && HV > 1) { /* 16 registers: one filter at a time */                     \
            NAME(u, NULL, v, vs, ps, C, A, tmp, NULL);                                           \
            NAME(u2, NULL, v, vs, ps, C, A, tmp2, NULL);                                         \
        } else if (u2 != NULL) {                                                                 \
            if (A == 8)                                                                          \
                WG_FUSED_AT_CASES(NAME, 8, 2)                                                    \
            else                                                                                 \
                WG_FUSED_AT_CASES(NAME, 6, 2)                                                    \
        } else if (A == 8)                                                                       \
            WG_FUSED_AT_CASES(NAME, 8, 1)                                                        \
        else                                                                                     \
            WG_FUSED_AT_CASES(NAME, 6, 1)                                                        \
    }
    WG_FUSED_AT(wg_fused_at_f, float, wg_vwf, WG_CH / WG_LANES_WF)
    WG_AT48(wg_at48w_f, float, wg_vwf)
    WG_AT46(wg_at46w_f, float, wg_vwf)
    WG_FUSED_AT(wg_fused_at_d, double, wg_vd, 2)
    /* Four tiles of a chunk at a time, between the chunk (tile index innermost) and the image
       (tile columns contiguous): four 4-lane vectors transposed, or, for tiles whose columns
       are consecutive in the image (dilation >= 4: neighbouring tiles sit on neighbouring
       sub-grids), copied as they are.  Instead of scalar moves with their address arithmetic
       (the scalar scatter took 40% of a 3-channel 5x5 forward, the scalar gather 18% of a
       (8,64,56,56) 3x3 forward). */
    typedef float wg_v4f __attribute__((vector_size(16), aligned(4), may_alias));
    typedef double wg_v4d __attribute__((vector_size(32), aligned(8), may_alias));
    typedef int wg_m4i __attribute__((vector_size(16)));
    typedef long long wg_m4l __attribute__((vector_size(32)));
    /* r_q[u] = b_u[q] */
    #define WG_T4(V, MASK, b0, b1, b2, b3, r0, r1, r2, r3) do {                                  \
            V t0_ = __builtin_shuffle(b0, b1, (MASK){0, 4, 1, 5});                               \
            V t1_ = __builtin_shuffle(b0, b1, (MASK){2, 6, 3, 7});                               \
            V t2_ = __builtin_shuffle(b2, b3, (MASK){0, 4, 1, 5});                               \
            V t3_ = __builtin_shuffle(b2, b3, (MASK){2, 6, 3, 7});                               \
            r0 = __builtin_shuffle(t0_, t2_, (MASK){0, 1, 4, 5});                                \
            r1 = __builtin_shuffle(t0_, t2_, (MASK){2, 3, 6, 7});                                \
            r2 = __builtin_shuffle(t1_, t3_, (MASK){0, 1, 4, 5});                                \
            r3 = __builtin_shuffle(t1_, t3_, (MASK){2, 3, 6, 7});                                \
        } while (0)
    /* 4x4 output tiles (dilation 1): row a of tile u, out[(4a + b)*WG_CH + u] (b < 4), to
       y + off[u] + a*rs .. + 3, each 4-lane vector written by STORE.  (Given the four tiles'
       pointers in an array instead, GCC kept the 16 row pointers on the stack when the offsets
       came from the block's plan: forwards with ordinary stores ran 0.95-0.975x.) */
    #define WG_SCATTER4T(NAME, T, V, MASK, STORE)                                                 \
    static inline void NAME(const T* out, T* y, const Py_ssize_t* off, Py_ssize_t rs) {         \
        for (int a = 0; a < 4; a++) {                                                            \
            V b0 = WG_LD(V, out + (4 * a) * WG_CH), b1 = WG_LD(V, out + (4 * a + 1) * WG_CH);    \
            V b2 = WG_LD(V, out + (4 * a + 2) * WG_CH), b3 = WG_LD(V, out + (4 * a + 3) * WG_CH);\
            V r0, r1, r2, r3;                                                                    \
            WG_T4(V, MASK, b0, b1, b2, b3, r0, r1, r2, r3);                                      \
            STORE(V, y + off[0] + a * rs, r0); STORE(V, y + off[1] + a * rs, r1);                \
            STORE(V, y + off[2] + a * rs, r2); STORE(V, y + off[3] + a * rs, r3);                \
        }                                                                                        \
    }
    /* The same for four 4x4 tiles of which some cross the output's bottom or right edge: tile u
       writes its first clip[u] >> 3 rows and clip[u] & 7 columns, whole rows by vector stores
       and clipped ones element by element (tile by tile, every element was a scalar move: a
       15x15 output has a clipped tile in each group of four) */
    #define WG_SCATTER4T_CLIP(NAME, T, V, MASK)                                                  \
    static inline void NAME(const T* out, T* y, const Py_ssize_t* off, Py_ssize_t rs,           \
                            const unsigned char* clip) {                                         \
        for (int a = 0; a < 4; a++) {                                                            \
            V b0 = WG_LD(V, out + (4 * a) * WG_CH), b1 = WG_LD(V, out + (4 * a + 1) * WG_CH);    \
            V b2 = WG_LD(V, out + (4 * a + 2) * WG_CH), b3 = WG_LD(V, out + (4 * a + 3) * WG_CH);\
            V r[4];                                                                              \
            WG_T4(V, MASK, b0, b1, b2, b3, r[0], r[1], r[2], r[3]);                              \
            for (int u = 0; u < 4; u++) {                                                        \
                int nb = clip[u] & 7;                                                            \
                T* row = y + off[u] + a * rs;                                                    \
                if (a >= clip[u] >> 3)                                                           \
                    continue;                                                                    \
                if (nb == 4)                                                                     \
                    WG_ST(V, row, r[u]);                                                         \
                else                                                                             \
                    for (int b = 0; b < nb; b++)                                                 \
                        row[b] = r[u][b];                                                        \
            }                                                                                    \
        }                                                                                        \
    }
    /* S x S input tiles (S >= 4, dilation 1): d[(i*S + j)*WG_CH + u] = src[u][i*rs + j] */
    #define WG_GATHER4T(NAME, T, V, MASK)                                                        \
    static inline void NAME(const T* const* src, Py_ssize_t rs, int S, T* d) {                  \
        for (int i = 0; i < S; i++)                                                              \
            for (int j0 = 0; j0 < S; j0 += 4) {                                                  \
                int j = j0 + 4 <= S ? j0 : S - 4;  /* S = 6: columns 0-3, then 2-5 */            \
                V b0 = WG_LD(V, src[0] + i * rs + j), b1 = WG_LD(V, src[1] + i * rs + j);        \
                V b2 = WG_LD(V, src[2] + i * rs + j), b3 = WG_LD(V, src[3] + i * rs + j);        \
                V r0, r1, r2, r3;                                                                \
                WG_T4(V, MASK, b0, b1, b2, b3, r0, r1, r2, r3);                                  \
                WG_ST(V, d + (i * S + j) * WG_CH, r0);                                           \
                WG_ST(V, d + (i * S + j + 1) * WG_CH, r1);                                       \
                WG_ST(V, d + (i * S + j + 2) * WG_CH, r2);                                       \
                WG_ST(V, d + (i * S + j + 3) * WG_CH, r3);                                       \
            }                                                                                    \
    }
    /* S x S tiles u < 4 whose columns are consecutive in the image (tile u at src + u):
       d[(i*S + j)*WG_CH + u] = src[i*rs + j*cs + u] */
    #define WG_GATHER4C(NAME, T, V)                                                              \
    static inline void NAME(const T* src, Py_ssize_t rs, Py_ssize_t cs, int S, T* d) {          \
        for (int i = 0; i < S; i++)                                                              \
            for (int j = 0; j < S; j++)                                                          \
                WG_ST(V, d + (i * S + j) * WG_CH, WG_LD(V, src + i * rs + j * cs));              \
    }
    /* m x m output tiles u < 4 whose columns are consecutive in the image (tile u at y0 + u):
       y0[a*rs + b*cs + u] = out[(a*m + b)*WG_CH + u] */
    #define WG_SCATTER4C(NAME, T, V)                                                             \
    static inline void NAME(const T* out, int m, T* y0, Py_ssize_t rs, Py_ssize_t cs) {         \
        for (int a = 0; a < m; a++)                                                              \
            for (int b = 0; b < m; b++)                                                          \
                WG_ST(V, y0 + a * rs + b * cs, WG_LD(V, out + (a * m + b) * WG_CH));             \
    }
    /* Column dilation 2: neighbouring tiles sit on the two neighbouring sub-grids, so four
       tiles of a chunk are two pairs, each pair's rows interleaved in 2S consecutive columns
       (tile u + 1 at src[u] + 1).  Moved as 2-element (8- or 16-byte) halves of 4-lane vectors:
       tile u's element j is column 2j, its partner's 2j + 1, side by side in both layouts.
       S x S input tiles (S even): d[(i*S + j)*WG_CH + u] = src[u / 2][i*rs + 2j + u % 2] */
    #define WG_GATHER2P(NAME, T, V, MASK)                                                        \
    static inline void NAME(const T* const* src, Py_ssize_t rs, int S, T* d) {                  \
        for (int i = 0; i < S; i++)                                                              \
            for (int q = 0; q < S; q += 2) {                                                     \
                V a = WG_LD(V, src[0] + i * rs + 2 * q), b = WG_LD(V, src[1] + i * rs + 2 * q);  \
                WG_ST(V, d + (i * S + q) * WG_CH, __builtin_shuffle(a, b, (MASK){0, 1, 4, 5}));  \
                WG_ST(V, d + (i * S + q + 1) * WG_CH,                                            \
                      __builtin_shuffle(a, b, (MASK){2, 3, 6, 7}));                              \
            }                                                                                    \
    }
    /* m x m output tiles (m even), the inverse: y0[u / 2][a*rs + 2b + u % 2] =
       out[(a*m + b)*WG_CH + u], each 4-lane vector written by STORE */
    #define WG_SCATTER2P(NAME, T, V, MASK, STORE)                                                \
    static inline void NAME(const T* out, int m, T* const* y0, Py_ssize_t rs) {                 \
        for (int a = 0; a < m; a++)                                                              \
            for (int b = 0; b < m; b += 2) {                                                     \
                V o0 = WG_LD(V, out + (a * m + b) * WG_CH);                                      \
                V o1 = WG_LD(V, out + (a * m + b + 1) * WG_CH);                                  \
                STORE(V, y0[0] + a * rs + 2 * b, __builtin_shuffle(o0, o1, (MASK){0, 1, 4, 5})); \
                STORE(V, y0[1] + a * rs + 2 * b, __builtin_shuffle(o0, o1, (MASK){2, 3, 6, 7})); \
            }                                                                                    \
    }
    /* dst[t*ld + c] = src[c*ss + t] for c < R, t < n: 4x4 blocks transposed in registers
       (WG_T4), scalar moves for the edges (the weight gradient's V points) */
    #define WG_TRANSPOSE(NAME, T, V, MASK)                                                       \
    static void NAME(const T* src, Py_ssize_t ss, Py_ssize_t R, Py_ssize_t n, T* dst,           \
                     Py_ssize_t ld) {                                                            \
        Py_ssize_t R4 = R - R % 4, n4 = n - n % 4;                                               \
        for (Py_ssize_t c = 0; c < R4; c += 4) {                                                 \
            const T* s = src + c * ss;                                                           \
            for (Py_ssize_t t = 0; t < n4; t += 4) {                                             \
                V b0 = WG_LD(V, s + t), b1 = WG_LD(V, s + ss + t);                               \
                V b2 = WG_LD(V, s + 2 * ss + t), b3 = WG_LD(V, s + 3 * ss + t);                  \
                V r0, r1, r2, r3;                                                                \
                WG_T4(V, MASK, b0, b1, b2, b3, r0, r1, r2, r3);                                  \
                WG_ST(V, dst + t * ld + c, r0); WG_ST(V, dst + (t + 1) * ld + c, r1);            \
                WG_ST(V, dst + (t + 2) * ld + c, r2); WG_ST(V, dst + (t + 3) * ld + c, r3);      \
            }                                                                                    \
            for (Py_ssize_t t = n4; t < n; t++)                                                  \
                for (int u = 0; u < 4; u++)                                                      \
                    dst[t * ld + c + u] = s[u * ss + t];                                         \
        }                                                                                        \
        for (Py_ssize_t c = R4; c < R; c++)                                                      \
            for (Py_ssize_t t = 0; t < n; t++)                                                   \
                dst[t * ld + c] = src[c * ss + t];                                               \
    }
    WG_TRANSPOSE(wg_transpose_f, float, wg_v4f, wg_m4i)
    WG_TRANSPOSE(wg_transpose_d, double, wg_v4d, wg_m4l)
    WG_GATHER2P(wg_gather2p_f, float, wg_v4f, wg_m4i)
    WG_GATHER2P(wg_gather2p_d, double, wg_v4d, wg_m4l)
    WG_SCATTER2P(wg_scatter2p_f, float, wg_v4f, wg_m4i, WG_ST)
    WG_SCATTER2P(wg_scatter2p_d, double, wg_v4d, wg_m4l, WG_ST)
    WG_SCATTER4T(wg_scatter4t_f, float, wg_v4f, wg_m4i, WG_ST)
    WG_SCATTER4T(wg_scatter4t_d, double, wg_v4d, wg_m4l, WG_ST)
    WG_SCATTER4T_CLIP(wg_scatter4t_clip_f, float, wg_v4f, wg_m4i)
    WG_SCATTER4T_CLIP(wg_scatter4t_clip_d, double, wg_v4d, wg_m4l)
    /* The same by non-temporal stores (no read for ownership of the lines), for four tiles side
       by side whose rows start on a 64-byte line, so that each row's 16 outputs fill one line;
       the caller ends with wg_sfence */
    #include <immintrin.h>
    #define WG_ST_NT(V, p, v) _mm_stream_ps((p), (__m128)(v))
    #if defined(__AVX512F__)
    /* The same with one 64-byte line per output row: the four tiles' rows a (4 x 4 values)
       inserted into one 16-lane register, put in row order by one permutation idx and written
       by one non-temporal store to y + a*rs (instead of a 4x4 transpose in 8 shuffles and four
       16-byte stores per row). */
    static inline void wg_stream_rows4_f(const float* out, __m512i idx, float* y, Py_ssize_t rs) {
        for (int a = 0; a < 4; a++) {
            __m512 z = _mm512_castps128_ps512(_mm_loadu_ps(out + (4 * a) * WG_CH));
            z = _mm512_insertf32x4(z, _mm_loadu_ps(out + (4 * a + 1) * WG_CH), 1);
            z = _mm512_insertf32x4(z, _mm_loadu_ps(out + (4 * a + 2) * WG_CH), 2);
            z = _mm512_insertf32x4(z, _mm_loadu_ps(out + (4 * a + 3) * WG_CH), 3);
            _mm512_stream_ps(y + a * rs, _mm512_permutexvar_ps(idx, z));
        }
    }
    static inline void wg_scatter4t_nt_f(const float* out, float* y, const Py_ssize_t* off,
                                         Py_ssize_t rs) {
        /* lane 4u + b <- lane 4b + u */
        wg_stream_rows4_f(out, _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7,
                                                 11, 15), y + off[0], rs);
    }
    /* Column dilation 2, four 4x4 tiles as two pairs 8 columns apart (wg_scatter2p's pairs at
       y0[0] and y0[1] = y0[0] + 8): each output row's 16 values fill one line, lane 2b + u of
       pair 0 and 8 + 2b + u of pair 1 from value b of tiles u and 2 + u. */
    static inline void wg_scatter2p_nt_f(const float* out, int m, float* const* y0,
                                         Py_ssize_t rs) {
        /* lane 2b + u <- 4b + u, lane 8 + 2b + u <- 4b + 2 + u (m = 4) */
        wg_stream_rows4_f(out, _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11,
                                                 14, 15), y0[0], rs);
    }
    #else
    WG_SCATTER4T(wg_scatter4t_nt_f, float, wg_v4f, wg_m4i, WG_ST_NT)
    WG_SCATTER2P(wg_scatter2p_nt_f, float, wg_v4f, wg_m4i, WG_ST_NT)
    #endif
    #define wg_sfence() _mm_sfence()
    WG_GATHER4T(wg_gather4t_f, float, wg_v4f, wg_m4i)
    WG_GATHER4T(wg_gather4t_d, double, wg_v4d, wg_m4l)
    WG_GATHER4C(wg_gather4c_f, float, wg_v4f)
    WG_GATHER4C(wg_gather4c_d, double, wg_v4d)
    WG_SCATTER4C(wg_scatter4c_f, float, wg_v4f)
    WG_SCATTER4C(wg_scatter4c_d, double, wg_v4d)
    /* Eight 4x4 tiles side by side (dilation 1, tile u at src + 4u), float32:
       d[(i*4 + j)*WG_CH + u] = src[i*rs + 4u + j].  Per row, the 32 floats in four vectors (two
       tiles each, one per 128-bit half), a 4x4 transpose within the halves, and one permute that
       puts the tiles in order (t0 t2 t4 t6 t1 t3 t5 t7 -> t0 .. t7): 20 vector operations per row
       against 32 for two four-tile transposes (the weight gradients' dy tiles). */
    typedef int wg_m8i __attribute__((vector_size(32)));
    /* one row: o[j][u] = s[4u + j] */
    static inline __attribute__((always_inline)) void wg_row8t4_f(const float* s, wg_vf* o) {
        wg_vf a = WG_LD(wg_vf, s), b = WG_LD(wg_vf, s + 8);
        wg_vf c = WG_LD(wg_vf, s + 16), e = WG_LD(wg_vf, s + 24);
        wg_vf t0 = __builtin_shuffle(a, b, (wg_m8i){0, 8, 1, 9, 4, 12, 5, 13});
        wg_vf t1 = __builtin_shuffle(a, b, (wg_m8i){2, 10, 3, 11, 6, 14, 7, 15});
        wg_vf t2 = __builtin_shuffle(c, e, (wg_m8i){0, 8, 1, 9, 4, 12, 5, 13});
        wg_vf t3 = __builtin_shuffle(c, e, (wg_m8i){2, 10, 3, 11, 6, 14, 7, 15});
        wg_vf r[4];
        r[0] = __builtin_shuffle(t0, t2, (wg_m8i){0, 1, 8, 9, 4, 5, 12, 13});
        r[1] = __builtin_shuffle(t0, t2, (wg_m8i){2, 3, 10, 11, 6, 7, 14, 15});
        r[2] = __builtin_shuffle(t1, t3, (wg_m8i){0, 1, 8, 9, 4, 5, 12, 13});
        r[3] = __builtin_shuffle(t1, t3, (wg_m8i){2, 3, 10, 11, 6, 7, 14, 15});
        for (int j = 0; j < 4; j++)
            o[j] = __builtin_shuffle(r[j], (wg_m8i){0, 4, 1, 5, 2, 6, 3, 7});
    }
    static inline void wg_gather8t4_f(const float* src, Py_ssize_t rs, float* d) {
        for (int i = 0; i < 4; i++) {
            wg_vf o[4];
            wg_row8t4_f(src + i * rs, o);
            for (int j = 0; j < 4; j++)
                WG_ST(wg_vf, d + (i * 4 + j) * WG_CH, o[j]);
        }
    }
    /* out[j] = row[j] for j0 <= j < j1, 0 for the other j < ls (x86-64-v3 build only:
       WG_STRIP_ROW): one row of a zero-padded strip (``gather_strips``) by 8-lane loads masked
       to [j0, j1), which never fault and read zeros in the lanes left out.  Writes whole
       vectors: up to 7 elements past ls.  (As loops, GCC made them calls of memset, memcpy and
       memset: for the rows of 20 of a 15x15 map padded by 2, 5.5% of a (64,64,15,15) 5x5
       forward under perf.) */
    #if defined(__AVX2__) && !defined(__AVX512F__)
    #define WG_STRIP_ROW 1
    static inline void wg_strip_row_f(float* out, const float* row, Py_ssize_t j0, Py_ssize_t j1,
                                      Py_ssize_t ls) {
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i lo = _mm256_set1_epi32((int)j0 - 1), hi = _mm256_set1_epi32((int)j1);
        for (Py_ssize_t j = 0; j < ls; j += 8) {
            __m256i col = _mm256_add_epi32(iota, _mm256_set1_epi32((int)j));
            __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(col, lo), _mm256_cmpgt_epi32(hi, col));
            _mm256_storeu_ps(out + j, _mm256_maskload_ps(row + j, m));
        }
    }
    #else
    #define WG_STRIP_ROW 0
    static inline void wg_strip_row_f(float* out, const float* row, Py_ssize_t j0, Py_ssize_t j1,
                                      Py_ssize_t ls) {
        (void)out; (void)row; (void)j0; (void)j1; (void)ls;
        __builtin_trap();  /* never called: WG_STRIP_ROW is 0 */
    }
    #endif
    /* a hint to load the line at p (never faults, even past the end of an array) */
    #define wg_prefetch(p) __builtin_prefetch((const void*)(p))
    /* the same, for a line about to be written (prefetchw: fetched for ownership) */
    #define wg_prefetchw(p) __builtin_prefetch((const void*)(p), 1)
    """
    void wg_bt6_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_bt6_d(const double* s, Py_ssize_t ss, double* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_bt8_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_bt8_d(const double* s, Py_ssize_t ss, double* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_at46_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n,
                   float bias, int epi) nogil
    void wg_at46_d(const double* s, Py_ssize_t ss, double* o, Py_ssize_t os, Py_ssize_t n,
                   double bias, int epi) nogil
    void wg_at48_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n,
                   float bias, int epi) nogil
    void wg_at48_d(const double* s, Py_ssize_t ss, double* o, Py_ssize_t os, Py_ssize_t n,
                   double bias, int epi) nogil
    void wg_bt6t_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_bt6t_d(const double* s, Py_ssize_t ss, double* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_bt8t_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_bt8t_d(const double* s, Py_ssize_t ss, double* o, Py_ssize_t os, Py_ssize_t n) nogil
    void wg_pointwise_f(const float* u, const float* v, Py_ssize_t vs, Py_ssize_t ps,
                        Py_ssize_t C, Py_ssize_t P, float* o) nogil
    void wg_pointwise_d(const double* u, const double* v, Py_ssize_t vs, Py_ssize_t ps,
                        Py_ssize_t C, Py_ssize_t P, double* o) nogil
    void wg_fused_at_f(const float* u, const float* u2, const float* v, Py_ssize_t vs,
                       Py_ssize_t ps, Py_ssize_t C, int A, float* tmp, float* tmp2) nogil
    void wg_at48w_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n,
                    float bias, int epi) nogil
    void wg_at46w_f(const float* s, Py_ssize_t ss, float* o, Py_ssize_t os, Py_ssize_t n,
                    float bias, int epi) nogil
    void wg_fused_at_d(const double* u, const double* u2, const double* v, Py_ssize_t vs,
                       Py_ssize_t ps, Py_ssize_t C, int A, double* tmp, double* tmp2) nogil
    enum: WG_FUSED_C
    enum: WG_LANES_WF
    void wg_scatter4t_f(const float* out, float* y, const Py_ssize_t* off, Py_ssize_t rs) nogil
    void wg_scatter4t_d(const double* out, double* y, const Py_ssize_t* off, Py_ssize_t rs) nogil
    void wg_scatter4t_clip_f(const float* out, float* y, const Py_ssize_t* off, Py_ssize_t rs,
                             const unsigned char* clip) nogil
    void wg_scatter4t_clip_d(const double* out, double* y, const Py_ssize_t* off, Py_ssize_t rs,
                             const unsigned char* clip) nogil
    void wg_scatter4t_nt_f(const float* out, float* y, const Py_ssize_t* off,
                           Py_ssize_t rs) nogil
    void wg_scatter2p_nt_f(const float* out, int m, float* const* y0, Py_ssize_t rs) nogil
    void wg_sfence() nogil
    void wg_gather4t_f(const float* const* src, Py_ssize_t rs, int S, float* d) nogil
    void wg_gather4t_d(const double* const* src, Py_ssize_t rs, int S, double* d) nogil
    void wg_gather4c_f(const float* src, Py_ssize_t rs, Py_ssize_t cs, int S, float* d) nogil
    void wg_gather4c_d(const double* src, Py_ssize_t rs, Py_ssize_t cs, int S, double* d) nogil
    void wg_scatter4c_f(const float* out, int m, float* y0, Py_ssize_t rs, Py_ssize_t cs) nogil
    void wg_scatter4c_d(const double* out, int m, double* y0, Py_ssize_t rs, Py_ssize_t cs) nogil
    void wg_gather8t4_f(const float* src, Py_ssize_t rs, float* d) nogil
    enum: WG_STRIP_ROW
    void wg_strip_row_f(float* out, const float* row, Py_ssize_t j0, Py_ssize_t j1,
                        Py_ssize_t ls) nogil
    void wg_transpose_f(const float* src, Py_ssize_t ss, Py_ssize_t R, Py_ssize_t n, float* dst,
                        Py_ssize_t ld) nogil
    void wg_transpose_d(const double* src, Py_ssize_t ss, Py_ssize_t R, Py_ssize_t n,
                        double* dst, Py_ssize_t ld) nogil
    void wg_gather2p_f(const float* const* src, Py_ssize_t rs, int S, float* d) nogil
    void wg_gather2p_d(const double* const* src, Py_ssize_t rs, int S, double* d) nogil
    void wg_scatter2p_f(const float* out, int m, float* const* y0, Py_ssize_t rs) nogil
    void wg_scatter2p_d(const double* out, int m, double* const* y0, Py_ssize_t rs) nogil
    void wg_prefetch(const void* p) nogil
    void wg_prefetchw(const void* p) nogil


cdef extern from *:
    # wg_gather<S>_<f|d>: one S x S tile into a chunk, d[(i*S + j)*WG_CH] = src[i*rs + j*cs]; with
    # S fixed the copy is 2*S^2 straight-line moves, no loop over a run-time size (with the
    # per-row edge ranges below, the gather's share of a (8,64,56,56) forward fell from 25% to
    # 20% under perf).  WG_CH must equal CH (checked at import).
    """
    #define WG_GATHER(NAME, T, S)                                                          \
    static inline void NAME(const T* src, Py_ssize_t rs, Py_ssize_t cs, T* d) {            \
        for (int i = 0; i < S; i++)                                                        \
            for (int j = 0; j < S; j++)                                                    \
                d[(i * S + j) * WG_CH] = src[i * rs + j * cs];                             \
    }
    WG_GATHER(wg_gather4_f, float, 4)
    WG_GATHER(wg_gather4_d, double, 4)
    WG_GATHER(wg_gather6_f, float, 6)
    WG_GATHER(wg_gather6_d, double, 6)
    WG_GATHER(wg_gather8_f, float, 8)
    WG_GATHER(wg_gather8_d, double, 8)
    """
    enum: WG_CH
    void wg_gather4_f(const float* src, Py_ssize_t rs, Py_ssize_t cs, float* d) nogil
    void wg_gather4_d(const double* src, Py_ssize_t rs, Py_ssize_t cs, double* d) nogil
    void wg_gather6_f(const float* src, Py_ssize_t rs, Py_ssize_t cs, float* d) nogil
    void wg_gather6_d(const double* src, Py_ssize_t rs, Py_ssize_t cs, double* d) nogil
    void wg_gather8_f(const float* src, Py_ssize_t rs, Py_ssize_t cs, float* d) nogil
    void wg_gather8_d(const double* src, Py_ssize_t rs, Py_ssize_t cs, double* d) nogil

if WG_CH != CH:
    raise ImportError(f"_winograd: the C gather's chunk width {WG_CH} differs from CH = {CH}")


cdef inline bint gather_fixed(const floating* src, Py_ssize_t rs, Py_ssize_t cs, Py_ssize_t size,
                              floating* d) noexcept nogil:
    # One interior tile by the straight-line copy of its size; False for sizes without one.
    if size == 6:
        if floating is float:
            wg_gather6_f(src, rs, cs, d)
        else:
            wg_gather6_d(src, rs, cs, d)
    elif size == 4:
        if floating is float:
            wg_gather4_f(src, rs, cs, d)
        else:
            wg_gather4_d(src, rs, cs, d)
    elif size == 8:
        if floating is float:
            wg_gather8_f(src, rs, cs, d)
        else:
            wg_gather8_d(src, rs, cs, d)
    else:
        return False
    return True


cdef inline void tx1d(int kind, const floating* T, Py_ssize_t rows, Py_ssize_t cols,
                      const floating* s, Py_ssize_t ss, floating* o, Py_ssize_t os,
                      floating bias=0, int epi=EPI_NONE) noexcept nogil:
    # o[a*os + t] = sum_i T[a, i] s[i*ss + t] for a < rows, t < CH; T (rows, cols) row-major;
    # then the epilogue epi (with bias) on each, as ``chunk_epilogue``
    cdef Py_ssize_t a
    if kind == BT6:
        if floating is float:
            wg_bt6_f(s, ss, o, os, CH)
        else:
            wg_bt6_d(s, ss, o, os, CH)
    elif kind == BT8:
        if floating is float:
            wg_bt8_f(s, ss, o, os, CH)
        else:
            wg_bt8_d(s, ss, o, os, CH)
    elif kind == AT46:
        if floating is float:
            wg_at46_f(s, ss, o, os, CH, bias, epi)
        else:
            wg_at46_d(s, ss, o, os, CH, bias, epi)
        return
    elif kind == AT48:
        if floating is float:
            wg_at48_f(s, ss, o, os, CH, bias, epi)
        else:
            wg_at48_d(s, ss, o, os, CH, bias, epi)
        return
    elif kind == BT8T:
        if floating is float:
            wg_bt8t_f(s, ss, o, os, CH)
        else:
            wg_bt8t_d(s, ss, o, os, CH)
    elif kind == BT6T:
        if floating is float:
            wg_bt6t_f(s, ss, o, os, CH)
        else:
            wg_bt6t_d(s, ss, o, os, CH)
    else:
        for a in range(rows):
            lincomb(o + a * os, T + a * cols, cols, s, ss, CH)
    if epi != EPI_NONE:
        for a in range(rows):
            chunk_epilogue(o + a * os, CH, bias, epi == EPI_RELU)


cdef inline void pointwise_chunk(const floating* u, const floating* v, Py_ssize_t vs,
                                 Py_ssize_t ps, Py_ssize_t C, Py_ssize_t P,
                                 floating* o) noexcept nogil:
    # o[p*CH + s] = sum_c u[p*C + c] * v[c*vs + p*ps + s], p < P, s < CH
    if floating is float:
        wg_pointwise_f(u, v, vs, ps, C, P, o)
    else:
        wg_pointwise_d(u, v, vs, ps, C, P, o)


cdef void transform_chunk(int kind, const floating* T, Py_ssize_t rows, Py_ssize_t cols,
                          const floating* d, Py_ssize_t d_stride, floating* out,
                          Py_ssize_t out_stride, floating bias=0,
                          int epi=EPI_NONE) noexcept nogil:
    # out[(a*rows + b)*out_stride + t] = (T d T^T)[a, b] for the CH tiles t of a chunk, where
    # d[(i*cols + j)*d_stride + t] holds the cols x cols tiles; T (rows, cols) row-major; then
    # the epilogue epi with bias (output transforms).
    cdef floating[CHUNK] tmp
    cdef Py_ssize_t a, j
    for j in range(cols):       # tmp[a, j] = sum_i T[a, i] d[i, j]
        tx1d(kind, T, rows, cols, d + j * d_stride, cols * d_stride, tmp + j * CH, cols * CH)
    for a in range(rows):       # out[a, b] = sum_j T[b, j] tmp[a, j]
        tx1d(kind, T, rows, cols, tmp + a * cols * CH, CH, out + a * rows * out_stride,
             out_stride, bias, epi)


cdef inline void fused_second_pass(int kind, const floating* AT, Py_ssize_t m, Py_ssize_t alpha,
                                   const floating* tmp, floating* out, floating bias,
                                   int epi) noexcept nogil:
    # out[a, b] = sum_j AT[b, j] tmp[a, j] for the CH tiles of a chunk, then the epilogue epi
    cdef Py_ssize_t a
    for a in range(m):
        if floating is float and kind == AT48:
            wg_at48w_f(tmp + a * alpha * CH, CH, out + a * m * CH, CH, CH, bias, epi)
        elif floating is float:
            wg_at46w_f(tmp + a * alpha * CH, CH, out + a * m * CH, CH, CH, bias, epi)
        else:
            tx1d(kind, AT, m, alpha, tmp + a * alpha * CH, CH, out + a * m * CH, CH, bias, epi)


cdef void fused_output_chunk(int kind, const floating* AT, Py_ssize_t m, Py_ssize_t alpha,
                             const floating* u, const floating* u2, const floating* v,
                             Py_ssize_t vs, Py_ssize_t ps, Py_ssize_t C, floating* e,
                             floating* out, floating* out2, floating bias, floating bias2,
                             int epi, int epi2) noexcept nogil:
    # out[(a*m + b)*CH + s] = (A^T M A)[a, b] for one filter (weights u, (alpha^2, C)) and the CH
    # tiles s of a chunk, where M[p] = sum_c u[p*C + c] v[c*vs + p*ps + s] (the fused stage); the
    # same into out2 for a second filter u2 unless NULL.  For A^T of F(4,3) and F(4,5) and at
    # most WG_FUSED_C channels the products go straight into the first pass (``wg_fused_at``:
    # each product a chain of C dependent FMAs, and only 2 * HV products in flight per filter;
    # with 64 channels the input gradient of a (64,3,32,32)->64 layer ran 1.5x slower than
    # through e), both filters in one pass over v; otherwise through e (alpha^2 * CH elements)
    # and ``transform_chunk``, filter by filter.  Each filter's epilogue (epi, bias; epi2,
    # bias2) is applied in its last pass.
    cdef floating[CHUNK] tmp
    cdef floating[CHUNK] tmp2
    if (kind == AT46 or kind == AT48) and C <= WG_FUSED_C:
        if floating is float:
            wg_fused_at_f(u, u2, v, vs, ps, C, <int> alpha, tmp, tmp2)
        else:
            wg_fused_at_d(u, u2, v, vs, ps, C, <int> alpha, tmp, tmp2)
        fused_second_pass(kind, AT, m, alpha, tmp, out, bias, epi)
        if u2 != NULL:
            fused_second_pass(kind, AT, m, alpha, tmp2, out2, bias2, epi2)
    else:
        pointwise_chunk(u, v, vs, ps, C, alpha * alpha, e)
        transform_chunk(kind, AT, m, alpha, e, CH, out, CH, bias, epi)
        if u2 != NULL:
            pointwise_chunk(u2, v, vs, ps, C, alpha * alpha, e)
            transform_chunk(kind, AT, m, alpha, e, CH, out2, CH, bias2, epi2)


cdef void tile_positions(const Py_ssize_t* oh0, Py_ssize_t n_rows, const Py_ssize_t* ow0,
                         Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t ph,
                         Py_ssize_t pw, Py_ssize_t* tn, Py_ssize_t* tih,
                         Py_ssize_t* tiw) noexcept nogil:
    # image, first input row and first input column of the tiles t0 .. t0 + nt - 1 (computed once
    # per block: three integer divisions per tile and channel cost as much as the copy)
    cdef Py_ssize_t t, tile
    for t in range(nt):
        tile = t0 + t
        tn[t] = tile // (n_rows * n_cols)
        tih[t] = oh0[(tile // n_cols) % n_rows] - ph
        tiw[t] = ow0[tile % n_cols] - pw


cdef inline bint tile_inside(Py_ssize_t ih, Py_ssize_t iw, Py_ssize_t size, Py_ssize_t dh,
                             Py_ssize_t dw, Py_ssize_t H, Py_ssize_t W) noexcept nogil:
    # the size x size tile from (ih, iw) with steps (dh, dw) lies wholly inside an H x W map
    return ih >= 0 and iw >= 0 and ih + (size - 1) * dh < H and iw + (size - 1) * dw < W


cdef inline void inside_columns(Py_ssize_t iw, Py_ssize_t size, Py_ssize_t dw, Py_ssize_t W,
                                Py_ssize_t* j0, Py_ssize_t* j1) noexcept nogil:
    # the columns j0 <= j < j1 (j0 <= j1) of a tile from column iw with step dw that lie inside
    # a map of width W
    j0[0] = 0 if iw >= 0 else min(size, (-iw + dw - 1) // dw)
    j1[0] = max(j0[0], 0 if iw >= W else min(size, (W - 1 - iw) // dw + 1))


cdef inline void gather_tile(const floating* plane, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t ih, Py_ssize_t iw, Py_ssize_t size, Py_ssize_t dh,
                             Py_ssize_t dw, floating* d) noexcept nogil:
    # d[(i*size + j)*CH] = plane[ih + i*dh, iw + j*dw] (0 outside the H x W plane)
    cdef Py_ssize_t i, j, j0, j1
    cdef const floating* row
    if tile_inside(ih, iw, size, dh, dw, H, W):
        for i in range(size):  # the tile's rows in the next plane (see gather_tiles)
            row = plane + H * W + (ih + i * dh) * W + iw
            wg_prefetch(row)
            wg_prefetch(row + (size - 1) * dw)
        if gather_fixed(plane + ih * W + iw, dh * W, dw, size, d):
            return
        for i in range(size):
            row = plane + (ih + i * dh) * W + iw
            for j in range(size):
                d[(i * size + j) * CH] = row[j * dw]
        return
    # a tile over the edge: its columns j0 <= j < j1 lie inside the image (one test per tile
    # and row, not per element: per-element tests mispredicted on the padded border)
    inside_columns(iw, size, dw, W, &j0, &j1)
    for i in range(size):
        if 0 <= ih + i * dh < H:
            row = plane + (ih + i * dh) * W + iw
            for j in range(j0):
                d[(i * size + j) * CH] = 0
            for j in range(j0, j1):
                d[(i * size + j) * CH] = row[j * dw]
            for j in range(j1, size):
                d[(i * size + j) * CH] = 0
        else:
            for j in range(size):
                d[(i * size + j) * CH] = 0


cdef inline void strip_tile(const floating* src, Py_ssize_t rs, Py_ssize_t cs, Py_ssize_t size,
                            floating* d) noexcept nogil:
    # d[(i*size + j)*CH] = src[i*rs + j*cs]: one tile lying wholly in a strip
    cdef Py_ssize_t i, j
    if gather_fixed(src, rs, cs, size, d):
        return
    for i in range(size):
        for j in range(size):
            d[(i * size + j) * CH] = src[i * rs + j * cs]


cdef bint gather_strips(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t c, const Py_ssize_t* tn, const Py_ssize_t* tih,
                        const Py_ssize_t* tiw, Py_ssize_t nt, Py_ssize_t size, Py_ssize_t dh,
                        Py_ssize_t dw, floating* d) noexcept nogil:
    # ``gather_tiles`` for a chunk with tiles over the image's edge.  The chunk's tiles fall into
    # segments, runs of tiles on one tile row of one image (same first input row, increasing
    # columns).  The size input rows a segment reads (steps dh), over its columns, are copied into
    # a local strip, zeros outside the image: contiguous vector copies instead of the per-element
    # edge tests of ``gather_tile``; then every tile lies inside its strip and four tiles at a
    # time move as in ``gather_tiles``.  (The edge tiles, two of the seven tiles of each row of a
    # 28x28 map padded by 1, and all of its first and last row, cost 15-20% of a 3x3 forward.)
    # Measured against the tile-by-tile edge path (2026-12, Zen 3, 2 threads, 9 interleaved
    # rounds): forward 0.86x the time on (128,64,32,32) 3x3, 0.92x on (8,64,56,56) and
    # (8,128,28,28), 0.83x on (1,64,256,256) 3x3 dilation 8 padding 8; weight gradient
    # 0.83-0.93x on four of these layers.  Only for the vector moves: with column dilation 2 or
    # 3, where tiles still move one at a time, the strips' copy gained nothing.  Returns False,
    # having written nothing, when the strips exceed STRIP elements.
    cdef floating[STRIP + 8] strip  # + 8: wg_strip_row_f writes whole vectors
    cdef Py_ssize_t[CH] seg        # segment of each tile
    cdef Py_ssize_t[CH] first      # first tile of each segment
    cdef Py_ssize_t nseg = 0, t, s, u, i, j, j0, j1, ls = 0, ih, iw0, step
    cdef const floating* plane
    cdef const floating* row
    cdef floating* out
    cdef const floating* src[4]
    cdef bint transpose = dw == 1 and size >= 4
    for t in range(nt):
        if t == 0 or tn[t] != tn[t - 1] or tih[t] != tih[t - 1] or tiw[t] <= tiw[t - 1]:
            first[nseg] = t
            nseg += 1
        seg[t] = nseg - 1
    for s in range(nseg):          # ls: the widest segment's columns, the strips' row stride
        t = (first[s + 1] if s + 1 < nseg else nt) - 1
        ls = max(ls, tiw[t] - tiw[first[s]] + (size - 1) * dw + 1)
    if nseg * size * ls > STRIP:
        return False
    step = 64 // sizeof(floating)
    for s in range(nseg):
        t = first[s]
        iw0 = tiw[t]
        plane = x + (tn[t] * C + c) * H * W
        j0 = min(ls, max(0, -iw0))         # the strip's columns j0 <= j < j1 are in the image
        j1 = max(j0, min(ls, W - iw0))
        for i in range(size):
            out = strip + (s * size + i) * ls
            ih = tih[t] + i * dh
            if 0 <= ih < H:
                row = plane + ih * W + iw0
                if floating is float and WG_STRIP_ROW:
                    wg_strip_row_f(out, row, j0, j1, ls)
                else:
                    for j in range(j0):
                        out[j] = 0
                    for j in range(j0, j1):
                        out[j] = row[j]
                    for j in range(j1, ls):
                        out[j] = 0
                j = j0                     # the same row of the next channel (see gather_tiles)
                while j < j1:
                    wg_prefetch(row + H * W + j)
                    j += step
                wg_prefetch(row + H * W + j1 - 1)
            else:
                for j in range(ls):
                    out[j] = 0
    t = 0
    if transpose or dw >= 4:
        t = nt - nt % 4
    for j in range(0, t, 4):
        for u in range(4):
            s = seg[j + u]
            src[u] = strip + s * size * ls + tiw[j + u] - tiw[first[s]]
        if transpose:
            if floating is float:
                wg_gather4t_f(src, ls, <int> size, d + j)
            else:
                wg_gather4t_d(src, ls, <int> size, d + j)
        elif src[1] == src[0] + 1 and src[2] == src[0] + 2 and src[3] == src[0] + 3:
            if floating is float:
                wg_gather4c_f(src[0], ls, dw, <int> size, d + j)
            else:
                wg_gather4c_d(src[0], ls, dw, <int> size, d + j)
        else:
            for u in range(4):
                strip_tile(src[u], ls, dw, size, d + j + u)
    for j in range(t, nt):
        s = seg[j]
        strip_tile(strip + s * size * ls + tiw[j] - tiw[first[s]], ls, dw, size, d + j)
    return True


cdef extern from *:
    # wg_gather_runs4_f (x86-64-v4 build only: WG_RUNS4): a float32 chunk of S x S tiles (S = 6
    # or 8; column step 1) in pieces, runs of up to eight tiles side by side, four columns apart,
    # the layout of every F(4, r) tile grid.  Per piece and tile row, four masked loads (columns
    # 0-31 and 4-35 of the piece) and, per tile column j, one two-register permutation (lane u
    # <- column 4u + j) blended into the chunk's row: 2 S shuffles per row of a piece, against 8
    # per 4x4 transpose of four tiles (``wg_gather4t``: 6 S for six-column tiles).  The loads'
    # masks leave out the columns outside the map, which read as zeros (masked-off lanes never
    # fault), and rows outside it are skipped: edge tiles need no zero-padded strips.  (An
    # x86-64-v3 twin, the chunk as two eight-lane halves, each piece over a half by eight loads,
    # masked where they leave the map, and the two transposes of wg_row8t4_f: 1.00-1.04x on the
    # (8,64,56,56) 3x3 forward and gradients, 0.975x on (128,64,32,32), with whole loads where
    # the columns allow 0.99-1.00x (2-core Zen 3, in-process A/B, 2026-12-04): not kept.)
    """
    #if defined(__AVX512F__)
    #define WG_RUNS4 1
    static inline __mmask16 wg_lane_range(Py_ssize_t a, Py_ssize_t b) {
        /* lanes a <= l < b of 16 */
        if (a < 0) a = 0;
        if (b > 16) b = 16;
        if (a >= b) return 0;
        return (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u));
    }
    /* piece p: cnt[p] tiles from column iw[p] of rows ih[p] + i*dh of the plane base[p]
       (H x W), in lanes lane0[p] ..; d[(i*S + j)*WG_CH + lane0[p] + u] = row[iw[p] + 4u + j],
       zero outside the map and in lanes of no piece; the same lines of the plane next elements
       further are prefetched */
    static inline __attribute__((always_inline)) void wg_gather_runs4_s(
            const float* const* base, const Py_ssize_t* ih, const Py_ssize_t* iw,
            const int* lane0, const int* cnt, int pieces, Py_ssize_t H, Py_ssize_t W,
            Py_ssize_t dh, Py_ssize_t next, float* d, int S) {
        static const int off[4] = {0, 16, 4, 20};
        __mmask16 m[WG_CH][4], lanes[WG_CH];
        __m512i idx[WG_CH];
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                               14, 15);
        for (int p = 0; p < pieces; p++) {
            Py_ssize_t span = 4 * (cnt[p] - 1) + S;
            Py_ssize_t lo = iw[p] < 0 ? -iw[p] : 0, hi = W - iw[p] < span ? W - iw[p] : span;
            for (int q = 0; q < 4; q++)
                m[p][q] = wg_lane_range(lo - off[q], hi - off[q]);
            lanes[p] = (__mmask16)(((1u << cnt[p]) - 1u) << lane0[p]);
            idx[p] = _mm512_slli_epi32(_mm512_sub_epi32(iota, _mm512_set1_epi32(lane0[p])), 2);
        }
        for (int i = 0; i < S; i++) {
            __m512 r[8];
            for (int j = 0; j < S; j++)
                r[j] = _mm512_setzero_ps();
            for (int p = 0; p < pieces; p++) {
                Py_ssize_t row = ih[p] + i * dh;
                if (row < 0 || row >= H)
                    continue;
                const float* s = base[p] + row * W + iw[p];
                __builtin_prefetch(s + next);
                __builtin_prefetch(s + next + 16);
                __builtin_prefetch(s + next + 4 * (cnt[p] - 1) + S - 1);
                __m512 a0 = _mm512_maskz_loadu_ps(m[p][0], s);
                __m512 a1 = _mm512_maskz_loadu_ps(m[p][1], s + 16);
                __m512 b0 = _mm512_maskz_loadu_ps(m[p][2], s + 4);
                __m512 b1 = _mm512_maskz_loadu_ps(m[p][3], s + 20);
                for (int j = 0; j < 4; j++)
                    r[j] = _mm512_mask_blend_ps(lanes[p], r[j], _mm512_permutex2var_ps(
                        a0, _mm512_add_epi32(idx[p], _mm512_set1_epi32(j)), a1));
                for (int j = 4; j < S; j++)
                    r[j] = _mm512_mask_blend_ps(lanes[p], r[j], _mm512_permutex2var_ps(
                        b0, _mm512_add_epi32(idx[p], _mm512_set1_epi32(j - 4)), b1));
            }
            for (int j = 0; j < S; j++)
                _mm512_storeu_ps(d + (i * S + j) * WG_CH, r[j]);
        }
    }
    static void wg_gather_runs4_f(const float* const* base, const Py_ssize_t* ih,
                                  const Py_ssize_t* iw, const int* lane0, const int* cnt,
                                  int pieces, Py_ssize_t H, Py_ssize_t W, Py_ssize_t dh,
                                  Py_ssize_t next, float* d, int S) {
        if (S == 6)
            wg_gather_runs4_s(base, ih, iw, lane0, cnt, pieces, H, W, dh, next, d, 6);
        else
            wg_gather_runs4_s(base, ih, iw, lane0, cnt, pieces, H, W, dh, next, d, 8);
    }
    #else
    #define WG_RUNS4 0
    static void wg_gather_runs4_f(const float* const* base, const Py_ssize_t* ih,
                                  const Py_ssize_t* iw, const int* lane0, const int* cnt,
                                  int pieces, Py_ssize_t H, Py_ssize_t W, Py_ssize_t dh,
                                  Py_ssize_t next, float* d, int S) {
        (void)base; (void)ih; (void)iw; (void)lane0; (void)cnt; (void)pieces; (void)H; (void)W;
        (void)dh; (void)next; (void)d; (void)S;
        __builtin_trap();  /* never called: WG_RUNS4 is 0 */
    }
    #endif
    """
    enum: WG_RUNS4
    void wg_gather_runs4_f(const float* const* base, const Py_ssize_t* ih, const Py_ssize_t* iw,
                           const int* lane0, const int* cnt, int pieces, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t dh, Py_ssize_t next, float* d, int S) nogil


# float32 chunks gathered by runs of tiles (``gather_runs``): the x86-64-v4 build only
RUNS_GATHER = bool(WG_RUNS4)


cdef bint gather_runs(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t c,
                      const Py_ssize_t* tn, const Py_ssize_t* tih, const Py_ssize_t* tiw,
                      Py_ssize_t nt, Py_ssize_t size, Py_ssize_t dh, floating* d) noexcept nogil:
    # ``gather_tiles`` for float32 tiles of size 6 or 8 with column step 1 in the x86-64-v4
    # build, by ``wg_gather_runs4_f``: the chunk's tiles split into pieces, runs of up to eight
    # tiles on one tile row of one image four columns apart.  Returns False, having written
    # nothing, where that does not apply or the runs are short (more pieces than half the tiles).
    # (Not the 4x4 dy tiles of the weight gradients: there, level with ``wg_gather8t4_f``, and
    # in the fused backward 0.91x as fast as its runs planned once per sub-block.)
    cdef const float* base[CH]
    cdef Py_ssize_t[CH] ih, iw
    cdef int[CH] lane0, cnt
    cdef int pieces = 0
    cdef Py_ssize_t t
    if not (floating is float and WG_RUNS4 and (size == 6 or size == 8)):
        return False
    for t in range(nt):
        if (pieces > 0 and cnt[pieces - 1] < 8 and tn[t] == tn[t - 1] and tih[t] == tih[t - 1]
                and tiw[t] == tiw[t - 1] + 4):
            cnt[pieces - 1] += 1
        else:
            base[pieces] = <const float*> x + (tn[t] * C + c) * H * W
            ih[pieces] = tih[t]
            iw[pieces] = tiw[t]
            lane0[pieces] = <int> t
            cnt[pieces] = 1
            pieces += 1
    if 2 * pieces > nt:
        return False
    wg_gather_runs4_f(base, ih, iw, lane0, cnt, pieces, H, W, dh, H * W, <float*> d, <int> size)
    return True


cdef void gather_tiles(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t c, const Py_ssize_t* tn, const Py_ssize_t* tih,
                       const Py_ssize_t* tiw, Py_ssize_t nt, Py_ssize_t size, Py_ssize_t dh,
                       Py_ssize_t dw, floating* d) noexcept nogil:
    # d[(i*size + j)*CH + t] = x[tn[t], c, tih[t] + i*dh, tiw[t] + j*dw] (0 outside), t < nt:
    # by runs of tiles (``gather_runs``) where they apply, else by ``gather_moves``.  Measured
    # (Intel Xeon with AVX-512, 2 threads, in-process A/B against gather_moves alone, 60-3000
    # pairs), forward / backward: (8,64,56,56) 3x3 1.15x / 1.11x, (8,128,28,28) 1.08x / 1.06x,
    # (128,128,16,16) 1.09x / 1.08x, (64,64,15,15) 5x5 1.10x / 1.08x, (64,3,32,32) 5x5 1.05x /
    # 1.02x, (32,96,27,27)->256 5x5 1.03x / 1.05x.  Results bit-identical.
    if dw == 1 and gather_runs(x, C, H, W, c, tn, tih, tiw, nt, size, dh, d):
        return
    gather_moves(x, C, H, W, c, tn, tih, tiw, nt, size, dh, dw, d)


cdef void gather_moves(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t c, const Py_ssize_t* tn, const Py_ssize_t* tih,
                       const Py_ssize_t* tiw, Py_ssize_t nt, Py_ssize_t size, Py_ssize_t dh,
                       Py_ssize_t dw, floating* d) noexcept nogil:
    # ``gather_tiles``' values.  Four tiles at a time by vector moves when all four lie inside
    # the image: transposed for dilation 1 (size >= 4), copied for tiles on consecutive columns
    # (column dilation >= 4); as two interleaved pairs for column dilation 2 (``wg_gather2p``,
    # even sizes); the others tile by tile.  For the first two kinds of moves, a chunk with a
    # tile over the edge is gathered from padded strips (``gather_strips``) when they fit.
    cdef Py_ssize_t t, u, i, j, t4 = 0, t8 = 0
    cdef Py_ssize_t off[4]
    cdef const floating* src[4]
    cdef bint inside, transpose = dw == 1 and size >= 4, pairs = dw == 2 and size % 2 == 0
    if transpose or dw >= 4:
        for t in range(nt):
            if not tile_inside(tih[t], tiw[t], size, dh, dw, H, W):
                if gather_strips(x, C, H, W, c, tn, tih, tiw, nt, size, dh, dw, d):
                    return
                break
    if transpose or dw >= 4 or pairs:
        t4 = nt - nt % 4
    if floating is float:
        if size == 4 and dw == 1:  # eight 4x4 tiles side by side at a time (wg_gather8t4)
            while t8 + 8 <= t4 and tn[t8 + 7] == tn[t8] and tih[t8 + 7] == tih[t8] \
                    and tiw[t8 + 7] == tiw[t8] + 28 \
                    and tile_inside(tih[t8], tiw[t8], 4, dh, 1, H, W) and tiw[t8] + 31 < W:
                off[0] = ((tn[t8] * C + c) * H + tih[t8]) * W + tiw[t8]
                wg_gather8t4_f(x + off[0], dh * W, d + t8)
                for i in range(4):  # the same rows of the next channel (see below)
                    wg_prefetch(x + off[0] + H * W + i * dh * W)
                    wg_prefetch(x + off[0] + H * W + i * dh * W + 31)
                t8 += 8
    for t in range(t8, t4, 4):
        inside = True
        for u in range(4):
            if not tile_inside(tih[t + u], tiw[t + u], size, dh, dw, H, W):
                inside = False
                break
            off[u] = ((tn[t + u] * C + c) * H + tih[t + u]) * W + tiw[t + u]
        if inside and transpose:
            for u in range(4):
                src[u] = x + off[u]
            if floating is float:
                wg_gather4t_f(src, dh * W, <int> size, d + t)
            else:
                wg_gather4t_d(src, dh * W, <int> size, d + t)
            # the same rows of the next channel, which the block gathers next: the planes are
            # H*W apart, beyond the reach of the hardware prefetchers
            for i in range(size):
                wg_prefetch(src[0] + H * W + i * dh * W)
                wg_prefetch(src[3] + H * W + i * dh * W + size - 1)
        elif inside and pairs and off[1] == off[0] + 1 and off[3] == off[2] + 1:
            src[0] = x + off[0]
            src[1] = x + off[2]
            if floating is float:
                wg_gather2p_f(src, dh * W, <int> size, d + t)
            else:
                wg_gather2p_d(src, dh * W, <int> size, d + t)
            for i in range(size):  # as above: both pairs' rows, one line or two each
                wg_prefetch(src[0] + H * W + i * dh * W)
                wg_prefetch(src[0] + H * W + i * dh * W + 2 * size - 1)
                wg_prefetch(src[1] + H * W + i * dh * W)
                wg_prefetch(src[1] + H * W + i * dh * W + 2 * size - 1)
        elif (inside and off[1] == off[0] + 1 and off[2] == off[0] + 2
                and off[3] == off[0] + 3):
            if floating is float:
                wg_gather4c_f(x + off[0], dh * W, dw, <int> size, d + t)
            else:
                wg_gather4c_d(x + off[0], dh * W, dw, <int> size, d + t)
            for i in range(size):  # as above, every 64-byte line of the rows
                j = 0
                while j < (size - 1) * dw + 4:
                    wg_prefetch(x + off[0] + H * W + i * dh * W + j)
                    j += 64 // sizeof(floating)
                wg_prefetch(x + off[0] + H * W + i * dh * W + (size - 1) * dw + 3)
        else:
            for u in range(t, t + 4):
                gather_tile(x + (tn[u] * C + c) * H * W, H, W, tih[u], tiw[u], size, dh, dw,
                            d + u)
    for t in range(t4, nt):
        gather_tile(x + (tn[t] * C + c) * H * W, H, W, tih[t], tiw[t], size, dh, dw, d + t)


cdef inline void chunk_epilogue(floating* d, Py_ssize_t n, floating bias, bint relu) noexcept nogil:
    # d[e] = act(d[e] + bias) for e < n, act: ReLU (0 if v <= 0 else v, NaN kept, as the GEMM
    # paths' epilogue) or identity: the output transforms' epilogue where it is not part of
    # their last pass (``WG_EPI``: the F(4,3) and F(4,5) transforms).  A vector pass, before the
    # scatter (a compare per scattered value mispredicted: 10% of a (8,128,28,28) forward).
    cdef Py_ssize_t e
    cdef floating v
    if relu:
        for e in range(n):
            v = d[e] + bias
            d[e] = 0 if v <= 0 else v
    elif bias != 0:
        for e in range(n):
            d[e] = d[e] + bias


cdef inline void scatter_tile(const floating* out, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                              Py_ssize_t k, Py_ssize_t n, Py_ssize_t oh, Py_ssize_t ow,
                              Py_ssize_t m, Py_ssize_t dh, Py_ssize_t dw,
                              floating* y) noexcept nogil:
    # y[n, k, oh + a*dh, ow + b*dw] = out[(a*m + b)*CH] for the outputs inside y
    cdef Py_ssize_t a, b
    cdef Py_ssize_t nb = min(m, (Wo - ow + dw - 1) // dw)  # columns of the tile inside y
    cdef floating* row
    for a in range(m):
        if oh + a * dh >= Ho:
            break
        row = y + ((n * K + k) * Ho + oh + a * dh) * Wo + ow
        for b in range(nb):
            row[b * dw] = out[(a * m + b) * CH]


cdef enum:
    # How ``scatter_planned`` writes a group of four tiles of a chunk (``plan_scatter``)
    SC_EACH = 0          # tile by tile (``scatter_tile``), edges clipped
    SC_T4 = 1            # 4x4 tiles of dilation 1, transposed four at a time
    SC_T4_LINES = 2      # the same, side by side on rows that start on 64-byte lines
    SC_PAIRS = 3         # two interleaved pairs, column dilation 2 (``wg_scatter2p``)
    SC_PAIRS_LINES = 4   # the same, the pairs 8 columns apart on such rows
    SC_COPY = 5          # tiles on consecutive columns (column dilation >= 4), copied
    SC_T4_CLIP = 6       # as SC_T4, some tiles clipped at the bottom or right edge


cdef inline Py_ssize_t scatter_groups(Py_ssize_t nt, Py_ssize_t m, Py_ssize_t dw) noexcept nogil:
    # the tiles of a chunk of nt that move four at a time (the rest tile by tile)
    if (m == 4 and dw == 1) or dw >= 4 or (dw == 2 and m % 2 == 0):
        return nt - nt % 4
    return 0


cdef void plan_scatter(Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo, const Py_ssize_t* tn,
                       const Py_ssize_t* tih, const Py_ssize_t* tiw, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t nt, Py_ssize_t m, Py_ssize_t dh, Py_ssize_t dw,
                       bint lines, Py_ssize_t* off, unsigned char* kind,
                       unsigned char* clip) noexcept nogil:
    # For the tiles t < nt of a chunk (output origins oh = tih[t] + ph, ow = tiw[t] + pw), once
    # for all K filters: kind[g], how group g of four tiles moves (vector moves only when all
    # four lie inside the output, or for 4x4 tiles of column dilation 1, all four start inside
    # it: SC_T4_CLIP), off[t], tile t's offset in y for filter 0, and clip[t] (SC_T4_CLIP
    # groups), its rows inside the output times 8 plus its columns inside.  lines
    # (float32 outputs streamed, m = 4, rows of dh * Wo a multiple of 16 elements): four 4x4
    # tiles that fill 64 bytes of their rows (side by side, or two pairs 8 columns apart) may be
    # written by non-temporal stores, whole lines, where their row starts on a line.  (Per
    # filter, these tests and offsets took 11% of a (64,3,32,32)->64 5x5 forward; planned once
    # per block, that forward ran 1.07x, its 3x3 twin 1.09x, seven other forwards (fused or
    # not, dilation 1, 2 and 8) and one input gradient 0.990-1.013x: 2-core Zen 3, in-process
    # A/B, 435-8600 pairs; bit-identical.)
    cdef Py_ssize_t t, u, oh, ow
    cdef bint inside, starts_inside
    for t in range(0, scatter_groups(nt, m, dw), 4):
        inside = True
        starts_inside = m == 4 and dw == 1
        for u in range(4):
            oh = tih[t + u] + ph
            ow = tiw[t + u] + pw
            off[t + u] = (tn[t + u] * K * Ho + oh) * Wo + ow
            if tile_inside(oh, ow, m, dh, dw, Ho, Wo):
                clip[t + u] = 4 * 8 + 4
            elif 0 <= oh < Ho and 0 <= ow < Wo:
                inside = False
                clip[t + u] = min(4, (Ho - oh + dh - 1) // dh) * 8 + min(4, Wo - ow)
            else:
                inside = starts_inside = False
        if not inside:
            kind[t // 4] = SC_T4_CLIP if starts_inside else SC_EACH
        elif m == 4 and dw == 1:
            kind[t // 4] = (SC_T4_LINES if lines and off[t + 1] == off[t] + 4
                            and off[t + 2] == off[t] + 8 and off[t + 3] == off[t] + 12
                            else SC_T4)
        elif dw == 2 and m % 2 == 0 and off[t + 1] == off[t] + 1 and off[t + 3] == off[t + 2] + 1:
            kind[t // 4] = SC_PAIRS_LINES if lines and off[t + 2] == off[t] + 8 else SC_PAIRS
        elif off[t + 1] == off[t] + 1 and off[t + 2] == off[t] + 2 and off[t + 3] == off[t] + 3:
            kind[t // 4] = SC_COPY
        else:
            kind[t // 4] = SC_EACH


cdef void scatter_planned(const floating* out, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                          Py_ssize_t k, const Py_ssize_t* tn, const Py_ssize_t* tih,
                          const Py_ssize_t* tiw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t nt,
                          Py_ssize_t m, Py_ssize_t dh, Py_ssize_t dw, const Py_ssize_t* off,
                          const unsigned char* kind, const unsigned char* clip,
                          floating* y) noexcept nogil:
    # y[n, k, oh + a*dh, ow + b*dw] = out[(a*m + b)*CH + t] (inside the output only) for the
    # tiles t < nt of a chunk, by the moves ``plan_scatter`` chose (off, kind, clip).  The lines'
    # non-temporal stores need the caller's fence.
    cdef Py_ssize_t t, u, t4 = scatter_groups(nt, m, dw)
    cdef floating* y0[4]
    cdef floating* yk = y + k * Ho * Wo
    cdef unsigned char kd
    for t in range(0, t4, 4):
        kd = kind[t // 4]
        if kd == SC_T4 or kd == SC_T4_LINES:
            if floating is float and kd == SC_T4_LINES and (<size_t> (yk + off[t])) % 64 == 0:
                wg_scatter4t_nt_f(out + t, yk, off + t, dh * Wo)
            elif floating is float:
                wg_scatter4t_f(out + t, yk, off + t, dh * Wo)
            else:
                wg_scatter4t_d(out + t, yk, off + t, dh * Wo)
        elif kd == SC_PAIRS or kd == SC_PAIRS_LINES:
            y0[0] = yk + off[t]
            y0[1] = yk + off[t + 2]
            if floating is float and kd == SC_PAIRS_LINES and (<size_t> y0[0]) % 64 == 0:
                wg_scatter2p_nt_f(out + t, <int> m, y0, dh * Wo)
            elif floating is float:
                wg_scatter2p_f(out + t, <int> m, y0, dh * Wo)
            else:
                wg_scatter2p_d(out + t, <int> m, y0, dh * Wo)
        elif kd == SC_T4_CLIP:
            if floating is float:
                wg_scatter4t_clip_f(out + t, yk, off + t, dh * Wo, clip + t)
            else:
                wg_scatter4t_clip_d(out + t, yk, off + t, dh * Wo, clip + t)
        elif kd == SC_COPY:
            if floating is float:
                wg_scatter4c_f(out + t, <int> m, yk + off[t], dh * Wo, dw)
            else:
                wg_scatter4c_d(out + t, <int> m, yk + off[t], dh * Wo, dw)
        else:
            for u in range(t, t + 4):
                scatter_tile(out + u, K, Ho, Wo, k, tn[u], tih[u] + ph, tiw[u] + pw, m, dh, dw,
                             y)
    for t in range(t4, nt):
        scatter_tile(out + t, K, Ho, Wo, k, tn[t], tih[t] + ph, tiw[t] + pw, m, dh, dw, y)


cdef inline void prefetch_outputs(floating* y, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                                  Py_ssize_t k, const Py_ssize_t* tn, const Py_ssize_t* tih,
                                  const Py_ssize_t* tiw, Py_ssize_t ph, Py_ssize_t pw,
                                  Py_ssize_t nt, Py_ssize_t m, Py_ssize_t dh) noexcept nogil:
    # Ask for the output rows that ``scatter_planned`` will write for filter k and the chunk's
    # tiles, so that their lines arrive while the filter before is computed: the first column of
    # every fourth tile (four 4x4 tiles of dilation 1 fill 64 bytes of a row; asking for both
    # ends of each group ran 6% slower on (64,3,32,32)->64 5x5).
    cdef Py_ssize_t t, a, oh
    for t in range(0, nt, 4):
        for a in range(m):
            oh = tih[t] + ph + a * dh
            if oh < Ho:
                wg_prefetchw(y + ((tn[t] * K + k) * Ho + oh) * Wo + tiw[t] + pw)


cdef void gather_chunk(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                       Py_ssize_t c, const Py_ssize_t* tn, const Py_ssize_t* tih,
                       const Py_ssize_t* tiw, Py_ssize_t nt, Py_ssize_t size, Py_ssize_t dh,
                       Py_ssize_t dw, floating* d) noexcept nogil:
    # d (size^2, CH): the size x size tiles of ``gather_tiles`` (nt <= CH of them), zeros for the
    # chunk's tiles past nt
    cdef Py_ssize_t e, t
    if nt < CH:
        for e in range(size * size):
            for t in range(CH):
                d[e * CH + t] = 0
    if nt > 0:
        gather_tiles(x, C, H, W, c, tn, tih, tiw, nt, size, dh, dw, d)


@cython.boundscheck(False)
@cython.wraparound(False)
def gather_chunk_both(const floating[:, :, :, ::1] x, Py_ssize_t c, const Py_ssize_t[::1] tn,
                      const Py_ssize_t[::1] tih, const Py_ssize_t[::1] tiw, Py_ssize_t size,
                      Py_ssize_t dh, Py_ssize_t dw):
    """For tests: the chunk (size^2, CH) that ``gather_runs`` and ``gather_moves`` each make of
    the tiles t < len(tn) <= CH of channel c (image tn[t], first row tih[t] and column tiw[t],
    steps dh and dw), zeros past them and outside the map: (runs, or None where they do not
    apply; moves)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t nt = tn.shape[0]
    cdef bint applied
    if (not 0 <= c < C or tih.shape[0] != nt or tiw.shape[0] != nt or not 0 < nt <= CH
            or not 1 <= size <= MAXA or dh < 1 or dw < 1 or N * H * W == 0
            or np.any(np.asarray(tn) < 0) or np.any(np.asarray(tn) >= N)
            or np.any(np.abs(np.asarray(tih)) > 2 * (H + dh * size) + 16)
            or np.any(np.abs(np.asarray(tiw)) > 2 * (W + dw * size) + 16)):
        raise ValueError(f"gather_chunk_both: x {tuple(x.shape)[:4]}, channel {c}, "
                         f"{nt} tiles ({tih.shape[0]} rows, {tiw.shape[0]} columns) of size "
                         f"{size}, steps ({dh}, {dw}): out of range")
    dtype = np.float32 if floating is float else np.float64
    runs = np.zeros((size * size, CH), dtype)
    moves = np.zeros((size * size, CH), dtype)
    cdef floating[:, ::1] r = runs, m = moves
    with nogil:
        applied = dw == 1 and gather_runs(&x[0, 0, 0, 0], C, H, W, c, &tn[0], &tih[0], &tiw[0],
                                          nt, size, dh, &r[0, 0])
        gather_moves(&x[0, 0, 0, 0], C, H, W, c, &tn[0], &tih[0], &tiw[0], nt, size, dh, dw,
                     &m[0, 0])
    return (runs if applied else None), moves


cdef extern from *:
    # wg_gemm6x16_f (x86-64-v3 build only: WG_GEMM6X16): the float32 element-wise GEMMs of
    # ``winograd_conv`` (forward and input gradient) without OpenBLAS.  Per block and point,
    # OpenBLAS packed both operands again on every call, the filters' U_p included, and scaled M by
    # beta: oncopy, itcopy and beta took 17% of an (8,128,28,28) forward (perf).  Here U is written
    # packed by its transform (``transform_weight(..., packed=True)``) and each 16-tile sliver of V
    # copied once per point; with no cost per call, blocks shrink to one chunk
    # (``OWN_GEMM_TILES_PER_BLOCK`` in winograd.py), and M stays in L2 for the output transform. One
    # call: six filters by 16 tiles, c[j*cs + t] (=, or += if add) sum_{i<n} a[i*6 + j] b[i*16 + t],
    # j < rows, t < 16, in twelve 8-lane accumulators (BLIS's 6x16 Haswell shape).  In-process A/B
    # against OpenBLAS with its blocks (2-core Zen 3, call by call): forwards 1.05-1.36x on eleven
    # 3x3 and 5x5 layers, input gradients 1.10-1.29x on four.
    """
    #if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
    #define WG_GEMM6X16 1
    /* channels summed in the registers before they are added to c: one running sum of 256
       raised the float32 error of F(4,3)'s forward at C = 2048 from OpenBLAS's 2.7e-6 to 3.7e-6
       (bound 5e-6); with 64, 2.4e-6 (F(4,5): 4.9e-6 with OpenBLAS, 3.9e-6) */
    #define WG_REG_SUMC 64
    static void wg_gemm6x16_f(Py_ssize_t n, const float* a, const float* b, float* c,
                              Py_ssize_t cs, int rows, int add) {
        /* named accumulators: an array indexed by the epilogue's row count lived on the stack,
           a store per FMA */
        for (Py_ssize_t i0 = 0; i0 < n; i0 += WG_REG_SUMC) {
        const Py_ssize_t i1 = i0 + WG_REG_SUMC < n ? i0 + WG_REG_SUMC : n;
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
        __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
        #pragma GCC unroll 4
        for (Py_ssize_t i = i0; i < i1; i++) {
            const __m256 b0 = _mm256_load_ps(b + 16 * i), b1 = _mm256_load_ps(b + 16 * i + 8);
            const float* ai = a + 6 * i;
            _mm_prefetch((const char*)(ai + 96), _MM_HINT_T0);  /* the panel 16 channels on */
            __m256 aj;
            aj = _mm256_broadcast_ss(ai + 0);
            c00 = _mm256_fmadd_ps(aj, b0, c00); c01 = _mm256_fmadd_ps(aj, b1, c01);
            aj = _mm256_broadcast_ss(ai + 1);
            c10 = _mm256_fmadd_ps(aj, b0, c10); c11 = _mm256_fmadd_ps(aj, b1, c11);
            aj = _mm256_broadcast_ss(ai + 2);
            c20 = _mm256_fmadd_ps(aj, b0, c20); c21 = _mm256_fmadd_ps(aj, b1, c21);
            aj = _mm256_broadcast_ss(ai + 3);
            c30 = _mm256_fmadd_ps(aj, b0, c30); c31 = _mm256_fmadd_ps(aj, b1, c31);
            aj = _mm256_broadcast_ss(ai + 4);
            c40 = _mm256_fmadd_ps(aj, b0, c40); c41 = _mm256_fmadd_ps(aj, b1, c41);
            aj = _mm256_broadcast_ss(ai + 5);
            c50 = _mm256_fmadd_ps(aj, b0, c50); c51 = _mm256_fmadd_ps(aj, b1, c51);
        }
        __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41},
                            {c50, c51}};
        for (int j = 0; j < rows; j++) {
            float* cj = c + j * cs;
            if (add || i0 > 0) {
                acc[j][0] = _mm256_add_ps(acc[j][0], _mm256_loadu_ps(cj));
                acc[j][1] = _mm256_add_ps(acc[j][1], _mm256_loadu_ps(cj + 8));
            }
            _mm256_storeu_ps(cj, acc[j][0]);
            _mm256_storeu_ps(cj + 8, acc[j][1]);
        }
        }
    }
    /* b[i*16 + t] = src[i*ss + t], t < 16, i < n (b 32-byte aligned): one sliver of V copied
       (its rows, P * tb elements apart, fell on two L1 sets; read in place, the forward ran
       0.55x as fast) */
    static void wg_pack16_f(Py_ssize_t n, const float* src, Py_ssize_t ss, float* b) {
        for (Py_ssize_t i = 0; i < n; i++) {
            _mm256_store_ps(b + 16 * i, _mm256_loadu_ps(src + i * ss));
            _mm256_store_ps(b + 16 * i + 8, _mm256_loadu_ps(src + i * ss + 8));
        }
    }
    #else
    #define WG_GEMM6X16 0
    static void wg_pack16_f(Py_ssize_t n, const float* src, Py_ssize_t ss, float* b) {
        (void)n; (void)src; (void)ss; (void)b;
        __builtin_trap();  /* never called: WG_GEMM6X16 is 0 */
    }
    static void wg_gemm6x16_f(Py_ssize_t n, const float* a, const float* b, float* c,
                              Py_ssize_t cs, int rows, int add) {
        (void)n; (void)a; (void)b; (void)c; (void)cs; (void)rows; (void)add;
        __builtin_trap();  /* never called: WG_GEMM6X16 is 0 */
    }
    #endif
    """
    enum: WG_GEMM6X16
    void wg_pack16_f(Py_ssize_t n, const float* src, Py_ssize_t ss, float* b) nogil
    void wg_gemm6x16_f(Py_ssize_t n, const float* a, const float* b, float* c, Py_ssize_t cs,
                       int rows, int add) nogil


cdef void winograd_block(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         const floating* U, Py_ssize_t K, const floating* BT, int bt_kind,
                         const floating* AT, int at_kind, Py_ssize_t m, Py_ssize_t alpha,
                         const Py_ssize_t* oh0, Py_ssize_t n_rows, const Py_ssize_t* ow0,
                         Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t ph,
                         Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, const floating* bias,
                         bint relu, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t tb, bint fused,
                         bint stream, bint packed, floating* scratch, floating* y) noexcept nogil:
    # One block of nt <= tb tiles, single-threaded.  scratch: alpha^2 * (C + K) * tb elements.
    # fused: the element-wise stage per chunk and filter (``pointwise_chunk``) instead of the
    # alpha^2 GEMMs, so M is never written; U then holds the filters as (K, alpha^2, C).
    # packed (float32, x86-64-v3 build): the GEMMs by ``wg_gemm6x16_f``, U packed by six filters
    # (``pack_filters``' layout).
    cdef Py_ssize_t P = alpha * alpha, c, c0, k, p, t, nc
    cdef Py_ssize_t Kp = (K + 5) // 6 * 6          # packed: U (P, Kp, C) by panels of six
    cdef float[4104] bpk_arr                       # packed: one sliver of V, SUMC x 16
    cdef float* bpk = <float*> ((<size_t> &bpk_arr[0] + 31) & ~(<size_t> 31))
    cdef floating* V = scratch                     # (C, P, tb)
    cdef floating* M = V + P * C * tb              # (K, P, tb)
    cdef floating[CHUNK] d              # one chunk: raw tiles, then output tiles
    cdef floating[CHUNK] e              # fused: one chunk's transformed outputs of one filter
    cdef floating[CHUNK] d2             # fused: the output tiles of the second filter
    cdef Py_ssize_t nk, q
    cdef floating[2] bk                 # filters k and k + 1: bias and epilogue
    cdef int[2] ek
    cdef floating* dq
    cdef Py_ssize_t[MAXTB] tn, tih, tiw
    cdef Py_ssize_t[MAXTB] soff              # the tiles' offsets in y for filter 0
    cdef unsigned char[MAXTB4] skind        # how each group of four tiles is written
    cdef unsigned char[MAXTB] sclip         # the tiles' rows * 8 + columns inside the output
    # the output rows that start on 64-byte lines, each filled by four 4x4 tiles (streamed)
    cdef bint lines = floating is float and stream and m == 4 and (dh * Wo) % 16 == 0
    tile_positions(oh0, n_rows, ow0, n_cols, t0, nt, ph, pw, tn, tih, tiw)
    for t in range(0, nt, 16):  # CH
        plan_scatter(K, Ho, Wo, tn + t, tih + t, tiw + t, ph, pw, min(CH, nt - t), m, dh, dw,
                     lines, soff + t, skind + t // 4, sclip + t)
    for c in range(C):
        for t in range(0, nt, 16):  # CH
            gather_chunk(x, C, H, W, c, tn + t, tih + t, tiw + t, min(CH, nt - t), alpha, dh, dw,
                         d)
            transform_chunk(bt_kind, BT, alpha, alpha, d, CH, V + c * P * tb + t, tb)
    if not fused and packed:
        # the x86-64-v3 build's own GEMMs, U packed: per point, 16-tile sliver of V (copied: its
        # rows, P * tb apart, fell on two L1 sets) and six filters at a time; the chunks' tiles past
        # nt are zeros in V and unused in M
        for p in range(P):
            for c0 in range(0, C, 256):  # SUMC
                nc = min(SUMC, C - c0)
                for t in range(0, nt, 16):  # CH
                    wg_pack16_f(nc, <const float*> V + (c0 * P + p) * tb + t, P * tb, bpk)
                    for k in range(0, K, 6):
                        wg_gemm6x16_f(nc, <const float*> U + (p * Kp + k) * C + c0 * 6, bpk,
                                      <float*> M + (k * P + p) * tb + t, P * tb,
                                      <int> min(6, K - k), c0 > 0)
    elif not fused:
        for p in range(P):
            for c0 in range(0, C, 256):  # SUMC
                gemm_rm(False, False, <int> K, <int> nt, <int> min(SUMC, C - c0), 1,
                        U + p * K * C + c0, <int> C, V + (c0 * P + p) * tb, <int> (P * tb),
                        0 if c0 == 0 else 1, M + p * tb, <int> (P * tb))
    k = 0
    while k < K:
        # output transform of filter k (fused: of filters k and k + 1 at a time, one pass over
        # the chunk's V for both): M[:, k, chunk] (alpha x alpha tiles) -> d (m x m tiles); the
        # columns of M past nt (at most up to tb) hold stale finite values
        nk = 2 if fused and k + 1 < K else 1
        for q in range(nk):  # the filters' epilogues, applied in their output transforms
            bk[q] = bias[k + q] if bias != NULL else 0
            ek[q] = EPI_RELU if relu else EPI_BIAS if bk[q] != 0 else EPI_NONE
        for t in range(0, nt, 16):  # CH
            if not stream:
                for q in range(k + nk, min(K, k + 2 * nk)):
                    prefetch_outputs(y, K, Ho, Wo, q, tn + t, tih + t, tiw + t, ph, pw,
                                     min(CH, nt - t), m, dh)
            if fused:
                fused_output_chunk(at_kind, AT, m, alpha, U + k * P * C,
                                   U + (k + 1) * P * C if nk == 2 else <const floating*> NULL,
                                   V + t, P * tb, tb, C, e, d, d2, bk[0], bk[1], ek[0], ek[1])
            else:
                transform_chunk(at_kind, AT, m, alpha, M + k * P * tb + t, tb, d, CH, bk[0],
                                ek[0])
            for q in range(nk):
                dq = &d[0] if q == 0 else &d2[0]
                scatter_planned(dq, K, Ho, Wo, k + q, tn + t, tih + t, tiw + t, ph, pw,
                                min(CH, nt - t), m, dh, dw, soff + t, skind + t // 4, sclip + t,
                                y)
        k += nk
    if stream:
        wg_sfence()


cdef Py_ssize_t count_blocks(Py_ssize_t tiles, Py_ssize_t tb, Py_ssize_t parts) noexcept nogil:
    # Blocks of at most tb tiles (the buffers' stride): the fewest that is a multiple of the
    # thread count, so no thread waits on a short last block (392 tiles on 2 threads: 4 blocks of
    # about 98, not 128, 128, 128, 8); at most one per chunk of CH tiles.
    cdef Py_ssize_t nblocks = parts * ((tiles + parts * tb - 1) // (parts * tb))
    return max(1, min(nblocks, (tiles + CH - 1) // CH))


cdef inline Py_ssize_t block_start(Py_ssize_t b, Py_ssize_t nblocks,
                                   Py_ssize_t tiles) noexcept nogil:
    # First tile of block b of nblocks (block nblocks: the end): the chunks of CH tiles shared out
    # evenly, so that every block but the last starts and ends on a chunk's edge.  A block of 61
    # tiles (1568 on 2 threads, as 26 blocks: (8,64,56,56) 3x3) ran its GEMMs on 61 columns and
    # its last chunk on 13 of 16 tiles; in blocks of 48 and 64 the forward and dx of that layer
    # ran 1.09-1.13x faster (7 interleaved rounds, 1 and 2 threads).  At most tb tiles each when
    # nblocks comes from count_blocks (then ceil(chunks / nblocks) <= tb / CH).
    return min(tiles, CH * ((b * ((tiles + CH - 1) // CH)) // nblocks))


def block_bounds(Py_ssize_t tiles, Py_ssize_t tb, Py_ssize_t parts):
    """The tile ranges [start, end) of the blocks the kernels share out among ``parts`` threads
    (``count_blocks`` and ``block_start``), for tests."""
    cdef Py_ssize_t n = count_blocks(tiles, tb, parts), b
    return [(block_start(b, n, tiles), block_start(b + 1, n, tiles)) for b in range(n)]


def winograd_conv(const floating[:, :, :, ::1] x, const floating[:, :, ::1] U,
                  const floating[:, ::1] BT, const floating[:, ::1] AT, const Py_ssize_t[::1] oh0,
                  const Py_ssize_t[::1] ow0, offset, dilation,
                  floating[:, :, :, ::1] y, bias, Py_ssize_t tb, floating[::1] scratch,
                  bint relu=False, bint specialise=True, bint fused=False, bint stream=False,
                  bint u_packed=False):
    """y[n, k] = act(sum_c conv(x[n, c], w[k, c]) + bias[k]), stride 1, by Winograd tiles (in
    place); act: ReLU if ``relu`` (applied where y is written), else identity.

    x: (N, C, H, W); U: (alpha^2, K, C) the transformed filters G w G^T, or (``u_packed``, only
    where ``OWN_GEMM`` runs: float32, not fused) as ``transform_weight(..., packed=True)`` writes
    them (else packed here, a pass over U and a fresh array per call); BT: (alpha, alpha);
    AT: (m, alpha); oh0, ow0: output row / column origins of the tiles (each tile m x m outputs
    with step dilation); offset: (ph, pw), input position = output position - offset + tap*dilation;
    y: (N, K, Ho, Wo), written fully by the tiles; bias: (K,) or None; tb: tiles per block, a
    multiple of VEC; scratch: at least ``scratch_size(...)`` elements, finite values (the vector
    chunks compute on the unused tail of a block); specialise: False runs the generic transforms
    (tests compare them with the specialised ones); fused: the element-wise stage by vector loops
    per chunk and filter instead of alpha^2 GEMMs per block (faster for few channels or filters);
    stream: write float32 4x4 tiles of column dilation 1 or 2 by non-temporal stores where four
    fill a 64-byte line of each row (same values; for outputs larger than the caches,
    see ``winograd.streams_output``), without asking for the output lines ahead.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = y.shape[1], alpha = BT.shape[0], m = AT.shape[0]
    cdef Py_ssize_t Ho = y.shape[2], Wo = y.shape[3]
    cdef Py_ssize_t ph = offset[0], pw = offset[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t n_rows = oh0.shape[0], n_cols = ow0.shape[0]
    cdef Py_ssize_t tiles = N * n_rows * n_cols
    cdef Py_ssize_t parts = _gemm_parts, blk, first, count
    cdef Py_ssize_t nblocks = count_blocks(tiles, tb, parts)
    cdef Py_ssize_t per_thread = alpha * alpha * (C + K) * tb
    cdef int bt_kind = transform_kind(BT, specialise), at_kind = transform_kind(AT, specialise)
    cdef const floating[::1] b
    cdef const floating* bp = NULL
    cdef const floating[:, :, ::1] Uk = U
    cdef bint packed = floating is float and WG_GEMM6X16 and not fused  # own GEMMs
    check_tile(alpha, tb)
    if u_packed and not packed:
        raise ValueError("winograd_conv: U is packed (u_packed), but only the float32 GEMM stage "
                         "of the x86-64-v3 build (OWN_GEMM, not fused) reads packed filters")
    if (U.shape[0] != alpha * alpha or U.shape[1] != ((K + 5) // 6 * 6 if u_packed else K)
            or U.shape[2] != C or y.shape[0] != N or AT.shape[1] != alpha
            or BT.shape[1] != alpha or (bias is not None and len(bias) != K)):
        raise ValueError(f"winograd_conv: x {tuple(x.shape)[:4]}, U {tuple(U.shape)[:3]} "
                         f"({'packed' if u_packed else 'not packed'}), BT {tuple(BT.shape)[:2]}, "
                         f"AT {tuple(AT.shape)[:2]} and y {tuple(y.shape)[:4]} do not match")
    check_scratch(scratch.shape[0], C, K, alpha, tb)
    if fused:  # the fused stage reads one filter's alpha^2 x C weights contiguously
        Uk = np.ascontiguousarray(np.asarray(U).transpose(1, 0, 2))
    elif packed and not u_packed:  # the own GEMMs read six filters per channel contiguously
        Up = np.empty((U.shape[0], (K + 5) // 6 * 6, C), dtype=np.float32)
        pack_filters(U, Up)
        Uk = Up
    if bias is not None:
        b = bias
        bp = &b[0]
    if parts > nblocks:
        parts = nblocks
    with nogil:
        for blk in prange(nblocks, schedule="dynamic", num_threads=parts):
            first = block_start(blk, nblocks, tiles)
            count = block_start(blk + 1, nblocks, tiles) - first
            winograd_block(&x[0, 0, 0, 0], C, H, W, &Uk[0, 0, 0], K, &BT[0, 0], bt_kind,
                           &AT[0, 0], at_kind, m, alpha, &oh0[0], n_rows, &ow0[0], n_cols,
                           first, count, ph, pw, dh, dw, bp, relu, Ho, Wo, tb, fused, stream,
                           packed, &scratch[threadid() * per_thread], &y[0, 0, 0, 0])
    return y


@cython.boundscheck(False)
@cython.wraparound(False)
def pack_filters(const floating[:, :, ::1] U, floating[:, :, ::1] out):
    """out[p] (Kp/6 panels of (C, 6)) = U[p] (K, C) by panels of six filters, the filter
    innermost, zeros past K (Kp = K rounded up to 6)."""
    cdef Py_ssize_t P = U.shape[0], K = U.shape[1], C = U.shape[2], p, k0, c, j
    cdef Py_ssize_t Kp = (K + 5) // 6 * 6
    cdef floating* o
    cdef int threads = transform_threads(P * K * C, _gemm_parts)
    if out.shape[0] != P or out.shape[1] != Kp or out.shape[2] != C:
        raise ValueError(f"pack_filters: U {tuple(U.shape)[:3]} and out {tuple(out.shape)[:3]} "
                         f"do not match")
    with nogil:
        for p in prange(P, schedule="static", num_threads=threads):
            for k0 in range(0, Kp, 6):
                o = &out[p, 0, 0] + k0 * C
                for c in range(C):
                    for j in range(6):
                        o[c * 6 + j] = U[p, k0 + j, c] if k0 + j < K else 0


# Whether float32 ``winograd_conv`` runs its element-wise GEMMs by ``wg_gemm6x16_f`` (the
# x86-64-v3 build) rather than OpenBLAS
OWN_GEMM = bool(WG_GEMM6X16)


def check_tile(Py_ssize_t alpha, Py_ssize_t tb):
    """ValueError unless alpha (tile size m + r - 1) is at most MAXA and tb a positive multiple
    of VEC up to MAXTB."""
    if not 2 <= alpha <= MAXA:
        raise ValueError(f"Winograd tile size alpha must be in 2..{MAXA}, got {alpha}")
    if tb <= 0 or tb % VEC or tb > MAXTB:
        raise ValueError(f"tiles per block tb must be a positive multiple of {VEC} up to {MAXTB}, "
                         f"got {tb}")


def scratch_size(Py_ssize_t C, Py_ssize_t K, Py_ssize_t alpha, Py_ssize_t tb,
                 bint weight_grad=False):
    """Elements of scratch ``winograd_conv`` needs: alpha^2 * (C + K) * tb per thread;
    ``winograd_weight_grad`` (``weight_grad``) also an (alpha^2, K, C) accumulator and a
    (tb, C) transposed point per thread."""
    cdef Py_ssize_t per_thread = alpha * alpha * (C + K) * tb
    if weight_grad:
        per_thread += alpha * alpha * K * C + tb * C
    return per_thread * max(_gemm_parts, 1)


def check_scratch(Py_ssize_t size, Py_ssize_t C, Py_ssize_t K, Py_ssize_t alpha, Py_ssize_t tb,
                  bint weight_grad=False):
    """ValueError unless a scratch buffer of ``size`` elements is large enough."""
    cdef Py_ssize_t need = scratch_size(C, K, alpha, tb, weight_grad)
    if size < need:
        raise ValueError(f"scratch has {size} elements, needs {need} (C={C}, K={K}, "
                         f"alpha={alpha}, tb={tb})")


ctypedef fused source_t:
    # the sources of ``wsum``: float64 (the filter transform's copies) or the kernels' dtype (the
    # weight gradient's accumulators)
    float
    double


cdef inline void wsum(floating* out, const double* g, Py_ssize_t n, const source_t* src,
                      Py_ssize_t ss, Py_ssize_t C) noexcept nogil:
    # out[c] = sum_{i < n} g[i] src[i*ss + c] for c < C, summed in float64 in the order of i: one
    # vector pass, the sum in registers (straight-line for n = 3, 5, 6 and 8, the kernel sizes
    # and tile sizes of the default tiles; a pass per term read and wrote the row n times and
    # took 4x longer)
    cdef Py_ssize_t c, i
    cdef double g0, g1, g2, g3, g4, g5, g6, g7, v
    if n == 3:
        g0, g1, g2 = g[0], g[1], g[2]
        for c in range(C):
            out[c] = <floating> (g0 * src[c] + g1 * src[ss + c] + g2 * src[2 * ss + c])
    elif n == 5:
        g0, g1, g2, g3, g4 = g[0], g[1], g[2], g[3], g[4]
        for c in range(C):
            out[c] = <floating> (g0 * src[c] + g1 * src[ss + c] + g2 * src[2 * ss + c]
                                 + g3 * src[3 * ss + c] + g4 * src[4 * ss + c])
    elif n == 6:
        g0, g1, g2, g3, g4, g5 = g[0], g[1], g[2], g[3], g[4], g[5]
        for c in range(C):
            out[c] = <floating> (g0 * src[c] + g1 * src[ss + c] + g2 * src[2 * ss + c]
                                 + g3 * src[3 * ss + c] + g4 * src[4 * ss + c]
                                 + g5 * src[5 * ss + c])
    elif n == 8:
        g0, g1, g2, g3, g4, g5, g6, g7 = g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
        for c in range(C):
            out[c] = <floating> (g0 * src[c] + g1 * src[ss + c] + g2 * src[2 * ss + c]
                                 + g3 * src[3 * ss + c] + g4 * src[4 * ss + c]
                                 + g5 * src[5 * ss + c] + g6 * src[6 * ss + c]
                                 + g7 * src[7 * ss + c])
    else:
        for c in range(C):
            v = 0
            for i in range(n):
                v = v + g[i] * src[i * ss + c]
            out[c] = <floating> v


cdef inline int transform_threads(Py_ssize_t elements, Py_ssize_t most) noexcept nogil:
    # threads for a filter transform of this many elements (transform_weight's U,
    # weight_grad_from_points' S): one below TW_SERIAL, else at most ``most``
    return 1 if elements < TW_SERIAL else <int> max(most, 1)


@cython.boundscheck(False)
@cython.wraparound(False)
def transform_weight(const floating[:, :, :, :] w, const double[:, ::1] G,
                     floating[:, :, ::1] U, bint packed=False):
    """U[a*alpha + b, k, c] = (G w[k, c] G^T)[a, b], summed in float64.  w: (K, C, r, r), each
    w[k, c] contiguous (the first two axes any strides: the input gradient passes a transpose),
    G: (alpha, r), U: (alpha^2, K, C); ``packed``: (alpha^2, Kp, C) laid out as ``pack_filters``
    lays out U, for ``winograd_conv(..., u_packed=True)`` (Kp = K rounded up to six, zero filters
    past K; groups of whole panels of six, their pairs copied in the panels' order, so the rows
    below come out packed, without a pass of their own).  Per group of filters k0 .. k0 + g - 1: w
    copied to float64 with the (filter, channel) pair innermost, then G w (alpha x r) and the rows
    U[a*alpha + b, k0:k0 + g, :] (contiguous), all as vector loops over the g*C pairs (``wsum``: one
    pass per output row).  (Scalar loops per channel took 2.1 ms for K = C = 128, a sixth of a
    (8,128,28,28) forward; writing all alpha^2 planes per channel instead of row by row took 25%.)
    Groups of at least TW_PAIRS pairs: one filter at a time, 3-channel layers ran loops of three
    values, 104 per filter (K = 64, C = 3, 5x5: 60-105 us, grouped 24-32 us).  Below TW_SERIAL
    elements of U on one thread: the second thread's wake-up cost more than it saved (quiet 2-core
    Xeon, 2026-12: 64x3 5x5 13 us on one thread against 25 on two, 64x64 3x3 72
    against 85, 64x64 5x5 237 against 315, 128x128 3x3 level; from 128x128 5x5 (1M elements)
    two threads win, 1.4-1.8x; beside a busy process one thread took 20 us, two 100); else no
    more threads than groups."""
    cdef Py_ssize_t K = w.shape[0], C = w.shape[1], r = w.shape[2], alpha = G.shape[0]
    cdef Py_ssize_t Kp = (K + 5) // 6 * 6 if packed else K      # U's filters
    cdef Py_ssize_t g = min(K, max(1, (TW_PAIRS + C - 1) // C))   # filters per group
    if packed:
        g = min(Kp, (g + 5) // 6 * 6)
    cdef Py_ssize_t ng = (Kp + g - 1) // g, gi, k0, gk, n, k, c, a, b, j, ij, e
    cdef Py_ssize_t rr = r * r, gC = g * C
    cdef int threads = transform_threads(alpha * alpha * Kp * C, min(_gemm_parts, ng))
    if (w.shape[3] != r or G.shape[1] != r or U.shape[0] != alpha * alpha or U.shape[1] != Kp
            or U.shape[2] != C):
        raise ValueError(f"transform_weight: w {tuple(w.shape)[:4]}, G {tuple(G.shape)[:2]} and "
                         f"U {tuple(U.shape)[:3]} do not match (U must be (alpha^2, "
                         f"{'K rounded up to 6' if packed else 'K'}, C))")
    if w.strides[3] != sizeof(floating) or w.strides[2] != r * <Py_ssize_t> sizeof(floating):
        raise ValueError(f"transform_weight: each filter w[k, c] must be contiguous (strides "
                         f"{tuple(w.strides)[:4]})")
    # per thread: wk (r*r, g*C), tm (alpha*r, g*C)
    tmp_arr = np.empty((_gemm_parts, (r * r + alpha * r) * gC), dtype=np.float64)
    cdef double[:, ::1] tmp = tmp_arr
    cdef double* wk
    cdef double* tm
    cdef const floating* wkc
    with nogil:
        for gi in prange(ng, schedule="static", num_threads=threads):
            k0 = gi * g
            gk = min(g, Kp - k0)
            n = gk * C                      # the group's (filter, channel) pairs
            wk = &tmp[threadid(), 0]
            tm = wk + rr * gC
            for k in range(gk):             # wk[i*r + j, e] = w[k0 + k, c, i, j], e the pair's
                for c in range(C):          # place: k*C + c, packed (k - k%6)*C + c*6 + k%6
                    e = (k - k % 6) * C + c * 6 + k % 6 if packed else k * C + c
                    if k0 + k < K:
                        wkc = &w[k0 + k, c, 0, 0]
                        for ij in range(rr):
                            wk[ij * gC + e] = wkc[ij]
                    else:                   # packed: the last panel's filters past K
                        for ij in range(rr):
                            wk[ij * gC + e] = 0
            for a in range(alpha):          # tm[a, j, :] = sum_i G[a, i] wk[i, j, :]
                for j in range(r):
                    wsum(tm + (a * r + j) * gC, &G[a, 0], r, wk + j * gC, r * gC, n)
            for a in range(alpha):          # U[a, b, k0 + k, c] = sum_j G[b, j] tm[a, j, k*C + c]
                for b in range(alpha):
                    wsum(&U[a * alpha + b, k0, 0], &G[b, 0], r, tm + a * r * gC, gC, n)


cdef void weight_grad_from_points(floating* S, Py_ssize_t K, Py_ssize_t C,
                                  const double[:, ::1] AT, double[:, ::1] tmp, Py_ssize_t parts,
                                  Py_ssize_t nacc, floating[:, :, :, ::1] dw_out) noexcept nogil:
    # dW[k, c] = AT S[:, k, c] AT^T in float64 for S (alpha^2, K, C) and AT (r, alpha), vector
    # passes over c (``wsum``; reading S[:, k, c] per (k, c) across the alpha^2 planes took 38%
    # of a (64,64,15,15) weight gradient, and a pass per term 5% of an (8,128,28,28) one).
    # nacc: S is the sum of nacc such arrays one after the other (the threads' accumulators),
    # added into the first, in their order, filter by filter just before its passes (a pass of
    # its own over them read and wrote the first once more: with the zeroing it replaced, 7% of
    # an (8,128,28,28) weight gradient).  tmp: (threads, (r*alpha + 1) * C) float64.  On one
    # thread below TW_SERIAL elements of S, as transform_weight (the same passes, reversed).
    cdef Py_ssize_t r = AT.shape[0], alpha = AT.shape[1], KC = K * C, k, c, b, i, j, t
    cdef Py_ssize_t P = alpha * alpha
    cdef floating* sk
    cdef int threads = transform_threads(alpha * alpha * KC, parts)
    cdef double* tm
    cdef double* row
    for k in prange(K, schedule="static", num_threads=threads):
        tm = &tmp[threadid(), 0]
        row = tm + r * alpha * C
        for t in range(1, nacc):
            for i in range(P):
                sk = S + i * KC + k * C
                for c in range(C):
                    sk[c] += sk[t * P * KC + c]
        for i in range(r):          # tm[i, b, c] = sum_a AT[i, a] S[a, b, k, c]
            for b in range(alpha):
                wsum(tm + (i * alpha + b) * C, &AT[i, 0], alpha, S + b * KC + k * C,
                     alpha * KC, C)
        for i in range(r):          # dW[k, c, i, j] = sum_b AT[j, b] tm[i, b, c]
            for j in range(r):
                wsum(row, &AT[j, 0], alpha, tm + i * alpha * C, C, C)
                for c in range(C):
                    dw_out[k, c, i, j] = <floating> row[c]


cdef void wgrad_block(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                      const floating* dy, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                      const floating* BT, int bt_kind, const floating* G, int g_kind,
                      Py_ssize_t m, Py_ssize_t alpha, const Py_ssize_t* oh0, Py_ssize_t n_rows,
                      const Py_ssize_t* ow0, Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t tb,
                      floating* scratch, floating* acc, floating beta,
                      floating* vt) noexcept nogil:
    # acc[p] (K, C) = beta acc[p] + sum over the block's tiles t of (G dy_t G^T)[p, k]
    # (B^T x_t B)[p, c] (beta 0: the thread's first block; acc's values are then ignored).
    # vt: (tb, C), the point's V transposed (see below).
    cdef Py_ssize_t P = alpha * alpha, c, k, p, t
    cdef floating* V = scratch                     # (C, P, tb): transformed x tiles
    cdef floating* M = V + P * C * tb              # (K, P, tb): transformed dy tiles
    cdef floating[CHUNK] d              # one chunk of raw tiles
    cdef Py_ssize_t[MAXTB] tn, tih, tiw
    cdef Py_ssize_t[MAXTB] tod, tow
    cdef Py_ssize_t[MAXTB4] run_img, run_off  # chunk c's runs of eight dy tiles: at 2c, 2c + 1
    cdef bint[MAXTB4] runs                    # per chunk c: moved by runs of eight
    tile_positions(oh0, n_rows, ow0, n_cols, t0, nt, ph, pw, tn, tih, tiw)
    tile_positions(oh0, n_rows, ow0, n_cols, t0, nt, 0, 0, tn, tod, tow)
    for c in range(C):
        for t in range(0, nt, 16):  # CH
            gather_chunk(x, C, H, W, c, tn + t, tih + t, tiw + t, min(CH, nt - t), alpha, dh, dw,
                         d)
            transform_chunk(bt_kind, BT, alpha, alpha, d, CH, V + c * P * tb + t, tb)
    plan_dy_runs(dy, tn, tod, tow, nt, Ho, Wo, m, dh, dw, runs, run_img, run_off)
    for k in range(K):
        # the m x m dy tile: outputs oh0 + a*dh, ow0 + b*dw (zero past the output's edge)
        for t in range(0, nt, 16):  # CH
            dy_chunk(dy, K, Ho, Wo, k, tn + t, tod + t, tow + t, min(CH, nt - t), runs[t // 16],
                     run_img + t // 8, run_off + t // 8, g_kind, G, m, alpha, dh, dw, d,
                     M + k * P * tb + t, tb)
    # Both operands have the tiles (the sum) contiguous, a GEMM OpenBLAS runs as "TN" through its
    # packing copies.  Up to SMALL_GEMM_MNK, with V's point transposed to (tiles, C) it is "NN",
    # which OpenBLAS's small-matrix kernels run without packing (see SMALL_GEMM_MNK).
    cdef bint nn = <double> K * C * nt <= SMALL_GEMM_MNK
    for p in range(P):
        if nn:
            if floating is float:
                wg_transpose_f(V + p * tb, P * tb, C, nt, vt, C)
            else:
                wg_transpose_d(V + p * tb, P * tb, C, nt, vt, C)
            gemm_rm(False, False, <int> K, <int> C, <int> nt, 1, M + p * tb, <int> (P * tb),
                    vt, <int> C, beta, acc + p * K * C, <int> C)
        else:
            gemm_rm(False, True, <int> K, <int> C, <int> nt, 1, M + p * tb, <int> (P * tb),
                    V + p * tb, <int> (P * tb), beta, acc + p * K * C, <int> C)


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_weight_grad(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dy,
                         const floating[:, ::1] BT, const floating[:, ::1] G,
                         const double[:, ::1] AT, const Py_ssize_t[::1] oh0,
                         const Py_ssize_t[::1] ow0, offset, dilation,
                         Py_ssize_t tb, floating[::1] scratch, floating[:, :, :, ::1] dw_out,
                         bint specialise=True):
    """dweight of a stride-1 convolution by Winograd F(r x r, m x m) over the output tiles.

    x: (N, C, H, W); dy: (N, K, Ho, Wo); BT: (alpha, alpha) the input tiles' transform, G:
    (alpha, m) the dy tiles' transform, AT: (r, alpha) the output transform: dW = AT [sum over
    tiles (G dy G^T) * (BT x BT^T)] AT^T.  Those of F(r, m) (``cook_toom(r, m, points)``), or of
    the forward tile F(m, r) transposed: G = A (its A^T transposed: straight-line code for F(4,3)
    and F(4,5)), AT = its G^T.  oh0, ow0, offset, dilation, tb, scratch as in ``winograd_conv``
    (tiles of m x m outputs; ``scratch_size(..., weight_grad=True)`` elements, any values);
    dw_out: (K, C, r, r), overwritten.  Each thread sums its own (alpha^2, K, C) accumulator (in
    scratch) over a static share of the blocks; the shares are added in thread order, so the
    result is repeatable for a given thread count.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = dy.shape[1], Ho = dy.shape[2], Wo = dy.shape[3]
    cdef Py_ssize_t alpha = BT.shape[0], m = G.shape[1], r = AT.shape[0]
    cdef Py_ssize_t ph = offset[0], pw = offset[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t n_rows = oh0.shape[0], n_cols = ow0.shape[0]
    cdef Py_ssize_t tiles = N * n_rows * n_cols, P = alpha * alpha
    cdef Py_ssize_t parts = _gemm_parts, blk, first, count, t, e, tid
    cdef Py_ssize_t nblocks = count_blocks(tiles, tb, parts)
    cdef Py_ssize_t per_thread = P * (C + K) * tb
    cdef int bt_kind = transform_kind(BT, specialise), g_kind = transform_kind(G, specialise)
    check_tile(alpha, tb)
    if (AT.shape[1] != alpha or G.shape[0] != alpha or BT.shape[1] != alpha
            or dw_out.shape[0] != K or dw_out.shape[1] != C or dw_out.shape[2] != r
            or dw_out.shape[3] != r or dy.shape[0] != N):
        raise ValueError(f"winograd_weight_grad: x {tuple(x.shape)[:4]}, dy {tuple(dy.shape)[:4]}, "
                         f"BT {tuple(BT.shape)[:2]}, G {tuple(G.shape)[:2]}, AT "
                         f"{tuple(AT.shape)[:2]} and dw_out {tuple(dw_out.shape)[:4]} do not match")
    check_scratch(scratch.shape[0], C, K, alpha, tb, True)
    if parts > nblocks:
        parts = nblocks
    # the threads' accumulators (alpha^2, K, C) after the blocks' buffers, in the scratch kept by
    # the caller: a fresh array per call cost a page fault per 4 KB and, freed, a TLB shootdown
    # (8% of an (8,128,28,28) backward)
    cdef floating* acc = &scratch[0] + <Py_ssize_t> scratch_size(C, K, alpha, tb)
    cdef Py_ssize_t KC = K * C
    cdef floating* vt = acc + _gemm_parts * P * KC   # then the threads' (tb, C) points
    # per thread: tm (r*alpha, C), then one row (C) of dW
    tmp_arr = np.empty((_gemm_parts, (r * alpha + 1) * C), dtype=np.float64)
    cdef double[:, ::1] tmp = tmp_arr
    started_arr = np.zeros(parts, dtype=np.intc)   # per thread: its accumulator holds a sum
    cdef int[::1] started = started_arr
    with nogil:
        for blk in prange(nblocks, schedule="static", num_threads=parts):
            tid = threadid()
            first = block_start(blk, nblocks, tiles)
            count = block_start(blk + 1, nblocks, tiles) - first
            wgrad_block(&x[0, 0, 0, 0], C, H, W, &dy[0, 0, 0, 0], K, Ho, Wo, &BT[0, 0], bt_kind,
                        &G[0, 0], g_kind, m, alpha, &oh0[0], n_rows, &ow0[0], n_cols,
                        first, count, ph, pw, dh, dw, tb, &scratch[tid * per_thread],
                        acc + tid * P * KC, started[tid], vt + tid * tb * C)
            started[tid] = 1
        for t in range(parts):  # a thread the runtime did not start: its sum is zero
            if not started[t]:
                for e in range(P * KC):
                    acc[t * P * KC + e] = 0
        weight_grad_from_points(acc, K, C, AT, tmp, parts, parts, dw_out)
    return dw_out


# the fused backward for few input channels (dx and dweight in one pass over dy)
include "_winograd_backward.pxi"
