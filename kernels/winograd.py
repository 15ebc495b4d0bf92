"""Winograd convolution (CPU): the transform matrices, the tile grid, forward and gradients.

F(m x m, r x r) computes an m x m output tile of an r x r convolution from an alpha x alpha input
tile (alpha = m + r - 1) with alpha^2 multiplications instead of m^2 r^2:
``Y = A^T [(G g G^T) * (B^T d B)] A`` (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016).  The matrices come from the Cook-Toom construction on the points in ``TILES``
(all in this one table), derived exactly with fractions in ``cook_toom``.

The transforms are exact in real arithmetic; in floating point they amplify rounding, more for
larger tiles.  Measured float32 error (relative Frobenius norm against float64 im2col;
standard-normal x and weights, 12x12 maps, 8 filters, worst of 3 seeds; asserted in
tests/kernels/test_winograd.py):

=======  =====  ===========  ===========================  ======================================
tile     alpha  multiplies   finite points                float32 error, C = 16 / 64 / 512 / 2048
=======  =====  ===========  ===========================  ======================================
F(2,3)   4      2.25x fewer  0, 1, -1                     1.5e-7  2.2e-7  4.0e-7  4.3e-7
F(4,3)   6      4x fewer     0, 1, -1, 2, -2              1.1e-6  1.7e-6  2.6e-6  2.7e-6
F(6,3)   8      5.06x fewer  0, +-1, +-2, +-1/2           2.4e-6  4.2e-6  6.5e-6  7.2e-6
F(2,5)   6      2.78x fewer  0, 1, -1, 2, -2              1.2e-6  1.6e-6  2.9e-6  3.1e-6
F(3,5)   7      4.59x fewer  0, +-1, +-2, 1/2             1.7e-6  2.1e-6  3.7e-6  4.3e-6
F(4,5)   8      6.25x fewer  0, +-1, +-2, +-1/2           1.8e-6  2.6e-6  4.5e-6  4.8e-6
=======  =====  ===========  ===========================  ======================================

Measured again on an Intel Xeon with AVX-512 (2026-12), with the element-wise GEMMs summing at
most 256 channels per call (``SUMC`` in _winograd.pyx; before, OpenBLAS's AVX-512 kernel summed
all channels in one running sum: F(2,5) 5.3e-6 at C = 512, 1.1e-5 at 2048), C = 16 / 64 / 512 /
2048: F(2,3) 1.7e-7 2.7e-7 4.8e-7 5.2e-7; F(4,3) 1.1e-6 1.0e-6 1.3e-6 1.4e-6; F(6,3) 2.4e-6
2.2e-6 2.7e-6 2.8e-6; F(2,5) 1.1e-6 2.0e-6 4.1e-6 3.9e-6; F(3,5) 1.7e-6 1.5e-6 2.2e-6 2.2e-6;
F(4,5) 1.9e-6 1.9e-6 2.3e-6 2.5e-6.

(float32 im2col: about 1.5e-7 .. 3e-7.)  In float64 every tile stays below 1e-13 relative.  The
points 0, +-1, +-1/2 instead of 0, +-1, +-2 for F(4,3) and F(2,5) measured the same error.

Speed (effective GFLOP/s per CPU-second, provisional: shared 2-core Zen 4 under heavy load,
2026-12): F(4,3) ran 1.1-1.5x faster than F(2,3) and F(6,3) on (8,64,56,56) and (128,256,8,8)
3x3 layers.  F(4,5) ran 1.0-1.36x faster than F(3,5) and 1.5-2x faster than F(2,5) on four
5x5 layers (pixel65's fc4 (1,128,288,288)->256 dilation 8: 710 against 522 and 365).  So
``DEFAULT_TILE`` is F(4,3) and F(4,5), both well under the 1e-5 error limit.  Re-checked on a
shared 2-core Zen 3 (AVX2, load 3-4, 2026-12, CPU time, medians of 5 interleaved rounds, after
the transforms of the default tiles were specialised): F(4,3) 1.1-1.7x faster than F(6,3) and
F(2,3) on (8,64,56,56), (8,128,28,28), (128,64,32,32); F(4,5) 1.8-2.1x faster than F(3,5) and
F(2,5) on (64,64,15,15) and (1,32,256,256) dilation 2.  (The other tiles run partly generic
transforms, so this confirms the choice rather than ranking them.)
"""

from __future__ import annotations

import threading
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np

from cnncore_kernels import _winograd
from cnncore_kernels.buffers import pooled
from cnncore_kernels.geometry import out_size

# name -> (m, r, finite Cook-Toom points; the point at infinity is always added)
TILES = {
    "F(2,3)": (2, 3, (0, 1, -1)),
    "F(4,3)": (4, 3, (0, 1, -1, 2, -2)),
    "F(2,5)": (2, 5, (0, 1, -1, 2, -2)),
    "F(3,5)": (3, 5, (0, 1, -1, 2, -2, Fraction(1, 2))),
    "F(6,3)": (6, 3, (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))),
    "F(4,5)": (4, 5, (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))),
}

# Bound on the measured float32 relative Frobenius error of each tile (the table above, with a
# margin); "auto" only runs tiles bounded by 1e-5.
ERROR_BOUND = {
    "F(2,3)": 1e-6,
    "F(4,3)": 5e-6,
    "F(2,5)": 5e-6,
    "F(3,5)": 6e-6,
    "F(6,3)": 1e-5,
    "F(4,5)": 7e-6,
}

# Kernel size -> the tile algorithm="winograd" runs: the fastest measured tile whose float32 error
# stays below 1e-5 (see the table above).
DEFAULT_TILE = {3: "F(4,3)", 5: "F(4,5)"}

# Tiles per block (``tiles_per_block``): the element-wise GEMMs are (K, C) @ (C, tiles), so
# longer blocks spread each GEMM's packing of U[p] over more tiles, and shorter ones keep a block's
# buffers (alpha^2 (C + K) tiles elements) closer to the core.  Measured (2026-12, Zen 3,
# 2 threads, medians of 11-13 interleaved rounds, forward / weight gradient ms): with 64 channels
# 64 tiles beat 128 (128x64x32x32: 61 / 55 against 67 / 60; 64x64x15x15 5x5: 15.8 / 16.7 against
# 20.2 / 17.3; 8x64x56x56: 12.8 / 13.4 against 12.1 / 14.4); with 256 channels 256 tiles beat 128
# (128x256x8x8: 42 / 45 against 49 / 52; 32x96x27x27->256 5x5: 104 / 99 against 106 / 103);
# with 128, 128 and 256 ran level.  So the block follows the larger channel count, 64 to 256.
# Re-checked with blocks of whole chunks (Intel Xeon with AVX-512, 2 threads, the settings
# alternated call by call in one process, 400 pairs): on (8,64,56,56) 3x3, 128 and 256 tiles ran
# the forward 0.92x and 0.87x, dx 0.94x and 0.86x as fast as 64.
MIN_TILES_PER_BLOCK = 64
MAX_TILES_PER_BLOCK = 256

# Tiles per block of the x86-64-v3 build's float32 GEMM stage (``_winograd.OWN_GEMM``: its own
# 6x16 kernel, ``wg_gemm6x16_f``, instead of OpenBLAS): one chunk.  Without OpenBLAS's packing
# per call, long blocks gain nothing, and a chunk's M (K alpha^2 16 elements) stays in L2 for the
# output transform, where a block of 256 tiles wrote and read 16.8 MB for (32,96,27,27)->256 5x5.
# Forward ms by tiles per block (2026-12, Zen 3, 2 threads, the sizes alternated call by call
# in one process; three runs).  16 / 32 / 48: (32,96,27,27)->256 5x5 38.5 / 39.0 / 39.5,
# (128,256,8,8) 19.5 / 20.6 / 21.4, (8,128,28,28) 4.61 / 4.61 / 4.88, (64,64,15,15) 5x5 5.92 /
# 6.04 / 5.98, (1,128,288,288)->256 5x5 dilation 8 124.6 / 127.7 / 132.5.  32 / 48 / 64 / 96:
# (32,96,27,27)->256 42.4 / 45.5 / 48.0 / 51.4, (128,256,8,8) 20.8 / 21.7 / 22.1 / 23.4.
# 64 / 128 / 256: (32,96,27,27)->256 52.4 / 57.4 / 63.5, (128,128,16,16) 20.9 / 22.1 / 24.9,
# where OpenBLAS with the same blocks ran 56.9 / 57.4 / 56.3 and 23.4 / 24.3 / 25.7.
OWN_GEMM_TILES_PER_BLOCK = 16

# The element-wise stage without GEMMs (``fused``): when the convolution has at most this many
# input channels, per chunk of 16 tiles and per filter the alpha^2 dot products over the channels
# run as vector loops straight into the output transform.  (K, C) @ (C, tiles) GEMMs that thin
# are mostly OpenBLAS's call, packing and beta overhead, and their (K, alpha^2, tiles) result
# leaves the cache before the output transform reads it.  Blocks are then smaller: nothing gains
# from long GEMMs, and the transformed inputs of a block (C alpha^2 tiles) stay in L1.  Medians of
# 7 interleaved rounds (2026-12, Zen 3, 2 threads) on (64,3,32,32)->64 5x5 and 3x3 and
# (8,8,56,56)->64 3x3: 16 tiles per block ran 8.9 / 5.9 / 2.6 ms, 32 tiles 9.1 / 5.3 / 3.1,
# 128 tiles 10.4 / 6.1 / 3.7; the GEMM stage (128 tiles) 12.8 / 6.3 / 3.2: 1.07-1.44x slower.
# (Not for few filters and many channels: the plain sums over 512 channels raised the float32
# error of F(2,5) from 3e-6 to 5e-6.)  Later (same machine, 15 interleaved rounds, A/B in one
# process), on (64,3,32,32)->64 5x5: the filters' weights laid out (K, alpha^2, C) and the loop
# over the channels unrolled, 0.85x the time; the next filter's output lines fetched ahead
# (``prefetch_outputs``), 0.83x; the products summed straight into the output transform's first
# pass for F(4,3) and F(4,5), 0.78-0.85x; together about 8 ms -> 4 ms, bit-identical results.
# 16 tiles per block still ran as fast as 32 and faster than 64 (5.3 / 5.3 / 6.6 ms).
FUSED_MAX_CHANNELS = 8
FUSED_TILES_PER_BLOCK = 16

# Output tiles written by non-temporal stores (``streams_output``): four neighbouring 4x4 tiles
# fill 64 bytes of each of their rows, so where the rows start on cache lines every such group
# overwrites whole lines, and reading each line first (an ordinary store's read for ownership)
# only doubles the memory traffic of an output too large to stay in the caches anyway.  Measured
# (2026-12, Intel Xeon with AVX-512, 2 threads, medians of 7 interleaved rounds, ms, ordinary
# against non-temporal stores): (64,3,32,32)->64 5x5 (16.8 MB out) 4.99 / 3.63;
# (128,64,32,32)->64 3x3 (33.6 MB) 47.5 / 42.8.  Smaller outputs keep ordinary stores (the next
# layer reads them from the cache).
STREAM_MIN_BYTES = 8 << 20

# The fused backward (``conv2d_backward_fused``) runs blocks of whole tile rows of at least this
# many tiles (the block is only the unit of the threads' work; the kernel runs it chunk by chunk).
FUSED_BACKWARD_BLOCK_TILES = 64


# The weight gradient's GEMMs are (K, tiles) @ (tiles, C), summed into the thread's (alpha^2, K, C)
# accumulator, which every block reads and writes once: 2.4 MB for K = C = 128 and alpha = 6,
# beyond L2.  From this many channels it takes the longest blocks, halving that traffic.
# Measured (2026-12, Zen 3, 2 threads, medians of 15-21 interleaved rounds, ms, 128 against 256
# tiles): (8,128,28,28)->128 3x3 14.5 / 12.9, 14.6 / 13.3, 11.5 / 11.2; (128,128,16,16) 56.1 /
# 49.4; (32,128,14,14) 18.0 / 15.3; (16,128,28,28) 5x5 41.6 / 34.4; (4,128,64,64) 27.7 / 24.1;
# (16,128,56,56) 81.3 / 79.3; (16,64,28,28)->128 15.1 / 14.5; (64,128,8,8) 9.2 / 9.8.  The
# forward, whose GEMMs sum over the channels, measured level (0.96-1.09x).  With 64 channels
# the shorter blocks stay faster (128x64x32x32: 52.3 ms with 64 tiles, 58.2 with 128).
WEIGHT_GRAD_LONG_BLOCK_CHANNELS = 128


def tiles_per_block(C: int, K: int, weight_grad: bool = False) -> int:
    """Tiles per block of the GEMM element-wise stage: max(C, K) rounded up to a multiple of 16,
    clipped to [MIN_TILES_PER_BLOCK, MAX_TILES_PER_BLOCK]; for the weight gradient
    (``weight_grad``) MAX_TILES_PER_BLOCK from WEIGHT_GRAD_LONG_BLOCK_CHANNELS channels up (see
    the measurements above)."""
    if weight_grad and max(C, K) >= WEIGHT_GRAD_LONG_BLOCK_CHANNELS:
        return MAX_TILES_PER_BLOCK
    return min(MAX_TILES_PER_BLOCK, max(MIN_TILES_PER_BLOCK, -(-max(C, K) // 16) * 16))


def _inverse(a):
    """Inverse of a square matrix of Fractions (Gauss-Jordan, exact)."""
    n = len(a)
    aug = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        piv = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[piv] = aug[piv], aug[col]
        p = aug[col][col]
        aug[col] = [v / p for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [v - f * w for v, w in zip(aug[r], aug[col], strict=True)]
    return [row[n:] for row in aug]


@cache
def cook_toom(m: int, r: int, points: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Winograd matrices of F(m, r): (AT (m, alpha), G (alpha, r), BT (alpha, alpha)).

    1-D correlation ``y[i] = sum_j g[j] d[i + j]`` (i < m, d of length alpha = m + r - 1) equals
    ``AT @ ((G @ g) * (BT @ d))``.  Built from polynomial multiplication by evaluation at the
    ``alpha - 1`` finite points and infinity: with V_n the (alpha, n) evaluation matrix (rows
    p^0 .. p^(n-1), the last row [0 .. 0, 1] for infinity), AT = V_m^T, G = V_r, BT = V_alpha^-T.
    Row j of BT is scaled by f_j = prod_{l != j} (p_j - p_l) and row j of G by 1 / f_j, so BT holds
    small integers for integer points (as in Lavin and Gray).
    """
    alpha = m + r - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != alpha - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} distinct finite points, got {points}")

    def vander(n):
        return [[p**i for i in range(n)] for p in pts] + [[Fraction(0)] * (n - 1) + [Fraction(1)]]

    inv = _inverse(vander(alpha))
    bt = [[inv[i][j] for i in range(alpha)] for j in range(alpha)]  # V_alpha^-T
    g = vander(r)
    for j, p in enumerate(pts):
        f = Fraction(1)
        for q in pts:
            if q != p:
                f *= p - q
        bt[j] = [v * f for v in bt[j]]
        g[j] = [v / f for v in g[j]]
    at = [list(col) for col in zip(*vander(m), strict=True)]
    as_f64 = lambda rows: np.array([[float(v) for v in row] for row in rows])  # noqa: E731
    return as_f64(at), as_f64(g), as_f64(bt)


def tile_matrices(tile: str):
    """(AT, G, BT) float64 of a tile name in ``TILES``."""
    m, r, pts = TILES[tile]
    return cook_toom(m, r, pts)


@lru_cache(maxsize=256)
def tile_origins(n_out: int, m: int, d: int) -> np.ndarray:
    """Output origins of the tiles along one axis, in increasing order (read-only: kept per
    (n_out, m, d), as every call of a layer asks for the same).

    With dilation d the outputs split into d interleaved sub-grids (o mod d); each is cut into
    tiles of m outputs, so a tile starting at o covers o, o + d, ..., o + (m-1) d.  The origins are
    exactly the o < n_out with (o mod m*d) < d.
    """
    o = np.arange(n_out, dtype=np.intp)
    origins = np.ascontiguousarray(o[o % (m * d) < d])
    origins.setflags(write=False)
    return origins


def transform_weight(weight, G, reuse=False, packed=False):
    """U (alpha^2, K, C) = G w G^T per filter, summed in float64, in weight's dtype.  (In Cython:
    numpy.einsum would call BLAS, whose spinning threads then compete with ours.)  ``reuse``:
    written into this thread's kept buffer (valid until the next call; fresh pages cost 0.4 ms
    of page faults for K = C = 128 and 3x3).  ``packed``: (alpha^2, K rounded up to 6, C) in
    panels of six filters, the layout the x86-64-v3 build's own GEMMs read (``_run``)."""
    K, C = weight.shape[:2]
    shape = (G.shape[0] ** 2, -(-K // 6) * 6 if packed else K, C)
    if reuse:
        n = shape[0] * shape[1] * C
        U = _scratch_buffer(n, weight.dtype, "filters")[:n].reshape(shape)
    else:
        U = np.empty(shape, dtype=weight.dtype)
    if weight.strides[2:] != (weight.shape[3] * weight.itemsize, weight.itemsize):
        weight = np.ascontiguousarray(weight)  # the kernel needs each filter's r x r contiguous
    _winograd.transform_weight(weight, G, U, packed)
    return U


@cache
def _rotated_kernel_G(tile):
    """G[:, ::-1] of ``tile``: G rot(w) G^T = (G J) w (G J)^T, J the reversal, so the input
    gradient transforms its kernel rotated by 180 degrees without a rotated copy.  Read-only: kept
    per tile, as ``tile_origins`` keeps its arrays."""
    _, G, _ = tile_matrices(tile)
    G_rot = np.ascontiguousarray(G[:, ::-1])
    G_rot.setflags(write=False)
    return G_rot


_scratch = threading.local()


def _scratch_buffer(n, dtype, use="blocks"):
    """A buffer of at least n elements, zeroed when made, kept per Python thread, dtype and use
    ("blocks": the kernels' scratch, "filters": the transformed filters) for reuse (fresh pages
    cost a page fault each: 7% of a (8,64,56,56) forward when allocated per call)."""
    key = f"{use}_{np.dtype(dtype).char}"
    buf = getattr(_scratch, key, None)
    if buf is None or buf.size < n:
        buf = _aligned(np.zeros, n, dtype)
        setattr(_scratch, key, buf)
    return buf


def _aligned(make, n, dtype):
    """``make(n, dtype)`` (np.empty or np.zeros) starting on a 64-byte line, a cache line: made
    through the kernels' memory handler (``buffers``), whose arrays all start on one.  NumPy's own
    large arrays start 16 bytes past a page, so that every other 32-byte vector of a scratch
    buffer straddled two lines, and no output row could be written as whole lines."""
    return pooled(make)(n, dtype=dtype)


def streams_output(shape, dtype, m, dilation):
    """Whether the forward writes its output tiles by non-temporal stores (``stream`` of
    ``winograd_conv``): float32 4x4 tiles of column dilation 1 or 2 (four tiles then fill 16
    consecutive columns) on rows that start on 64-byte lines, for an output of at least
    STREAM_MIN_BYTES."""
    N, K, Ho, Wo = shape
    return (
        np.dtype(dtype) == np.float32
        and m == 4
        and dilation[1] in (1, 2)
        and (dilation[0] * Wo) % 16 == 0
        and N * K * Ho * Wo * 4 >= STREAM_MIN_BYTES
    )


def _run(x, weight, G, tile, offset, dilation, out_hw, bias, relu=False, fused=None):
    # y = conv(x, weight) by the tiles of ``tile``, its filters transformed by G (the input
    # gradient passes the filters' (C, K) view and G for the rotated kernel)
    m, _, _ = TILES[tile]
    AT, _, BT = tile_matrices(tile)
    dt = x.dtype
    N = x.shape[0]
    K = weight.shape[0]
    Ho, Wo = out_hw
    if fused is None:
        fused = x.shape[1] <= FUSED_MAX_CHANNELS
    own_gemm = not fused and dt == np.float32 and _winograd.OWN_GEMM
    if fused:
        tb = FUSED_TILES_PER_BLOCK
    elif own_gemm:
        tb = OWN_GEMM_TILES_PER_BLOCK
    else:
        tb = tiles_per_block(x.shape[1], K)
    U = transform_weight(weight, G, reuse=True, packed=own_gemm)
    y = _aligned(np.empty, N * K * Ho * Wo, dt).reshape(N, K, Ho, Wo)
    _winograd.winograd_conv(
        np.ascontiguousarray(x),
        U,
        np.ascontiguousarray(BT, dtype=dt),
        np.ascontiguousarray(AT, dtype=dt),
        tile_origins(Ho, m, dilation[0]),
        tile_origins(Wo, m, dilation[1]),
        offset,
        dilation,
        y,
        bias,
        tb,
        _scratch_buffer(_winograd.scratch_size(x.shape[1], K, BT.shape[0], tb), dt),
        relu=relu,
        fused=fused,
        stream=streams_output(y.shape, dt, m, dilation),
        u_packed=own_gemm,
    )
    return y


def conv2d_forward(x, weight, bias, padding, dilation, tile, relu=False, fused=None):
    """Stride-1 conv2d by Winograd.  x (N, C, H, W), weight (K, C, r, r), bias (K,) or None ->
    y (N, K, Ho, Wo), with ReLU applied where y is written if ``relu``.  ``tile`` names an entry
    of ``TILES`` whose r matches the kernel.  ``fused``: the element-wise stage without GEMMs
    (None: for at most ``FUSED_MAX_CHANNELS`` input channels)."""
    _, G, _ = tile_matrices(tile)
    r = weight.shape[2]
    Ho = out_size(x.shape[2], r, 1, padding[0], dilation[0])
    Wo = out_size(x.shape[3], r, 1, padding[1], dilation[1])
    b = None if bias is None else np.ascontiguousarray(bias)
    return _run(x, weight, G, tile, padding, dilation, (Ho, Wo), b, relu, fused)


def conv2d_backward_input(dy, weight, input_hw, padding, dilation, tile, fused=None):
    """dx (N, C, H, W) of a stride-1 conv2d from dy (N, K, Ho, Wo), by Winograd (``fused`` as
    in ``conv2d_forward``).

    dx[n, c, h, w] = sum_{k,i,j} dy[n, k, h + p - i d, w + p - j d] w[k, c, i, j]: a stride-1
    convolution of dy with the kernel rotated by 180 degrees and transposed to (C, K, r, r), same
    dilation, padding (r-1) d - p (negative padding = cropping, handled by the same gather).
    """
    r = weight.shape[2]
    # the rotated kernel's transform, from the (C, K) view of the filters (no copy: 0.3 ms of
    # strided copying for 128x128 3x3 filters, 2% of that layer's backward)
    wt = np.asarray(weight).transpose(1, 0, 2, 3)
    offset = ((r - 1) * dilation[0] - padding[0], (r - 1) * dilation[1] - padding[1])
    return _run(
        dy, wt, _rotated_kernel_G(tile), tile, offset, dilation, input_hw, None, fused=fused
    )


def conv2d_backward_weight(x, dy, weight_shape, padding, dilation, tile):
    """dweight (K, C, r, r) of a stride-1 conv2d by Winograd; x (N, C, H, W), dy (N, K, Ho, Wo).

    Over each m x m output tile, dW[k, c, i, j] += sum_{a,b} dy[a, b] x[a + i, b + j] (steps of
    the dilation) is an r-output correlation of the alpha x alpha input tile with the m x m dy
    tile, computed as the adjoint of the forward tile: dW = G^T [sum over tiles (A dy A^T) *
    (B^T x B)] G with the forward's matrices (A = (A^T)^T).  The per-point products are summed
    over all tiles of the batch by GEMMs (K, tiles) @ (tiles, C).  Measured per CPU-second
    (provisional, loaded 2-core machine) 1.15-1.85x faster than the GEMM weight gradient on five
    3x3/5x5 training shapes.  Float32 errors (relative Frobenius, C = 16 to 2048, 12x12 maps)
    stay within the forward tile's bound: 0.8-0.9e-6 F(4,3), 1.4-1.6e-6 F(4,5), the same as with
    F(r, m)'s own matrices (``cook_toom(r, m, points)``), which it used before 2026-12-03.  With A,
    the dy tiles of F(4,3) and F(4,5) take the fused backward's straight-line pair sums
    (``dy_chunk``) instead of a dense 6x4 or 8x4 product.
    """
    m, r, _ = TILES[tile]
    AT, G, BT = tile_matrices(tile)
    dt = x.dtype
    K, C = int(weight_shape[0]), int(weight_shape[1])
    Ho, Wo = dy.shape[2:]
    tb = tiles_per_block(C, K, weight_grad=True)
    dw = np.empty((K, C, r, r), dtype=dt)
    _winograd.winograd_weight_grad(
        np.ascontiguousarray(x),
        np.ascontiguousarray(dy),
        np.ascontiguousarray(BT, dtype=dt),
        np.ascontiguousarray(AT.T, dtype=dt),
        np.ascontiguousarray(G.T),
        tile_origins(Ho, m, dilation[0]),
        tile_origins(Wo, m, dilation[1]),
        padding,
        dilation,
        tb,
        _scratch_buffer(_winograd.scratch_size(C, K, BT.shape[0], tb, True), dt),
        dw,
    )
    return dw


def backward_rows_per_block(oh0, alpha: int, dh: int, n_cols: int) -> int:
    """Tile rows per block of ``conv2d_backward_fused``: the fewest that give a block at least
    FUSED_BACKWARD_BLOCK_TILES tiles (or the whole image) and keep blocks two apart in one image
    off each other's input rows (its input gradient adds overlapping tiles onto dx, and blocks of
    one phase run at the same time).  oh0: the tiles' row origins (``tile_origins``)."""
    n = len(oh0)
    R = max(1, min(n, -(-FUSED_BACKWARD_BLOCK_TILES // n_cols)))
    while R < n and any(
        oh0[s + R - 1] + (alpha - 1) * dh >= oh0[s + 2 * R] for s in range(0, n - 2 * R, R)
    ):
        R += 1
    return R


def conv2d_backward_fused(
    dy, x, weight, padding, dilation, tile, need_dx=True, need_dweight=True, need_dbias=True
):
    """(dx, dweight, dbias) of a stride-1 conv2d with few input channels by the adjoint of
    Winograd ``tile`` (each may be skipped: None).  x (N, C, H, W), dy (N, K, Ho, Wo), weight
    (K, C, r, r).

    dy is transformed once per tile, Z = A dy A^T, and both gradients come from it (see
    ``_winograd_backward.pxi``): dweight = G^T [sum over tiles Z * (B^T x B)] G, and
    dx += B [sum_k U_k * Z_k] B^T over each tile's inputs; dbias from Z's point (1, 1), the
    tile's sum of dy (no separate pass over dy).  Per point the products are C-long vector
    updates, so this is for C up to FUSED_MAX_CHANNELS; the GEMM-stage Winograd handles more
    channels."""
    m, r, _ = TILES[tile]
    AT, G, BT = tile_matrices(tile)
    dt = x.dtype
    K, C = int(weight.shape[0]), int(weight.shape[1])
    Ho, Wo = dy.shape[2:]
    alpha = BT.shape[0]
    oh0 = tile_origins(Ho, m, dilation[0])
    ow0 = tile_origins(Wo, m, dilation[1])
    U = transform_weight(weight, G, reuse=True) if need_dx else None
    dx = np.zeros(x.shape, dtype=dt) if need_dx else None
    dw = np.empty((K, C, r, r), dtype=dt) if need_dweight else None
    db = np.empty(K, dtype=dt) if need_dbias else None
    A = np.ascontiguousarray(AT.T, dtype=dt)
    ones = [i for i in range(alpha) if (A[i] == 1).all()]  # the point 1: Z's tile sums
    n = _winograd.fused_backward_scratch_size(C, K, alpha, np.dtype(dt).itemsize)
    _winograd.winograd_backward_fused(
        np.ascontiguousarray(x),
        np.ascontiguousarray(dy),
        U,
        np.ascontiguousarray(BT, dtype=dt),
        A,
        np.ascontiguousarray(BT.T, dtype=dt),
        np.ascontiguousarray(G.T),
        oh0,
        ow0,
        padding,
        dilation,
        backward_rows_per_block(oh0, alpha, dilation[0], len(ow0)),
        _scratch_buffer(n, dt),
        dx,
        dw,
        db,
        ones[0],
    )
    return dx, dw, db
