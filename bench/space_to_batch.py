"""Space-to-batch: a stride-1 convolution dilated by ``(dh, dw)`` as an ordinary convolution over
the ``dh * dw`` interleaved sub-images (TensorFlow's atrous convolution), put back afterwards.

Sub-image ``(p, q)`` holds the pixels ``x[..., p::dh, q::dw]``; a dilated tap ``(a, b)`` of
output ``(u*dh + p, v*dw + q)`` reads ``x[u*dh + p + a*dh, ...]``, i.e. row ``u + a`` of sub-image
``p``, so the dilated convolution of ``x`` is the undilated convolution of every sub-image,
interleaved.  A strategy over ``cnncore.functional.conv2d``, measured against the direct kernels in
``bench/bench_dilated.py`` (the engine does not use it).
"""

from __future__ import annotations

import numpy as np

from cnncore.functional import conv2d, conv2d_backward
from cnncore_kernels.geometry import out_size


def to_batch(x: np.ndarray, d: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> (N*dh*dw, C, ceil(H/dh), ceil(W/dw)), zeros past the end."""
    N, C, H, W = x.shape
    dh, dw = d
    hs, ws = -(-H // dh), -(-W // dw)
    if (hs * dh, ws * dw) != (H, W):
        xp = np.zeros((N, C, hs * dh, ws * dw), dtype=x.dtype)
        xp[:, :, :H, :W] = x
        x = xp
    # (N, C, hs, dh, ws, dw) -> (N, dh, dw, C, hs, ws)
    xs = x.reshape(N, C, hs, dh, ws, dw).transpose(0, 3, 5, 1, 2, 4)
    return np.ascontiguousarray(xs).reshape(N * dh * dw, C, hs, ws)


def from_batch(ys: np.ndarray, n: int, d: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """Inverse of ``to_batch``: (N*dh*dw, K, hs, ws) -> (N, K, H, W), the first ``hw`` rows and
    columns."""
    dh, dw = d
    _, K, hs, ws = ys.shape
    y = ys.reshape(n, dh, dw, K, hs, ws).transpose(0, 3, 4, 1, 5, 2).reshape(n, K, hs * dh, ws * dw)
    return np.ascontiguousarray(y[:, :, : hw[0], : hw[1]])


def conv2d_s2b(x: np.ndarray, weight: np.ndarray, bias, dilation: tuple[int, int]) -> np.ndarray:
    """``conv2d(x, weight, bias, stride=1, padding=0, dilation=dilation)`` by space-to-batch."""
    N, _, H, W = x.shape
    _, _, kh, kw = weight.shape
    dh, dw = dilation
    ho, wo = out_size(H, kh, 1, 0, dh), out_size(W, kw, 1, 0, dw)
    ys = conv2d(to_batch(x, dilation), weight, bias)
    return from_batch(ys, N, dilation, (ho, wo))


def conv2d_s2b_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray, dilation: tuple[int, int], **need
) -> tuple:
    """Gradients of ``conv2d_s2b``: (dx, dweight, dbias) (``need_*`` as ``conv2d_backward``)."""
    N, C, H, W = x.shape
    _, _, kh, kw = weight.shape
    dh, dw = dilation
    xs = to_batch(x, dilation)
    hs, ws = xs.shape[2] - kh + 1, xs.shape[3] - kw + 1
    # dy on the full sub-image grid: zeros for the outputs past (ho, wo), which the forward dropped
    dyf = np.zeros((N, dy.shape[1], hs * dh, ws * dw), dtype=dy.dtype)
    dyf[:, :, : dy.shape[2], : dy.shape[3]] = dy
    dxs, dwt, db = conv2d_backward(to_batch(dyf, dilation), xs, weight, **need)
    dx = None if dxs is None else from_batch(dxs, N, dilation, (H, W))
    return dx, dwt, db
