"""CUDA pooling: max (with and without indices), average, channel max (maxout), global average.

Twins of ``cnncore_kernels._pooling`` with the same signatures and the same rules (see the
dispatcher ``cnncore_kernels.pooling``).  Inputs are trusted (validated in
``cnncore.functional.pooling``): float32 NCHW device arrays, int64 indices in range, every max-pool
window holds an input element.

Forward kernels run one thread per output and visit the window's taps in the CPU twin's order, so
values, indices and float32 sums agree exactly.  The backward kernels are gathers, one thread per
input element and no atomics.  The shared signature of ``max_pool2d_backward``, ``(dy, indices,
input_shape)``, carries no window geometry, so it derives each input row's candidate output rows
from the indices themselves: output row ``oh`` chose input rows
in ``[rmin[oh], rmax[oh]]`` (over the whole batch), so input row ``h`` can only have been chosen
by the rows ``oh`` from the first with ``rmax[oh] >= h`` to the last with ``rmin[oh] <= h``
(likewise columns).  That box is never larger than the one the geometry would give, and summing
its matches in (oh, ow) order reproduces the CPU scatter-add.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, float32, int64

from cnncore_kernels.cuda import _launch as L
from cnncore_kernels.cuda._launch import RED_THREADS  # a plain global: a compile-time constant
from cnncore_kernels.cuda.checks import first_out_of_range
from cnncore_kernels.geometry import out_size

NEG_INF = np.float32(-np.inf)


@cuda.jit(device=True)
def _first_tap(start, d):
    # index t of the first tap start + t*d that is >= 0
    if start >= 0:
        return 0
    return (-start + d - 1) // d


@cuda.jit(device=True)
def _valid_taps(start, k, d, size):
    # number of taps start + t*d (t < k) inside [0, size)
    t0 = _first_tap(start, d)
    if start + t0 * d >= size:
        return 0
    t1 = (size - 1 - start) // d + 1
    if t1 > k:
        t1 = k
    return t1 - t0 if t1 > t0 else 0


@cuda.jit(device=True)
def _window_max(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw):
    # (max, flat index h*W + w) over the valid taps of window (oh, ow), in window order; an element
    # replaces the running max when greater or NaN; -inf start at the first valid tap (CPU rule).
    H, W = x.shape[2], x.shape[3]
    h0 = oh * sh - ph
    w0 = ow * sw - pw
    i0 = _first_tap(h0, dh)
    j0 = _first_tap(w0, dw)
    best = NEG_INF
    arg = (h0 + i0 * dh) * W + w0 + j0 * dw
    for i in range(i0, kh):
        h = h0 + i * dh
        if h >= H:
            break
        for j in range(j0, kw):
            w = w0 + j * dw
            if w >= W:
                break
            v = x[n, c, h, w]
            if v > best or v != v:
                best = v
                arg = h * W + w
    return best, arg


@cuda.jit
def _max_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, y, idx):
    # y, idx: (N, C, Ho, Wo); one thread per output
    C, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, oh, ow = L.unravel4(t, C, Ho, Wo)
        best, arg = _window_max(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
        y[n, c, oh, ow] = best
        idx[n, c, oh, ow] = arg


@cuda.jit
def _max_pool_values(x, kh, kw, sh, sw, ph, pw, dh, dw, y):
    C, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, oh, ow = L.unravel4(t, C, Ho, Wo)
        best, _ = _window_max(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
        y[n, c, oh, ow] = best


@cuda.jit
def _index_bounds(idx, W, lo, hi):
    # Block b < Ho: lo[b], hi[b] = min, max of the chosen rows (idx // W) over output row b;
    # block Ho + b (b < Wo): min, max of the chosen columns (idx % W) over output column b.
    # (lo = large, hi = -1 when nothing was chosen.)  blockDim.x is a power of two.
    smin = cuda.shared.array(RED_THREADS, int64)
    smax = cuda.shared.array(RED_THREADS, int64)
    NC = idx.shape[0] * idx.shape[1]
    Ho, Wo = idx.shape[2], idx.shape[3]
    tid = cuda.threadIdx.x
    for b in range(cuda.blockIdx.x, Ho + Wo, cuda.gridDim.x):
        mn = int64(1) << 62
        mx = int64(-1)
        if b < Ho:
            for t in range(tid, NC * Wo, cuda.blockDim.x):
                q = t // Wo
                r = idx[q // idx.shape[1], q % idx.shape[1], b, t % Wo] // W
                mn = min(mn, r)
                mx = max(mx, r)
        else:
            for t in range(tid, NC * Ho, cuda.blockDim.x):
                q = t // Ho
                r = idx[q // idx.shape[1], q % idx.shape[1], t % Ho, b - Ho] % W
                mn = min(mn, r)
                mx = max(mx, r)
        smin[tid] = mn
        smax[tid] = mx
        mn, mx = L.block_min_max(smin, smax)
        if tid == 0:
            lo[b] = mn
            hi[b] = mx
        cuda.syncthreads()


@cuda.jit
def _candidate_ranges(lo, hi, H, W, Ho, Wo, first, last):
    # Item a < H (input row h = a): first[a] = first oh with hi[oh] >= h, last[a] = last oh with
    # lo[oh] <= h; item H + w likewise over the output columns (bounds at offset Ho).
    for a in range(cuda.grid(1), H + W, cuda.gridsize(1)):
        if a < H:
            v, off, n = a, 0, Ho
        else:
            v, off, n = a - H, Ho, Wo
        f = n
        e = -1
        for o in range(n):
            if hi[off + o] >= v and f == n:
                f = o
            if lo[off + o] <= v:
                e = o
        first[a] = f
        last[a] = e


@cuda.jit
def _max_pool_backward(dy, idx, first, last, dx):
    # dx[n, c, h, w] = sum of dy[n, c, oh, ow] with idx[n, c, oh, ow] == h*W + w over the candidate
    # box (rows first[h]..last[h], columns first[H+w]..last[H+w]), in (oh, ow) order.
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        me = h * W + w
        s = float32(0.0)
        for oh in range(first[h], last[h] + 1):
            for ow in range(first[H + w], last[H + w] + 1):
                if idx[n, c, oh, ow] == me:
                    s += dy[n, c, oh, ow]
        dx[n, c, h, w] = s


@cuda.jit
def _avg_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, include_pad, y):
    # y[n, c, oh, ow] = (sum of the valid taps, in window order) / divisor
    C, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    H, W = x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, c, oh, ow = L.unravel4(t, C, Ho, Wo)
        h0 = oh * sh - ph
        w0 = ow * sw - pw
        s = float32(0.0)
        for i in range(_first_tap(h0, dh), kh):
            h = h0 + i * dh
            if h >= H:
                break
            for j in range(_first_tap(w0, dw), kw):
                w = w0 + j * dw
                if w >= W:
                    break
                s += x[n, c, h, w]
        if include_pad:
            y[n, c, oh, ow] = s / float32(kh * kw)
        else:
            rows = float32(_valid_taps(h0, kh, dh, H))
            cols = float32(_valid_taps(w0, kw, dw, W))
            y[n, c, oh, ow] = s / (rows * cols)


@cuda.jit
def _avg_pool_backward(dy, kh, kw, sh, sw, ph, pw, dh, dw, include_pad, dx):
    # Gather: dx[n, c, h, w] sums dy / divisor over the (output, tap) pairs that read (h, w),
    # taps in (i, j) order.
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    Ho, Wo = dy.shape[2], dy.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        s = float32(0.0)
        for i in range(kh):
            u = h + ph - i * dh  # = oh * sh for the output row oh that read row h at tap i
            if u < 0:
                break
            if u % sh != 0:
                continue
            oh = u // sh
            if oh >= Ho:
                continue
            rows = float32(kh) if include_pad else float32(_valid_taps(oh * sh - ph, kh, dh, H))
            for j in range(kw):
                v = w + pw - j * dw  # = ow * sw likewise
                if v < 0:
                    break
                if v % sw != 0:
                    continue
                ow = v // sw
                if ow >= Wo:
                    continue
                cols = float32(kw) if include_pad else float32(_valid_taps(ow * sw - pw, kw, dw, W))
                s += dy[n, c, oh, ow] / (rows * cols)
        dx[n, c, h, w] = s


@cuda.jit
def _channel_max(x, k, y, idx):
    # y[n, g, h, w] = max over channels g*k .. g*k+k-1 (greater or NaN replaces), idx = channel
    G, H, W = y.shape[1], y.shape[2], y.shape[3]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        n, g, h, w = L.unravel4(t, G, H, W)
        best = x[n, g * k, h, w]
        arg = 0
        for c in range(1, k):
            v = x[n, g * k + c, h, w]
            if v > best or v != v:
                best = v
                arg = c
        y[n, g, h, w] = best
        idx[n, g, h, w] = g * k + arg


@cuda.jit
def _channel_max_backward(dy, idx, k, dx):
    # dx[n, c, h, w] = dy[n, c // k, h, w] where idx chose channel c, else 0
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        g = c // k
        v = float32(0.0)
        if idx[n, g, h, w] == c:
            v = dy[n, g, h, w]
        dx[n, c, h, w] = v


@cuda.jit
def _broadcast_planes(dy, divisor, dx):
    # dx[n, c, h, w] = dy[n, c, 0, 0] / divisor
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        q = t // (H * W)
        dx[q // C, q % C, (t // W) % H, t % W] = dy[q // C, q % C, 0, 0] / divisor


def _out_hw(H, W, kernel, stride, padding, dilation):
    return (
        out_size(H, kernel[0], stride[0], padding[0], dilation[0]),
        out_size(W, kernel[1], stride[1], padding[1], dilation[1]),
    )


def _geom(kernel, stride, padding, dilation):
    return (
        kernel[0],
        kernel[1],
        stride[0],
        stride[1],
        padding[0],
        padding[1],
        dilation[0],
        dilation[1],
    )


def max_pool2d(x: Any, kernel: Any, stride: Any, padding: Any, dilation: Any) -> tuple[Any, Any]:
    """Max pooling with indices.  x: (N, C, H, W) -> (y (N, C, Ho, Wo), int64 indices alike)."""
    x = L.device(x)
    N, C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, kernel, stride, padding, dilation)
    y = L.empty((N, C, Ho, Wo))
    idx = L.empty((N, C, Ho, Wo), np.int64)
    blocks, threads = L.config(y.size)
    _max_pool[blocks, threads](x, *_geom(kernel, stride, padding, dilation), y, idx)
    return y, idx


def max_pool2d_values(x: Any, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    """Max pooling without indices (inference).  x: (N, C, H, W) -> y (N, C, Ho, Wo)."""
    x = L.device(x)
    N, C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, kernel, stride, padding, dilation)
    y = L.empty((N, C, Ho, Wo))
    blocks, threads = L.config(y.size)
    _max_pool_values[blocks, threads](x, *_geom(kernel, stride, padding, dilation), y)
    return y


def max_pool2d_backward(dy: Any, indices: Any, input_shape: Any) -> Any:
    """dx (N, C, H, W) from dy and indices (N, C, Ho, Wo): overlapping windows add up (gather).

    Each input element sums the dy of the outputs in its candidate box whose index names it; the
    box comes from the indices themselves (one extra pass over them; right for any indices in
    range).
    """
    dy, idx = L.device(dy), L.device(indices, np.int64)
    N, C, H, W = (int(s) for s in input_shape)
    Ho, Wo = dy.shape[2], dy.shape[3]
    first, last = L.empty((H + W,), np.int64), L.empty((H + W,), np.int64)
    blocks, threads = L.config(H + W)
    lo, hi = L.empty((Ho + Wo,), np.int64), L.empty((Ho + Wo,), np.int64)
    _index_bounds[L.red_blocks(Ho + Wo), L.red_threads()](idx, W, lo, hi)
    _candidate_ranges[blocks, threads](lo, hi, H, W, Ho, Wo, first, last)
    dx = L.empty((N, C, H, W))
    blocks, threads = L.config(dx.size)
    _max_pool_backward[blocks, threads](dy, idx, first, last, dx)
    return dx


def max_pool2d_backward_checked(dy: Any, indices: Any, input_shape: Any) -> Any:
    """(dx, bad): bad None and dx as ``max_pool2d_backward``, or bad (flat position, value) of the
    first index outside [0, H*W) and dx None (the range check is its own pass, on the device,
    before the gather)."""
    bad = first_out_of_range(L.device(indices, np.int64), int(input_shape[2]) * int(input_shape[3]))
    if bad is not None:
        return None, bad
    return max_pool2d_backward(dy, indices, input_shape), None


def avg_pool2d(
    x: Any, kernel: Any, stride: Any, padding: Any, dilation: Any, count_include_pad: bool
) -> Any:
    """Average pooling.  x: (N, C, H, W) -> y (N, C, Ho, Wo); padding counts as zeros."""
    x = L.device(x)
    N, C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, kernel, stride, padding, dilation)
    y = L.empty((N, C, Ho, Wo))
    blocks, threads = L.config(y.size)
    _avg_pool[blocks, threads](
        x, *_geom(kernel, stride, padding, dilation), int(bool(count_include_pad)), y
    )
    return y


def avg_pool2d_backward(
    dy: Any,
    input_shape: Any,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    count_include_pad: bool,
) -> Any:
    """dx (N, C, H, W) of avg_pool2d from dy (N, C, Ho, Wo); a gather over input elements."""
    dy = L.device(dy)
    dx = L.empty(tuple(int(s) for s in input_shape))
    blocks, threads = L.config(dx.size)
    _avg_pool_backward[blocks, threads](
        dy, *_geom(kernel, stride, padding, dilation), int(bool(count_include_pad)), dx
    )
    return dx


def channel_max_pool(x: Any, pool_size: int) -> tuple[Any, Any]:
    """Maxout.  x: (N, C, H, W) -> (y (N, C//k, H, W), indices int64: absolute input channel)."""
    x = L.device(x)
    N, C, H, W = x.shape
    k = int(pool_size)
    y = L.empty((N, C // k, H, W))
    idx = L.empty((N, C // k, H, W), np.int64)
    blocks, threads = L.config(y.size)
    _channel_max[blocks, threads](x, k, y, idx)
    return y, idx


def channel_max_pool_backward(dy: Any, indices: Any, input_shape: Any) -> Any:
    """dx (N, C, H, W) of channel_max_pool from dy and indices (N, C//k, H, W)."""
    dy, idx = L.device(dy), L.device(indices, np.int64)
    dx = L.empty(tuple(int(s) for s in input_shape))
    blocks, threads = L.config(dx.size)
    _channel_max_backward[blocks, threads](dy, idx, dx.shape[1] // dy.shape[1], dx)
    return dx


def global_avg_pool2d(x: Any) -> Any:
    """x: (N, C, H, W) -> y (N, C, 1, 1), the mean of each plane (float32 tree sums)."""
    x = L.device(x)
    N, C, H, W = x.shape
    y = L.empty((N, C, 1, 1))
    L.sum_middle(x, 1, N * C, H * W, divisor=H * W, out=L.flat(y))
    return y


def global_avg_pool2d_backward(dy: Any, input_shape: Any) -> Any:
    """dx (N, C, H, W) = dy (N, C, 1, 1) / (H*W), broadcast over each plane."""
    dy = L.device(dy)
    N, C, H, W = (int(s) for s in input_shape)
    dx = L.empty((N, C, H, W))
    blocks, threads = L.config(dx.size)
    _broadcast_planes[blocks, threads](dy, L.f32(H * W), dx)
    return dx
