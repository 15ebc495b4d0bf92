"""Dispatcher for rectangles of NCHW arrays (the blocks and halos of dense inference): NumPy on the
CPU or the Numba CUDA twin.

Twin signatures (``cnncore_kernels.cuda.window`` matches these; inputs trusted: 4-D arrays, float32
on the GPU; offsets may be negative or reach past the end):

- ``window(x, rows, cols) -> out``: ``x[:, :, r0:r1, c0:c1]`` for ``(r0, r1), (c0, c1) = rows,
  cols`` with ``r0 < r1``, ``c0 < c1``, zeros outside ``x`` (N, C, H, W); a new C-contiguous array
  (the whole of ``x``: ``x`` itself when it is already C-contiguous).
- ``paste(dst, src, r0, c0, step=(1, 1)) -> dst``: ``dst[:, :, r0 + i*sr, c0 + j*sc] =
  src[:, :, i, j]`` in place for the ``(i, j)`` that land inside ``dst`` (N, C, H, W),
  C-contiguous; ``src`` (N, C, h, w).

The CPU twin is NumPy slicing, a namespace of the same names in this module.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def window(x, rows, cols):
    # inputs trusted (validated by cnncore.dense)
    return twin(x, _CPU, "window").window(x, rows, cols)


@pooled
def paste(dst, src, r0, c0, step=(1, 1)):
    # inputs trusted (the caller checked src's shape)
    return twin(dst, _CPU, "window").paste(dst, src, r0, c0, step)


def _span(o, s, n, size):
    """``(lo, hi)``: the i in ``[0, n)`` with ``0 <= o + i*s < size`` are ``lo <= i < hi``."""
    lo = max(0, -(o // s))
    return lo, max(lo, min(n, -(-(size - o) // s)))


def _window_cpu(x, rows, cols):
    N, C, H, W = x.shape
    (r0, r1), (c0, c1) = rows, cols
    if (r0, r1, c0, c1) == (0, H, 0, W):
        return np.ascontiguousarray(x)
    out = np.zeros((N, C, r1 - r0, c1 - c0), dtype=x.dtype)
    return _paste_cpu(out, x, -r0, -c0)


def _paste_cpu(dst, src, r0, c0, step=(1, 1)):
    (sr, sc), (H, W), (h, w) = step, dst.shape[2:], src.shape[2:]
    i0, i1 = _span(r0, sr, h, H)
    j0, j1 = _span(c0, sc, w, W)
    if i1 > i0 and j1 > j0:
        rs = slice(r0 + i0 * sr, r0 + (i1 - 1) * sr + 1, sr)
        cs = slice(c0 + j0 * sc, c0 + (j1 - 1) * sc + 1, sc)
        dst[:, :, rs, cs] = src[:, :, i0:i1, j0:j1]
    return dst


# the CPU twin: the names and signatures of cnncore_kernels.cuda.window
_CPU = SimpleNamespace(window=_window_cpu, paste=_paste_cpu)
