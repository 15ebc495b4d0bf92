# Row-major GEMM through scipy's BLAS (never a hand-written CPU GEMM).
#
# gemm_rm computes C(M, N) = alpha * op(A)(M, K) @ op(B)(K, N) + beta * C on row-major matrices with
# leading dimensions lda, ldb, ldc (elements between consecutive rows).  BLAS is column-major, and a
# row-major C is a column-major C^T = op(B)^T op(A)^T, so the operands are swapped in the call.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm_rm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                         const floating* A, int lda, const floating* B, int ldb, floating beta,
                         floating* C, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if M <= 0 or N <= 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*> B, &ldb, <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*> B, &ldb, <double*> A, &lda, &beta, C, &ldc)
