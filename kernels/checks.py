"""Dispatcher for range checks of integer arrays: the CPU (Cython ``_checks``) or GPU (Numba CUDA)
twin by array type.

Twin signature (``cnncore_kernels._checks`` and ``cnncore_kernels.cuda.checks`` alike; callers in
``cnncore.functional`` pass a C-contiguous int64 host array, or an int32/int64 device array):

``first_out_of_range(a, bound, *, groups=(1, 1, 0), ignore=None) -> None | (position, value)``
    ``None`` when every entry is valid, else the flat position of the first invalid entry and its
    value.  Entry ``i`` is valid when ``a[i] - g*step`` lies in ``[0, bound)``, with
    ``(inner, G, step) = groups`` and ``g = (i // inner) % G`` (channel max pooling: each index
    names a channel of its own group), or when it equals ``ignore``.  One pass over the array; on
    the GPU only one integer comes back to the host.
"""

from __future__ import annotations

from cnncore_kernels import _checks
from cnncore_kernels.arrays import twin


def first_out_of_range(a, bound, *, groups=(1, 1, 0), ignore=None):
    # inputs validated by cnncore.functional (pooling indices, cross-entropy targets)
    return twin(a, _checks, "checks").first_out_of_range(a, bound, groups=groups, ignore=ignore)
