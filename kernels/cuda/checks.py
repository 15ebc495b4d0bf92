"""Range checks of integer device arrays (pooling indices, class targets) without copying them:
the twin of ``cnncore_kernels._checks``, same signature (see the dispatcher
``cnncore_kernels.checks``).

``first_out_of_range`` runs one pass over the array on the device and brings back a single
integer (the first offending position, found with an atomic min), so validating the indices of a
backward pass costs a kernel launch and an 8-byte transfer instead of a copy of the whole array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from cnncore_kernels.cuda import _launch as L

__all__ = ["first_out_of_range"]

_NONE = np.iinfo(np.int64).max


@cuda.jit
def _first_bad(a, n, inner, G, step, bound, use_ignore, ignore, first):
    # a: flat integer array of n elements.  Element i belongs to group g = (i // inner) % G; it is
    # fine when a[i] - g*step lies in [0, bound) or (use_ignore and a[i] == ignore).
    # first[0] = min over the offending i (left at int64 max when none).
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = a[i]
        if use_ignore and v == ignore:
            continue
        g = (i // inner) % G
        r = v - g * step
        if r < 0 or r >= bound:
            cuda.atomic.min(first, 0, i)


def first_out_of_range(
    a: Any,
    bound: int,
    *,
    groups: tuple[int, int, int] = (1, 1, 0),
    ignore: int | None = None,
) -> tuple[int, int] | None:
    """``None`` when every entry of the integer device array ``a`` is valid, else ``(position,
    value)`` of the first invalid one (flat position).

    Entry ``i`` is valid when ``a[i] - g*step`` is in ``[0, bound)``, with ``(inner, G, step) =
    groups`` and ``g = (i // inner) % G`` (channel max pooling: each index names a channel of its
    own group), or when it equals ``ignore``.
    """
    a = L.device(a, None)
    flat = L.flat(a)
    inner, G, step = (int(t) for t in groups)
    first = cuda.to_device(np.array([_NONE], dtype=np.int64))
    if a.size:
        blocks, threads = L.config(a.size)
        use = ignore is not None
        _first_bad[blocks, threads](
            flat, a.size, inner, G, step, int(bound), use, int(ignore) if use else 0, first
        )
    pos = int(first.copy_to_host()[0])
    if pos == _NONE:
        return None
    return pos, int(flat[pos : pos + 1].copy_to_host()[0])
