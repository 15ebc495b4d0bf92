"""Rectangles of NCHW device arrays: ``window`` (cut out, zeros beyond the edges) and ``paste``
(write a block into a larger array, optionally on a strided grid).

Twins of the NumPy slicing in the dispatcher ``cnncore_kernels.window``, same signatures (blocks
with their halo, the tile loop, shift-and-stitch), so dense prediction never leaves the GPU.
Inputs are trusted (validated above): 4-D float32 device arrays; ``window`` reads any strides,
``paste`` writes into a C-contiguous array.  Offsets may be negative or reach past the end.
"""

from __future__ import annotations

from typing import Any

from numba import cuda, float32

from cnncore_kernels.cuda import _launch as L

__all__ = ["paste", "window"]


@cuda.jit
def _window(x, r0, c0, out, n):
    # out: (N, C, h, w) C-contiguous; out[a, b, i, j] = x[a, b, r0 + i, c0 + j], 0 outside x
    H, W = x.shape[2], x.shape[3]
    C, h, w = out.shape[1], out.shape[2], out.shape[3]
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        a, b, i, j = L.unravel4(t, C, h, w)
        r = r0 + i
        c = c0 + j
        v = float32(0.0)
        if r >= 0 and r < H and c >= 0 and c < W:
            v = x[a, b, r, c]
        out[a, b, i, j] = v


@cuda.jit
def _paste(src, dst, r0, c0, sr, sc, n):
    # dst[a, b, r0 + i*sr, c0 + j*sc] = src[a, b, i, j] for the (i, j) that land inside dst
    H, W = dst.shape[2], dst.shape[3]
    C, h, w = src.shape[1], src.shape[2], src.shape[3]
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        a, b, i, j = L.unravel4(t, C, h, w)
        r = r0 + i * sr
        c = c0 + j * sc
        if r >= 0 and r < H and c >= 0 and c < W:
            dst[a, b, r, c] = src[a, b, i, j]


def _view(a: Any) -> Any:
    """A Numba device array viewing ``a`` (CuPy / PyTorch CUDA wrapped without a copy)."""
    return a if hasattr(a, "__cuda_ndarray__") else cuda.as_cuda_array(a)


def window(x: Any, rows: tuple[int, int], cols: tuple[int, int]) -> Any:
    """``x[:, :, r0:r1, c0:c1]`` as a new C-contiguous device array, for any ``r0 < r1``,
    ``c0 < c1`` (negative or past the end), zeros outside ``x`` (N, C, H, W)."""
    x = _view(x)
    (r0, r1), (c0, c1) = rows, cols
    if (r0, r1, c0, c1) == (0, x.shape[2], 0, x.shape[3]):
        return L.device(x)  # the whole array: itself, or a contiguous copy
    out = L.empty((x.shape[0], x.shape[1], r1 - r0, c1 - c0))
    if out.size:
        blocks, threads = L.config(out.size)
        _window[blocks, threads](x, int(r0), int(c0), out, out.size)
    return out


def paste(dst: Any, src: Any, r0: int, c0: int, step: tuple[int, int] = (1, 1)) -> Any:
    """``dst[:, :, r0::sr, c0::sc][:, :, :h, :w] = src`` in place (the part that lands inside
    ``dst``); ``src`` (N, C, h, w), ``dst`` (N, C, H, W) C-contiguous.  Returns ``dst``."""
    dst, src = L.inplace(dst), _view(src)
    if tuple(src.shape[:2]) != tuple(dst.shape[:2]) or src.ndim != 4 or dst.ndim != 4:
        raise ValueError(
            f"paste needs (N, C, h, w) into (N, C, H, W): src {tuple(src.shape)}, "
            f"dst {tuple(dst.shape)}"
        )
    if src.size:
        blocks, threads = L.config(src.size)
        _paste[blocks, threads](src, dst, int(r0), int(c0), int(step[0]), int(step[1]), src.size)
    return dst
