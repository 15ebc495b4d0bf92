# GEMM through OpenBLAS (never a hand-written CPU GEMM), parallelised by us with OpenMP.
#
# Which OpenBLAS.  NumPy's and SciPy's wheels each bundle one.  Where NumPy's is present (its
# ILP64 CBLAS symbols scipy_cblas_sgemm64_/scipy_cblas_dgemm64_), it is used: on this project's
# machine (AMD EPYC, AVX2) NumPy 2.4's OpenBLAS 0.3.31 runs a single-threaded sgemm at 74-82
# GFLOP/s against 53-56 for SciPy 1.17's 0.3.30.  Otherwise scipy.linalg.cython_blas is called.
# CNNCORE_BLAS=scipy forces SciPy's; blas_info() says which one runs.
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

from libc.stdint cimport int64_t

ctypedef int (*_set_threads_fn)(int) noexcept nogil
# cblas_?gemm of an ILP64 OpenBLAS: (order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
# C, ldc) with 64-bit integers; CBLAS enums are ints.
ctypedef void (*_sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                             int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil
ctypedef void (*_dgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                             int64_t, const double*, int64_t, double, double*, int64_t) noexcept nogil
cdef _set_threads_fn _blas_local_threads = NULL
cdef _sgemm64_fn _np_sgemm = NULL
cdef _dgemm64_fn _np_dgemm = NULL
cdef Py_ssize_t _gemm_parts = 1
_blas_info = {"library": "scipy.linalg.cython_blas", "path": None, "threads_local": False}

cdef enum:
    CBLAS_ROW_MAJOR = 101
    CBLAS_NO_TRANS = 111
    CBLAS_TRANS = 112


# Names of the per-thread thread-count setter: unprefixed in scipy-openblas 0.3.30/0.3.31, the
# prefixed spellings in case later builds rename it like their other symbols.
_SETTERS = ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local64_",
            "scipy_openblas_set_num_threads_local")


cdef size_t _address(lib, name):
    import ctypes

    return <size_t> ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def _setter_name(lib):
    for name in _SETTERS:
        if hasattr(lib, name):
            return name
    return None


def _bundled(package, stem):
    """Paths of the OpenBLAS libraries a wheel of ``package`` bundles (Linux ``.libs/*.so``, macOS
    ``.dylibs/*.dylib``, Windows ``.libs/*.dll``)."""
    import glob
    import os

    root = os.path.dirname(package.__file__)
    paths = []
    for pattern in (root + ".libs/" + stem + "*.so*", root + "/.dylibs/" + stem + "*.dylib",
                    root + ".libs/" + stem + "*.dll"):
        paths += sorted(glob.glob(pattern))
    return paths


def _numpy_openblas():
    """(ctypes library, path, setter name) of NumPy's bundled ILP64 OpenBLAS, or None.  A library
    that is there but lacks a symbol we call is reported with a RuntimeWarning (the fallback is
    slower), not silently skipped."""
    import ctypes
    import warnings

    import numpy

    for path in _bundled(numpy, "libscipy_openblas64_"):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        missing = [n for n in ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_") if not hasattr(lib, n)]
        setter = _setter_name(lib)
        if missing or setter is None:
            warnings.warn(
                f"cnncore: NumPy's OpenBLAS {path} lacks {missing or list(_SETTERS)}; the GEMMs "
                "fall back to scipy.linalg.cython_blas (slower)", RuntimeWarning, stacklevel=2)
            continue
        return lib, path, setter
    return None


def _init_blas_threads():
    """Pick the OpenBLAS our GEMMs call and its per-thread thread-count setter; count our OpenMP
    threads."""
    global _blas_local_threads, _gemm_parts, _np_sgemm, _np_dgemm
    import ctypes
    import os

    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library of the fallback GEMMs)

    found = None if os.environ.get("CNNCORE_BLAS", "") == "scipy" else _numpy_openblas()
    if found is not None:
        lib, path, setter = found
        _np_sgemm = <_sgemm64_fn> _address(lib, "scipy_cblas_sgemm64_")
        _np_dgemm = <_dgemm64_fn> _address(lib, "scipy_cblas_dgemm64_")
        _blas_local_threads = <_set_threads_fn> _address(lib, setter)
        _blas_info.update(library="numpy's OpenBLAS (ILP64 CBLAS)", path=path, threads_local=True)
    else:
        for path in _bundled(scipy, "libscipy_openblas"):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = _setter_name(lib)
            if setter is None:
                continue
            _blas_local_threads = <_set_threads_fn> _address(lib, setter)
            _blas_info.update(path=path, threads_local=True)
            break
        else:
            import warnings

            warnings.warn(
                "cnncore: no per-thread thread-count setter found in SciPy's OpenBLAS; GEMMs run "
                "one at a time, each with OpenBLAS's own threads (slower)", RuntimeWarning,
                stacklevel=2)
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:
        threads = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        threads = min(threads, int(env))
    _gemm_parts = threads if _blas_local_threads != NULL else 1


_init_blas_threads()


def blas_info():
    """Which BLAS the GEMMs of this module call: ``library``, ``path``, ``threads_local``."""
    return dict(_blas_info)


cdef inline void _gemm_call(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                            const floating* A, int lda, const floating* B, int ldb,
                            floating beta, floating* C, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if M <= 0 or N <= 0:
        return
    if _np_sgemm != NULL:  # row-major CBLAS: no operand swap
        if floating is float:
            _np_sgemm(CBLAS_ROW_MAJOR, CBLAS_TRANS if trans_a else CBLAS_NO_TRANS,
                      CBLAS_TRANS if trans_b else CBLAS_NO_TRANS, M, N, K, alpha, A, lda, B, ldb,
                      beta, C, ldc)
        else:
            _np_dgemm(CBLAS_ROW_MAJOR, CBLAS_TRANS if trans_a else CBLAS_NO_TRANS,
                      CBLAS_TRANS if trans_b else CBLAS_NO_TRANS, M, N, K, alpha, A, lda, B, ldb,
                      beta, C, ldc)
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
