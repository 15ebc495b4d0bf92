"""Dispatcher for patch scanning (every pixel's patch through a classifier): NumPy on the CPU or
the Numba CUDA twin.

Pixel ``p`` of a block's ``N * h * w`` pixels is image ``p // (h*w)``, row ``(p % (h*w)) // w``,
column ``p % w``; its patch is ``block[n, :, i:i+Ph, j:j+Pw]``.  Twin signatures
(``cnncore_kernels.cuda.patches`` matches these; inputs validated by
``cnncore.dense.patchwise.scan_patches``: a (N, C, h + Ph - 1, w + Pw - 1) block, pixel indices
int64 in range):

- ``prepare(block, pixels) -> (block, pixels)``: both where the kernels want them, once per scan
  (on the GPU: the block C-contiguous, the host int64 pixel list, or None, copied to the device).
- ``gather_patches(block, hw, patch, start, count, pixels) -> (count, C, Ph, Pw)``: the patches of
  pixels ``start .. start + count - 1`` (of ``pixels[start : start + count]`` when not None).
- ``scatter_scores(scores, start, out) -> out``: the ``(B, K)`` scores of pixels
  ``start .. start + B - 1`` written into ``out`` (N, K, h, w), C-contiguous, in place.

The CPU twin is NumPy indexing of a sliding-window view, a namespace of the same names here.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def prepare(block, pixels):
    # inputs validated by cnncore.dense.patchwise.scan_patches
    return twin(block, _CPU, "patches").prepare(block, pixels)


@pooled
def gather_patches(block, hw, patch, start, count, pixels):
    # inputs validated by cnncore.dense.patchwise.scan_patches
    return twin(block, _CPU, "patches").gather_patches(block, hw, patch, start, count, pixels)


@pooled
def scatter_scores(scores, start, out):
    # inputs validated by cnncore.dense.patchwise.scan_patches (scores' shape checked)
    return twin(out, _CPU, "patches").scatter_scores(scores, start, out)


def _gather_cpu(block, hw, patch, start, count, pixels):
    h, w = hw
    win = sliding_window_view(block, tuple(patch), axis=(2, 3))  # (N, C, h, w, Ph, Pw), a view
    idx = np.arange(start, start + count) if pixels is None else pixels[start : start + count]
    n, rest = np.divmod(idx, h * w)
    i, j = np.divmod(rest, w)
    return win[n, :, i, j]  # (B, C, Ph, Pw): advanced indices first, then the slices


def _scatter_cpu(scores, start, out):
    N, K, h, w = out.shape
    scores = np.asarray(scores)
    n, rest = np.divmod(np.arange(start, start + scores.shape[0]), h * w)
    out.reshape(N, K, h * w)[n, :, rest] = scores  # (B, K): advanced indices first
    return out


# the CPU twin: the names and signatures of cnncore_kernels.cuda.patches
_CPU = SimpleNamespace(
    prepare=lambda block, pixels: (block, pixels),
    gather_patches=_gather_cpu,
    scatter_scores=_scatter_cpu,
)
