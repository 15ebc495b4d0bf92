"""CUDA LRN (across channels) and LCN: twins of ``cnncore_kernels._normalization``, same signatures.

Inputs are trusted (validated in ``cnncore.functional.normalization``): float32 NCHW device
arrays, ``size >= 1``, LRN with ``k > 0`` and ``alpha >= 0``, LCN with ``sigma > 0`` and
``threshold > 0``.  The formulas, the order of every sum and the float32 scalars follow the CPU
twin (see its docstrings for the derivations); one thread per element or plane pixel.

LCN works on planes (N, H, W): ``E[z] = B(mean_c z)`` with ``B`` the separable zero-padded filter
along W then H times ``1/E[1]`` (``inv_dh[h] * inv_dw[w]``); its adjoint filters with the reversed
taps.  The per-image mean of ``s`` (divisor "mean") and its gradient are float64 block sums.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float32, float64

from cnncore_kernels.cuda import _launch as L
from cnncore_kernels.cuda._launch import RED_THREADS  # a plain global: a compile-time constant

# pow modes of S ** -beta (the CPU twin's special cases)
POW_GENERAL, POW_075, POW_05, POW_1 = 0, 1, 2, 3


def _pow_mode(beta: float) -> int:
    return {0.75: POW_075, 0.5: POW_05, 1.0: POW_1}.get(float(beta), POW_GENERAL)


@cuda.jit(device=True)
def _pow_neg(s, beta, mode):
    # s ** -beta for s > 0
    if mode == 1:
        b = math.sqrt(s)
        return float32(1.0) / (b * math.sqrt(b))
    if mode == 2:
        return float32(1.0) / math.sqrt(s)
    if mode == 3:
        return float32(1.0) / s
    return math.pow(s, -beta)


@cuda.jit(device=True)
def _lrn_base(x, n, c, h, w, before, after, k, scale):
    # S = k + scale * sum_{j = c-before .. c+after, 0 <= j < C} x[n, j, h, w]^2
    lo = max(c - before, 0)
    hi = min(c + after + 1, x.shape[1])
    s = float32(0.0)
    for j in range(lo, hi):
        v = x[n, j, h, w]
        s += v * v
    return k + scale * s


@cuda.jit
def _lrn(x, before, after, k, scale, beta, mode, y):
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        s = _lrn_base(x, n, c, h, w, before, after, k, scale)
        y[n, c, h, w] = x[n, c, h, w] * _pow_neg(s, beta, mode)


@cuda.jit
def _lrn_backward_prep(dy, x, before, after, k, scale, beta, mode, sp, tt):
    # sp = S ** -beta, tt = dy * x * S ** -beta / S   (per element)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        s = _lrn_base(x, n, c, h, w, before, after, k, scale)
        p = _pow_neg(s, beta, mode)
        sp[n, c, h, w] = p
        tt[n, c, h, w] = dy[n, c, h, w] * x[n, c, h, w] * p / s


@cuda.jit
def _lrn_backward(dy, x, sp, tt, before, after, coef, dx):
    # dx[j] = dy[j] * S[j]**-beta - coef * x[j] * sum_{c = j-after .. j+before} tt[c]
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, j, h, w = L.unravel4(t, C, H, W)
        acc = float32(0.0)
        for c in range(max(j - after, 0), min(j + before + 1, C)):
            acc += tt[n, c, h, w]
        dx[n, j, h, w] = dy[n, j, h, w] * sp[n, j, h, w] - coef * x[n, j, h, w] * acc


def local_response_norm(x: Any, size: int, alpha: float, beta: float, k: float) -> Any:
    """LRN across channels, as torch.  x: (N, C, H, W) -> y: (N, C, H, W)."""
    x = L.device(x)
    y = L.empty(x.shape)
    blocks, threads = L.config(x.size)
    _lrn[blocks, threads](
        x,
        size // 2,
        (size - 1) // 2,
        L.f32(k),
        L.f32(alpha / size),
        L.f32(beta),
        _pow_mode(beta),
        y,
    )
    return y


def local_response_norm_backward(
    dy: Any, x: Any, size: int, alpha: float, beta: float, k: float
) -> Any:
    """Gradient of LRN.  dy, x: (N, C, H, W) -> dx: (N, C, H, W)."""
    dy, x = L.device(dy), L.device(x)
    sp, tt, dx = L.empty(x.shape), L.empty(x.shape), L.empty(x.shape)
    before, after = size // 2, (size - 1) // 2
    blocks, threads = L.config(x.size)
    _lrn_backward_prep[blocks, threads](
        dy, x, before, after, L.f32(k), L.f32(alpha / size), L.f32(beta), _pow_mode(beta), sp, tt
    )
    _lrn_backward[blocks, threads](dy, x, sp, tt, before, after, L.f32(2 * alpha * beta / size), dx)
    return dx


# ----------------------------------------------------------------------------------------------
# LCN


@cuda.jit
def _channel_mean(x, inv, m):
    # m[n, h, w] = (sum_c x[n, c, h, w]) * inv
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), m.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        s = float32(0.0)
        for c in range(C):
            s += x[n, c, h, w]
        m[n, h, w] = s * inv


@cuda.jit
def _filter_w(src, taps, before, dst):
    # dst[n, h, w] = sum_i taps[i] * src[n, h, w - before + i], zero outside [0, W)
    H, W = src.shape[1], src.shape[2]
    for t in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        s = float32(0.0)
        for i in range(taps.size):
            u = w - before + i
            if u >= 0 and u < W:
                s += taps[i] * src[n, h, u]
        dst[n, h, w] = s


@cuda.jit
def _filter_h(src, taps, before, border, inv_dh, inv_dw, dst):
    # dst[n, h, w] = sum_i taps[i] * src[n, h - before + i, w] over rows inside [0, H); with
    # ``border`` the result is then scaled by inv_dh[h] * inv_dw[w] (the 1/E[1] correction).
    H, W = src.shape[1], src.shape[2]
    for t in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        s = float32(0.0)
        for i in range(taps.size):
            r = h - before + i
            if r >= 0 and r < H:
                s += taps[i] * src[n, r, w]
        if border:
            s = s * (inv_dh[h] * inv_dw[w])
        dst[n, h, w] = s


@cuda.jit
def _centered_moments(x, dy, ex, inv, with_dy, vv, sdyv, sdy):
    # v = x - ex: vv = (sum_c v^2) * inv; with_dy: sdyv = sum_c dy v, sdy = sum_c dy
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), vv.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        e = ex[n, h, w]
        a = float32(0.0)
        b = float32(0.0)
        d = float32(0.0)
        for c in range(C):
            v = x[n, c, h, w] - e
            a += v * v
            if with_dy:
                g = dy[n, c, h, w]
                b += g * v
                d += g
        vv[n, h, w] = a * inv
        if with_dy:
            sdyv[n, h, w] = b
            sdy[n, h, w] = d


@cuda.jit
def _sqrt_planes(s):
    # s = sqrt(s), s: (N, H, W)
    H, W = s.shape[1], s.shape[2]
    for t in range(cuda.grid(1), s.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        s[n, h, w] = math.sqrt(s[n, h, w])


@cuda.jit
def _image_mean(s, threshold, cmax, craw):
    # Block per image n: craw[n] = mean of s[n] (float64 sum), cmax[n] = max(craw[n], threshold)
    part = cuda.shared.array(RED_THREADS, float64)
    H, W = s.shape[1], s.shape[2]
    tid = cuda.threadIdx.x
    for n in range(cuda.blockIdx.x, s.shape[0], cuda.gridDim.x):
        acc = float64(0.0)
        for p in range(tid, H * W, cuda.blockDim.x):
            acc += s[n, p // W, p % W]
        part[tid] = acc
        total = L.block_sum(part)
        if tid == 0:
            cm = float32(total / (H * W))
            craw[n] = cm
            cmax[n] = cm if cm >= threshold else threshold
        cuda.syncthreads()


@cuda.jit
def _den(s, cmax, threshold, mean_divisor, den):
    # "mean": den = s where s > cmax[n] else cmax[n]; "fixed": den = s where s > threshold else 1
    H, W = s.shape[1], s.shape[2]
    for t in range(cuda.grid(1), s.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        v = s[n, h, w]
        if mean_divisor:
            den[n, h, w] = v if v > cmax[n] else cmax[n]
        else:
            den[n, h, w] = v if v > threshold else float32(1.0)


@cuda.jit
def _divide(x, ex, den, y):
    # y = (x - ex) / den, planes broadcast over channels
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        y[n, c, h, w] = (x[n, c, h, w] - ex[n, h, w]) / den[n, h, w]


@cuda.jit
def _sum_v(m, ex, C, sv):
    # sv = C * (m - ex): sum over channels of v = x - E[x]
    H, W = m.shape[1], m.shape[2]
    for t in range(cuda.grid(1), m.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        sv[n, h, w] = C * (m[n, h, w] - ex[n, h, w])


@cuda.jit
def _d_den(g, den):
    # g = -g / den^2  (g held sum_c dy v)
    H, W = g.shape[1], g.shape[2]
    for t in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        d = den[n, h, w]
        g[n, h, w] = -g[n, h, w] / (d * d)


@cuda.jit
def _d_c(g, s, cmax, craw, threshold, dc):
    # Block per image: dc[n] = sum of g where den is c (craw >= threshold and not s > cmax), float64
    part = cuda.shared.array(RED_THREADS, float64)
    H, W = g.shape[1], g.shape[2]
    tid = cuda.threadIdx.x
    for n in range(cuda.blockIdx.x, g.shape[0], cuda.gridDim.x):
        acc = float64(0.0)
        if craw[n] >= threshold:
            for p in range(tid, H * W, cuda.blockDim.x):
                if not (s[n, p // W, p % W] > cmax[n]):
                    acc += g[n, p // W, p % W]
        part[tid] = acc
        total = L.block_sum(part)
        if tid == 0:
            dc[n] = total
        cuda.syncthreads()


@cuda.jit
def _d_q(g, s, cmax, dc, inv_hw, threshold, mean_divisor, inv_dh, inv_dw):
    # g = ds / (2 s) * (inv_dh * inv_dw) (0 where s == 0), ds as in the CPU twin's docstring
    H, W = g.shape[1], g.shape[2]
    for t in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        sp = s[n, h, w]
        if mean_divisor:
            dd = g[n, h, w] if sp > cmax[n] else float32(0.0)
            dd = dd + float32(dc[n] * inv_hw)
        else:
            dd = g[n, h, w] if sp > threshold else float32(0.0)
        a = inv_dh[h] * inv_dw[w]
        g[n, h, w] = dd / (float32(2.0) * sp) * a if sp > 0 else float32(0.0)


@cuda.jit
def _r2_sdy(r2, sdy, den, sv, two_over_c, inv_dh, inv_dw):
    # r2 *= 2 / C;  sdy = (sdy / den + r2 * sv) * (inv_dh * inv_dw)
    H, W = r2.shape[1], r2.shape[2]
    for t in range(cuda.grid(1), r2.size, cuda.gridsize(1)):
        n, h, w = L.unravel3(t, H, W)
        a = inv_dh[h] * inv_dw[w]
        r = r2[n, h, w] * two_over_c
        r2[n, h, w] = r
        sdy[n, h, w] = (sdy[n, h, w] / den[n, h, w] + r * sv[n, h, w]) * a


@cuda.jit
def _lcn_grad(x, dy, ex, den, r2, tq, inv_c, dx):
    # dx = dy / den + (x - ex) * r2 - tq * inv_c   (tq: B^T(sum_c dv) before the 1/C)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, h, w = L.unravel4(t, C, H, W)
        tv = tq[n, h, w] * inv_c
        dx[n, c, h, w] = (
            dy[n, c, h, w] / den[n, h, w] + (x[n, c, h, w] - ex[n, h, w]) * r2[n, h, w] - tv
        )


class _Window:
    """LCN taps on the device (and reversed, for the adjoint) with 1/E[1] along H and W."""

    def __init__(self, size: int, sigma: float, H: int, W: int) -> None:
        from cnncore_kernels.normalization import lcn_window

        taps64, before = lcn_window(size, sigma, max(H, W))
        taps = np.ascontiguousarray(taps64, dtype=np.float32)
        self.nt, self.before = taps.shape[0], before
        self.rbefore = self.nt - 1 - before
        self.taps = cuda.to_device(taps)
        self.rtaps = cuda.to_device(np.ascontiguousarray(taps[::-1]))
        self.inv_dh = cuda.to_device(1 / self._border_weight(taps, H))
        self.inv_dw = cuda.to_device(1 / self._border_weight(taps, W))

    def _border_weight(self, taps: np.ndarray, n: int) -> np.ndarray:
        # E[1] along one axis: the sum of the taps landing inside [0, n), in tap order, float32
        out = np.zeros(n, dtype=np.float32)
        for i in range(self.nt):
            off = i - self.before
            lo, hi = max(0, -off), min(n, n - off)
            out[lo:hi] += taps[i] * np.float32(1.0)
        return out


def _smooth(win, src, dst, tmp, reverse=False, border=True):
    """dst = B(src) (border-corrected filter) or, with reverse, the plain adjoint filter."""
    taps, before = (win.rtaps, win.rbefore) if reverse else (win.taps, win.before)
    blocks, threads = L.config(src.size)
    _filter_w[blocks, threads](src, taps, before, tmp)
    _filter_h[blocks, threads](tmp, taps, before, int(border), win.inv_dh, win.inv_dw, dst)


def _lcn_forward_planes(x, win, threshold, mean_divisor, dy=None):
    """The planes both directions need: ex, s (sqrt of E[v^2]), den, cmax, craw and, with dy,
    m (mean_c v^2), sdyv (sum_c dy v), sdy (sum_c dy), sv (sum_c v)."""
    N, C, H, W = x.shape
    planes = {name: L.empty((N, H, W)) for name in ("m", "ex", "s", "den", "tmp")}
    cmax, craw = L.empty((N,)), L.empty((N,))
    m, ex, s, den, tmp = (planes[k] for k in ("m", "ex", "s", "den", "tmp"))
    inv = L.f32(1.0 / C)
    blocks, threads = L.config(N * H * W)
    _channel_mean[blocks, threads](x, inv, m)
    _smooth(win, m, ex, tmp)
    if dy is not None:
        planes["sv"] = L.empty((N, H, W))
        _sum_v[blocks, threads](m, ex, L.f32(C), planes["sv"])
        planes["sdyv"], planes["sdy"] = L.empty((N, H, W)), L.empty((N, H, W))
        _centered_moments[blocks, threads](x, dy, ex, inv, 1, m, planes["sdyv"], planes["sdy"])
    else:
        _centered_moments[blocks, threads](x, x, ex, inv, 0, m, m, m)
    _smooth(win, m, s, tmp)
    _sqrt_planes[blocks, threads](s)
    thr = L.f32(threshold)
    if mean_divisor:
        _image_mean[L.red_blocks(N), L.red_threads()](s, thr, cmax, craw)
    _den[blocks, threads](s, cmax, thr, int(mean_divisor), den)
    return planes, cmax, craw


def local_contrast_norm(x: Any, size: int, sigma: float, threshold: float, divisor: str) -> Any:
    """LCN (docs/contract/arrays.rst).  x: (N, C, H, W) -> y: (N, C, H, W).

    divisor: "mean" or "fixed"."""
    x = L.device(x)
    N, C, H, W = x.shape
    win = _Window(size, sigma, H, W)
    planes, _, _ = _lcn_forward_planes(x, win, threshold, divisor == "mean")
    y = L.empty(x.shape)
    blocks, threads = L.config(x.size)
    _divide[blocks, threads](x, planes["ex"], planes["den"], y)
    return y


def local_contrast_norm_backward(
    dy: Any, x: Any, size: int, sigma: float, threshold: float, divisor: str
) -> Any:
    """Exact gradient of LCN.  dy, x: (N, C, H, W) -> dx: (N, C, H, W) (CPU twin's derivation)."""
    dy, x = L.device(dy), L.device(x)
    N, C, H, W = x.shape
    mean_divisor = divisor == "mean"
    win = _Window(size, sigma, H, W)
    pl, cmax, craw = _lcn_forward_planes(x, win, threshold, mean_divisor, dy=dy)
    g, s, den, tmp = pl["sdyv"], pl["s"], pl["den"], pl["tmp"]
    thr = L.f32(threshold)
    blocks, threads = L.config(N * H * W)
    _d_den[blocks, threads](g, den)
    dc = L.zeros((N,), np.float64)
    if mean_divisor:
        _d_c[L.red_blocks(N), L.red_threads()](g, s, cmax, craw, thr, dc)
    _d_q[blocks, threads](
        g, s, cmax, dc, L.f32(1.0 / (H * W)), thr, int(mean_divisor), win.inv_dh, win.inv_dw
    )
    r2 = pl["m"]  # mean_c v^2 is no longer needed
    _smooth(win, g, r2, tmp, reverse=True, border=False)
    _r2_sdy[blocks, threads](r2, pl["sdy"], den, pl["sv"], L.f32(2.0 / C), win.inv_dh, win.inv_dw)
    tq = g
    _smooth(win, pl["sdy"], tq, tmp, reverse=True, border=False)
    dx = L.empty(x.shape)
    blocks, threads = L.config(x.size)
    _lcn_grad[blocks, threads](x, dy, pl["ex"], den, r2, tq, L.f32(1.0 / C), dx)
    return dx
