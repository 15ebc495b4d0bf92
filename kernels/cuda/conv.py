"""CUDA convolution: im2col / col2im kernels and conv2d forward and backward (im2col + SGEMM).

Twins of ``cnncore_kernels._conv`` with the same signatures.  Inputs are trusted (validated in
``cnncore.functional``): float32 device arrays, NCHW, output sizes >= 1.

The column buffer holds a chunk: several whole images (``nb`` images, all ``Ho`` output rows) when
one image's columns fit ``COL_BUDGET`` elements, else ``nr`` output rows of one image.  Column
``q`` of a chunk is image ``n0 + q // (nr*Wo)``, output pixel ``(row0 + (q % (nr*Wo)) // Wo,
q % Wo)``.  The GEMMs run batched over the chunk's images (grid axis z, or summed for dW).
col2im is a gather: one thread per input element adds the column entries that read it.
"""

from __future__ import annotations

from typing import Any

from numba import cuda, float32

from cnncore_kernels.cuda import _launch as L
from cnncore_kernels.cuda._gemm import ROW_BIAS, gemm, gemm_strided
from cnncore_kernels.geometry import out_size

__all__ = ["col2im", "conv2d_backward", "conv2d_forward", "gemm", "im2col"]

# Elements of the column buffer (128 MB in float32); tests lower it to exercise the chunking.
COL_BUDGET = 1 << 25
# Grid axis z holds at most this many images of one chunk.
MAX_BATCH = 65535


@cuda.jit
def _im2col(x, n0, row0, nr, nb, kh, kw, sh, sw, ph, pw, dh, dw, Wo, col):
    # x: (N, C, H, W); col: flat (C*kh*kw, Q), Q = nb*nr*Wo:
    # col[(c*kh + i)*kw + j, q] = x[n0 + z, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    S = nr * Wo
    Q = nb * S
    for t in range(cuda.grid(1), C * kh * kw * Q, cuda.gridsize(1)):
        rr = t // Q
        q = t - rr * Q
        j = rr % kw
        i = (rr // kw) % kh
        c = rr // (kh * kw)
        z = q // S
        p = q - z * S
        h = (row0 + p // Wo) * sh - ph + i * dh
        w = (p % Wo) * sw - pw + j * dw
        v = float32(0.0)
        if h >= 0 and h < H and w >= 0 and w < W:
            v = x[n0 + z, c, h, w]
        col[t] = v


@cuda.jit
def _col2im(col, n0, row0, nr, nb, h0, nh, kh, kw, sh, sw, ph, pw, dh, dw, Wo, accumulate, dx):
    # Gather: the thread of dx[n0 + z, c, h, w] (h in [h0, h0 + nh)) sums the entries of col
    # (flat (C*kh*kw, nb*nr*Wo), the chunk's layout) that im2col read from that element.
    C, W = dx.shape[1], dx.shape[3]
    S = nr * Wo
    Q = nb * S
    for t in range(cuda.grid(1), nb * C * nh * W, cuda.gridsize(1)):
        z, c, h, w = L.unravel4(t, C, nh, W)
        h += h0
        s = float32(0.0)
        for i in range(kh):
            u = h + ph - i * dh  # = oh * sh for the output row oh that reads row h at tap i
            if u < 0 or u % sh != 0:
                continue
            oh = u // sh - row0
            if oh >= nr or oh < 0:
                continue
            for j in range(kw):
                v = w + pw - j * dw  # = ow * sw likewise
                if v < 0 or v % sw != 0:
                    continue
                ow = v // sw
                if ow >= Wo:
                    continue
                s += col[((c * kh + i) * kw + j) * Q + z * S + oh * Wo + ow]
        if accumulate:
            dx[n0 + z, c, h, w] += s
        else:
            dx[n0 + z, c, h, w] = s


def _out_hw(H, W, kh, kw, stride, padding, dilation):
    return (
        out_size(H, kh, stride[0], padding[0], dilation[0]),
        out_size(W, kw, stride[1], padding[1], dilation[1]),
    )


def _chunks(N: int, Ho: int, Wo: int, R: int):
    """(n0, nb, row0, nr) chunks covering the batch, each at most COL_BUDGET column elements."""
    P = Ho * Wo
    if R * P <= COL_BUDGET:
        nb = max(1, min(N, MAX_BATCH, COL_BUDGET // (R * P)))
        for n0 in range(0, N, nb):
            yield n0, min(nb, N - n0), 0, Ho
    else:
        nr = max(1, min(Ho, COL_BUDGET // (R * Wo)))
        for n in range(N):
            for row0 in range(0, Ho, nr):
                yield n, 1, row0, min(nr, Ho - row0)


def _chunk_elems(N: int, Ho: int, Wo: int, R: int) -> int:
    return max(nb * nr * Wo for _, nb, _, nr in _chunks(N, Ho, Wo, R)) * R


def _launch_im2col(x4, n0, row0, nr, nb, k, s, p, d, Wo, col):
    n = x4.shape[1] * k[0] * k[1] * nb * nr * Wo
    blocks, threads = L.config(n)
    _im2col[blocks, threads](
        x4, n0, row0, nr, nb, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], Wo, col
    )


def _launch_col2im(col, n0, row0, nr, nb, k, s, p, d, Wo, dx4, whole):
    """Gather a chunk's columns into dx4; ``whole`` (the chunk has every output row) overwrites."""
    H = dx4.shape[2]
    if whole:
        h0, h1 = 0, H
    else:  # only the input rows the chunk's output rows read; dx4 was zeroed, add into it
        h0 = max(0, row0 * s[0] - p[0])
        h1 = min(H, (row0 + nr - 1) * s[0] - p[0] + (k[0] - 1) * d[0] + 1)
        if h1 <= h0:
            return
    n = nb * dx4.shape[1] * (h1 - h0) * dx4.shape[3]
    blocks, threads = L.config(n)
    _col2im[blocks, threads](
        col,
        n0,
        row0,
        nr,
        nb,
        h0,
        h1 - h0,
        k[0],
        k[1],
        s[0],
        s[1],
        p[0],
        p[1],
        d[0],
        d[1],
        Wo,
        int(not whole),
        dx4,
    )


def im2col(x: Any, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    """Column matrix of one image. x: (C, H, W) -> (C*kh*kw, Ho*Wo)."""
    x = L.device(x)
    C, H, W = x.shape
    Ho, Wo = _out_hw(H, W, kernel[0], kernel[1], stride, padding, dilation)
    col = L.empty((C * kernel[0] * kernel[1], Ho * Wo))
    _launch_im2col(
        x.reshape(1, C, H, W), 0, 0, Ho, 1, kernel, stride, padding, dilation, Wo, L.flat(col)
    )
    return col


def col2im(
    col: Any, input_shape: Any, kernel: Any, stride: Any, padding: Any, dilation: Any
) -> Any:
    """Adjoint of ``im2col`` (a gather, no atomics). col: (C*kh*kw, Ho*Wo) -> (C, H, W)."""
    col = L.device(col)
    C, H, W = (int(v) for v in input_shape)
    Ho, Wo = _out_hw(H, W, kernel[0], kernel[1], stride, padding, dilation)
    dx = L.empty((C, H, W))
    _launch_col2im(
        L.flat(col),
        0,
        0,
        Ho,
        1,
        kernel,
        stride,
        padding,
        dilation,
        Wo,
        dx.reshape(1, C, H, W),
        True,
    )
    return dx


def _pointwise(kh, kw, stride, padding):
    return kh == 1 and kw == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def conv2d_forward(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    """y = conv2d(x, weight) + bias.  x: (N, C, H, W), weight: (K, C, kh, kw), bias: (K,) or None.

    Returns y: (N, K, Ho, Wo) on the device.  1x1 / stride 1 / no padding is one batched GEMM on
    x itself; everything else is im2col on chunks + a GEMM batched over the chunk's images, with
    the bias added in the GEMM's epilogue.
    """
    x, weight = L.device(x), L.device(weight)
    bias = None if bias is None else L.device(bias)
    N, C, H, W = x.shape
    K, _, kh, kw = weight.shape
    Ho, Wo = _out_hw(H, W, kh, kw, stride, padding, dilation)
    P, R = Ho * Wo, C * kh * kw
    y = L.empty((N, K, Ho, Wo))
    wf, yf = L.flat(weight), L.flat(y)
    if _pointwise(kh, kw, stride, padding):  # y[n] (K, P) = W (K, C) @ x[n] (C, P)
        for n0 in range(0, N, MAX_BATCH):
            nb = min(MAX_BATCH, N - n0)
            gemm_strided(
                K,
                P,
                C,
                wf,
                C,
                L.flat(x),
                P,
                yf,
                P,
                b_off=n0 * C * P,
                b_bs=C * P,
                c_off=n0 * K * P,
                c_bs=K * P,
                nz=nb,
                bias=bias,
                bias_mode=ROW_BIAS,
            )
        return y
    col = L.workspace("col", _chunk_elems(N, Ho, Wo, R))
    for n0, nb, row0, nr in _chunks(N, Ho, Wo, R):
        S = nr * Wo
        _launch_im2col(x, n0, row0, nr, nb, (kh, kw), stride, padding, dilation, Wo, col)
        # y[n0+z][:, row0*Wo : row0*Wo + S] (K, S) = W (K, R) @ col_z (R, S), z < nb
        gemm_strided(
            K,
            S,
            R,
            wf,
            R,
            col,
            nb * S,
            yf,
            P,
            b_bs=S,
            c_off=n0 * K * P + row0 * Wo,
            c_bs=K * P,
            nz=nb,
            bias=bias,
            bias_mode=ROW_BIAS,
        )
    return y


def conv2d_backward(
    dy: Any,
    x: Any,
    weight: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    need_dx: bool = True,
    need_dweight: bool = True,
    need_dbias: bool = True,
) -> tuple[Any, Any, Any]:
    """Gradients of conv2d.  dy: (N, K, Ho, Wo) -> (dx (N,C,H,W), dweight (K,C,kh,kw), dbias (K,)).

    Entries not asked for are None.  dW sums the chunk's images inside one GEMM; dx is a batched
    GEMM into a column buffer followed by the col2im gather.
    """
    dy, x, weight = L.device(dy), L.device(x), L.device(weight)
    N, C, H, W = x.shape
    K, _, kh, kw = weight.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    P, R = Ho * Wo, C * kh * kw
    dyf, wf = L.flat(dy), L.flat(weight)
    dbias = L.sum_middle(dy, N, K, P) if need_dbias else None
    dweight = L.empty((K, C, kh, kw)) if need_dweight else None
    dx = None
    if need_dx:
        dx = L.empty((N, C, H, W))
    if not (need_dx or need_dweight):
        return dx, dweight, dbias
    if _pointwise(kh, kw, stride, padding):
        xf = L.flat(x)
        if need_dweight:  # dW (K, C) = sum_n dy[n] (K, P) @ x[n]^T (P, C)
            gemm_strided(
                K,
                C,
                P,
                dyf,
                P,
                xf,
                P,
                L.flat(dweight),
                C,
                trans_b=True,
                a_bs=K * P,
                b_bs=C * P,
                n_red=N,
            )
        if need_dx:  # dx[n] (C, P) = W^T (C, K) @ dy[n] (K, P)
            for n0 in range(0, N, MAX_BATCH):
                gemm_strided(
                    C,
                    P,
                    K,
                    wf,
                    C,
                    dyf,
                    P,
                    L.flat(dx),
                    P,
                    trans_a=True,
                    b_off=n0 * K * P,
                    b_bs=K * P,
                    c_off=n0 * C * P,
                    c_bs=C * P,
                    nz=min(MAX_BATCH, N - n0),
                )
        return dx, dweight, dbias
    chunks = list(_chunks(N, Ho, Wo, R))
    whole = chunks[0][3] == Ho
    if need_dx and not whole:
        dx = L.zeros((N, C, H, W))
    size = _chunk_elems(N, Ho, Wo, R)
    col = L.workspace("col", size) if need_dweight else None
    dcol = L.workspace("dcol", size) if need_dx else None
    for index, (n0, nb, row0, nr) in enumerate(chunks):
        S = nr * Wo
        off = n0 * K * P + row0 * Wo  # dy[n0][:, row0*Wo] : the chunk's first dy column
        if need_dweight:
            _launch_im2col(x, n0, row0, nr, nb, (kh, kw), stride, padding, dilation, Wo, col)
            # dW (K, R) (+)= sum_z dy_z (K, S) @ col_z^T (S, R)
            gemm_strided(
                K,
                R,
                S,
                dyf,
                P,
                col,
                nb * S,
                L.flat(dweight),
                R,
                trans_b=True,
                a_off=off,
                a_bs=K * P,
                b_bs=S,
                n_red=nb,
                beta=0.0 if index == 0 else 1.0,
            )
        if need_dx:
            # dcol_z (R, S) = W^T (R, K) @ dy_z (K, S), z < nb
            gemm_strided(
                R,
                S,
                K,
                wf,
                R,
                dyf,
                P,
                dcol,
                nb * S,
                trans_a=True,
                b_off=off,
                b_bs=K * P,
                c_bs=S,
                nz=nb,
            )
            _launch_col2im(
                dcol, n0, row0, nr, nb, (kh, kw), stride, padding, dilation, Wo, dx, whole
            )
    return dx, dweight, dbias
