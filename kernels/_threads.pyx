# cython: language_level=3
"""OpenMP thread control the runtime offers no call for (see ``cnncore_kernels/_openmp.py``)."""

import numpy as np

from cython.parallel cimport parallel, threadid


def run_parallel_region(int threads):
    """Run one OpenMP parallel region of ``threads`` threads in the calling thread; returns how
    many threads took part.

    Called from a thread of its own that then stays alive, it leaves the region's pooled OpenMP
    workers docked (asleep) for as long as that thread lives.
    """
    cdef int[::1] seen = np.zeros(threads, dtype=np.intc)
    with nogil, parallel(num_threads=threads):
        seen[threadid()] = 1  # a body, so that the compiler keeps the region
    return int(np.asarray(seen).sum())
