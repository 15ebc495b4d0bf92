# The GEMMs of every CPU kernel, shared by cimport (one extension, one BLAS state; see _blas.pyx).
#
#   from cnncore_kernels._blas cimport gemm_rm, pgemm_rm, _gemm_parts
#
# gemm_rm: C(M, N) = alpha * op(A)(M, K) @ op(B)(K, N) + beta * C on row-major matrices with leading
# dimensions lda, ldb, ldc, single-threaded in the calling thread (safe inside prange).
# pgemm_rm: the same, split over _gemm_parts OpenMP threads (call it outside prange).
# _gemm_parts: how many OpenMP threads the kernels split their work into.
from cython cimport floating

cdef Py_ssize_t _gemm_parts

cdef void gemm_rm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                  const floating* A, int lda, const floating* B, int ldb, floating beta,
                  floating* C, int ldc) noexcept nogil

cdef void pgemm_rm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                   const floating* A, int lda, const floating* B, int ldb, floating beta,
                   floating* C, int ldc) noexcept nogil
