# GEMM through scipy's BLAS (never a hand-written CPU GEMM), parallelised by us with OpenMP.
#
# gemm_rm computes C(M, N) = alpha * op(A)(M, K) @ op(B)(K, N) + beta * C on row-major matrices with
# leading dimensions lda, ldb, ldc (elements between consecutive rows).  BLAS is column-major, and a
# row-major C is a column-major C^T = op(B)^T op(A)^T, so the operands are swapped in the call.
#
# Threads.  Our kernels alternate OpenMP loops (im2col, pooling, ...) with GEMMs.  If OpenBLAS ran
# its own thread pool inside each GEMM, its busy-waiting workers and OpenMP's would fight for the
# cores (measured on 2 cores: a pixel65 layer stack 7.1 s instead of 0.27 s).  So every GEMM here
# runs single-threaded inside OpenBLAS (openblas_set_num_threads_local, per calling thread, restored
# afterwards) and pgemm_rm splits the larger output dimension into one block per OpenMP thread.
# Where scipy's OpenBLAS lacks that function (other BLAS builds), GEMMs are called as they are.
from cython cimport floating
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef int (*_set_threads_fn)(int) noexcept nogil
cdef _set_threads_fn _blas_local_threads = NULL
cdef Py_ssize_t _gemm_parts = 1


def _init_blas_threads():
    """Find scipy's OpenBLAS and its per-thread thread-count setter; count our OpenMP threads."""
    global _blas_local_threads, _gemm_parts
    import ctypes
    import glob
    import os

    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library our GEMMs call)

    libdir = os.path.dirname(scipy.__file__) + ".libs"
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*.so*"))):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        _blas_local_threads = <_set_threads_fn> <size_t> ctypes.cast(fn, ctypes.c_void_p).value
        break
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:
        threads = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        threads = min(threads, int(env))
    _gemm_parts = threads if _blas_local_threads != NULL else 1


_init_blas_threads()


cdef inline void _gemm_call(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                            const floating* A, int lda, const floating* B, int ldb,
                            floating beta, floating* C, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if M <= 0 or N <= 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*> B, &ldb, <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*> B, &ldb, <double*> A, &lda, &beta, C, &ldc)


cdef inline void gemm_rm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                         const floating* A, int lda, const floating* B, int ldb, floating beta,
                         floating* C, int ldc) noexcept nogil:
    # One single-threaded GEMM in the calling thread.
    cdef int old = 0
    if _blas_local_threads != NULL:
        old = _blas_local_threads(1)
    _gemm_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    if _blas_local_threads != NULL:
        _blas_local_threads(old)


cdef void pgemm_rm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                   const floating* A, int lda, const floating* B, int ldb, floating beta,
                   floating* C, int ldc) noexcept nogil:
    # gemm_rm split over OpenMP threads: the larger of M, N is cut into one block per thread, so
    # every thread writes its own rows or columns of C (no races, same result as one call).
    cdef Py_ssize_t parts = _gemm_parts, t, lo, hi
    if parts <= 1 or <double> M * N * K < 4e6 or (M < 32 * parts and N < 32 * parts):
        gemm_rm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    if N >= M:
        for t in prange(parts, schedule="static", num_threads=parts):
            lo = N * t // parts
            hi = N * (t + 1) // parts
            # columns lo..hi of op(B) and C
            gemm_rm(trans_a, trans_b, M, <int> (hi - lo), K, alpha, A, lda,
                    B + (lo * ldb if trans_b else lo), ldb, beta, C + lo, ldc)
    else:
        for t in prange(parts, schedule="static", num_threads=parts):
            lo = M * t // parts
            hi = M * (t + 1) // parts
            # rows lo..hi of op(A) and C
            gemm_rm(trans_a, trans_b, <int> (hi - lo), N, K, alpha,
                    A + (lo if trans_a else lo * lda), lda, B, ldb, beta, C + lo * ldc, ldc)
