"""Float64 loop references and finite differences shared by the tests (deliberately naive)."""

from __future__ import annotations

import numpy as np


def conv2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Direct 7-loop convolution in float64 (slow; tiny shapes only).  Grouped when ``w`` has
    fewer input channels than ``x``: filter ``k`` reads the channels of its group."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    Kg = K // (C // Cg)  # filters per group
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, K, Ho, Wo))
    for n in range(N):
        for k in range(K):
            for oh in range(Ho):
                for ow in range(Wo):
                    s = 0.0 if b is None else float(b[k])
                    for c in range(Cg):
                        xc = (k // Kg) * Cg + c
                        for i in range(kh):
                            h = oh * sh - ph + i * dh
                            if h < 0 or h >= H:
                                continue
                            for j in range(kw):
                                ww = ow * sw - pw + j * dw
                                if 0 <= ww < W:
                                    s += w[k, c, i, j] * x[n, xc, h, ww]
                    y[n, k, oh, ow] = s
    return y


def numerical_grad(f, x, eps=1e-6):
    """Central differences of the scalar function f at x (float64), same shape as x."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def tol(dtype):
    """(rtol, atol) per dtype."""
    return (1e-4, 1e-4) if np.dtype(dtype) == np.float32 else (1e-10, 1e-10)
