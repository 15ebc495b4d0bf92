# cython: language_level=3
"""CPU range checks of integer arrays (pooling indices, class targets): the twin of
``cnncore_kernels.cuda.checks``, same signature (see the dispatcher ``cnncore_kernels.checks``).

Inputs are trusted (validated in ``cnncore.functional``): a C-contiguous int64 array of any shape.
One parallel pass over blocks of the flat array; each block reports its first offending position
and the smallest of them is the answer, so the result does not depend on the thread count.
"""

import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint64_t

cdef enum:
    BLOCK = 65536  # elements per parallel block


cdef Py_ssize_t first_bad_block(const int64_t* a, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t inner,
                                Py_ssize_t G, int64_t step, uint64_t bound, bint use_ignore,
                                int64_t ignore) noexcept nogil:
    # the first k in [lo, hi) with a[k] - g*step outside [0, bound), g = (k // inner) % G, unless
    # a[k] == ignore (when use_ignore); -1 when there is none.  One group without ignore: an
    # unsigned max first (vectorisable; negatives wrap to huge values), the scan only if it fails.
    cdef Py_ssize_t k
    cdef uint64_t m = 0, v
    if G == 1 and not use_ignore:
        for k in range(lo, hi):
            v = <uint64_t> a[k]
            m = v if v > m else m
        if m < bound:
            return -1
    for k in range(lo, hi):
        if use_ignore and a[k] == ignore:
            continue
        v = <uint64_t> (a[k] - ((k // inner) % G) * step)
        if v >= bound:
            return k
    return -1


def _first_bad(const int64_t[::1] a, Py_ssize_t inner, Py_ssize_t G, int64_t step,
               uint64_t bound, bint use_ignore, int64_t ignore):
    cdef Py_ssize_t n = a.shape[0], nb = (n + BLOCK - 1) // BLOCK, b, k
    parts_arr = np.full(max(nb, 1), n, dtype=np.intp)
    cdef Py_ssize_t[::1] parts = parts_arr
    if n == 0:
        return n
    with nogil:
        for b in prange(nb, schedule="static"):
            k = first_bad_block(&a[0], b * BLOCK, min(n, (b + 1) * BLOCK), inner, G, step, bound,
                                use_ignore, ignore)
            parts[b] = k if k >= 0 else n
    return int(parts_arr.min())


def first_out_of_range(a, bound, *, groups=(1, 1, 0), ignore=None):
    """``None`` when every entry of the int64 array ``a`` is valid, else ``(position, value)`` of
    the first invalid one (flat position).

    Entry ``i`` is valid when ``a[i] - g*step`` is in ``[0, bound)``, with ``(inner, G, step) =
    groups`` and ``g = (i // inner) % G`` (channel max pooling: each index names a channel of its
    own group), or when it equals ``ignore``.
    """
    flat = a.reshape(-1)
    inner, G, step = (int(t) for t in groups)
    use = ignore is not None
    pos = _first_bad(flat, inner, G, step, int(bound), use, int(ignore) if use else 0)
    if pos == flat.shape[0]:
        return None
    return pos, int(flat[pos])
