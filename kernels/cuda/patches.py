"""Patch scanning on the device: gather a batch of pixels' patches, put their scores in place.

Twins of the NumPy indexing in the dispatcher ``cnncore_kernels.patches``, same signatures.
Pixel ``p`` of a block's ``N * h * w`` pixels is image ``p // (h*w)``, row ``(p % (h*w)) // w``,
column ``p % w``; its patch is ``block[n, :, i:i+Ph, j:j+Pw]``.  Inputs are trusted (validated
above): float32 device arrays, pixel indices int64 in range.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from cnncore_kernels.cuda import _launch as L

__all__ = ["gather_patches", "prepare", "scatter_scores"]


@cuda.jit
def _gather(block, pixels, use_pixels, start, h, w, out, n):
    # out: (B, C, Ph, Pw); out[b, c, u, v] = block[img, c, i + u, j + v] for pixel p of batch
    # row b (p = pixels[start + b] when use_pixels, else start + b)
    C, Ph, Pw = out.shape[1], out.shape[2], out.shape[3]
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        b, c, u, v = L.unravel4(t, C, Ph, Pw)
        p = start + b
        if use_pixels:
            p = pixels[p]
        img = p // (h * w)
        rest = p - img * (h * w)
        i = rest // w
        j = rest - i * w
        out[b, c, u, v] = block[img, c, i + u, j + v]


@cuda.jit
def _scatter(scores, start, out, n):
    # out: (N, K, h, w); scores: (B, K) of pixels start .. start + B - 1
    K, h, w = out.shape[1], out.shape[2], out.shape[3]
    for t in range(cuda.grid(1), n, cuda.gridsize(1)):
        k = t % K
        p = start + t // K
        img = p // (h * w)
        rest = p - img * (h * w)
        out[img, k, rest // w, rest % w] = scores[t // K, k]


def prepare(block: Any, pixels: Any) -> tuple[Any, Any]:
    """The block C-contiguous on the device (once per scan, not per batch) and the host int64
    pixel list (or None) copied to the device."""
    pix = None if pixels is None else cuda.to_device(np.ascontiguousarray(pixels, dtype=np.int64))
    return L.device(block), pix


def gather_patches(
    block: Any, hw: tuple[int, int], patch: tuple[int, int], start: int, count: int, pixels: Any
) -> Any:
    """The ``(count, C, Ph, Pw)`` patches of pixels ``start .. start + count - 1`` of the block
    (or of ``pixels[start : start + count]``, an int64 device array, when given)."""
    block = L.device(block)
    use = pixels is not None
    pix = L.device(pixels, "int64") if use else L.empty((1,), "int64")
    out = L.empty((int(count), int(block.shape[1]), int(patch[0]), int(patch[1])))
    blocks, threads = L.config(out.size)
    _gather[blocks, threads](block, pix, use, int(start), int(hw[0]), int(hw[1]), out, out.size)
    return out


def scatter_scores(scores: Any, start: int, out: Any) -> Any:
    """Write the ``(B, K)`` scores of pixels ``start .. start + B - 1`` into ``out`` (N, K, h, w),
    C-contiguous, in place; returns ``out``."""
    scores, out = L.device(scores), L.inplace(out)
    if scores.size:
        blocks, threads = L.config(scores.size)
        _scatter[blocks, threads](scores, int(start), out, scores.size)
    return out
