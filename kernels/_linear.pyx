# cython: language_level=3
"""Row-major matrix products through OpenBLAS (see _blas.pyx), parallelised like the convolution
GEMMs.

Used by the fully connected layer so that every GEMM of the library runs under one threading
scheme (see _blas.pyx).  Inputs are trusted: 2-D, C-contiguous, same float dtype, sizes < 2**31.
"""

import numpy as np

from cython cimport floating

from ._blas cimport pgemm_rm


def matmul(const floating[:, ::1] a, const floating[:, ::1] b, bint trans_a=False,
           bint trans_b=False, floating[:, ::1] out=None, bint accumulate=False):
    """op(a) @ op(b), op = transpose where asked.  a: (M, K) or (K, M), b: (K, N) or (N, K).

    Returns (M, N); with ``out`` given the product is written (or added, ``accumulate``) there.
    """
    cdef int M = a.shape[1] if trans_a else a.shape[0]
    cdef int K = a.shape[0] if trans_a else a.shape[1]
    cdef int N = b.shape[0] if trans_b else b.shape[1]
    if out is None:
        out = np.zeros((M, N), dtype=np.asarray(a).dtype)
        accumulate = False
    with nogil:
        pgemm_rm(trans_a, trans_b, M, N, K, 1, &a[0, 0], <int> a.shape[1], &b[0, 0],
                 <int> b.shape[1], 1 if accumulate else 0, &out[0, 0], <int> out.shape[1])
    return np.asarray(out)
