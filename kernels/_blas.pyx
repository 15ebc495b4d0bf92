# cython: language_level=3
"""The one BLAS of the CPU kernels: GEMM through OpenBLAS (never a hand-written CPU GEMM),
parallelised by the kernels with OpenMP.  (One product runs as plain vector loops instead:
Winograd's element-wise stage for at most 8 input channels, ``_winograd``'s ``fused``, where the
per-point products are dot products of 8 or fewer terms.)  Other extensions ``cimport``
``gemm_rm``, ``pgemm_rm`` and ``_gemm_parts`` from here (``_blas.pxd``), so the process holds one
BLAS state, found once.

Which OpenBLAS (``CNNCORE_BLAS``; ``blas_info()`` says which one runs):

- ``scipy-openblas32`` (default): the ``scipy-openblas32`` package (a runtime dependency), the
  OpenBLAS that NumPy and SciPy themselves build against, found through its public
  ``get_lib_dir()`` / ``get_library()`` and called through its ``scipy_cblas_?gemm`` symbols.
- ``numpy``: the ILP64 OpenBLAS bundled inside NumPy's wheel (``numpy.libs``), opt-in, kept to
  compare against.
- ``scipy``: ``scipy.linalg.cython_blas``.
If the default cannot be loaded the GEMMs fall back to ``scipy.linalg.cython_blas`` with a
RuntimeWarning (never silently).

Why scipy-openblas32, loaded at import rather than linked (provisional measurements of 2026-12-01
on the 2-core AMD EPYC development machine, load average 2.5-4.5 from other jobs, interleaved
rounds, medians):
- Speed: single-threaded sgemm on conv-shaped matrices (M x N x K = 64x14400x1600, 256x4096x3200,
  32x4096x75, 128x1024x576, 64x3136x576) ran at 112/126/111/127/121 GFLOP/s with
  scipy-openblas32 0.3.34 against 113/125/111/128/121 with NumPy's 0.3.31: a tie (SciPy's bundled
  0.3.30: 104/122/83/117/107).  conv2d forward and backward (four shapes, 2 OpenMP threads) were
  within the noise of each other (load average 6-19 then; ``python -m bench.blas_libraries``
  repeats both comparisons).
- Thread control: in these pthreads builds ``openblas_set_num_threads_local`` is not per thread:
  it sets the library's global count (checked here: set to 1 in one thread, another thread then
  reads 1).  Setting and restoring it around each GEMM of a ``prange`` loop therefore races, and
  on a borrowed copy (NumPy's) it changes the thread count of the user's own ``numpy.dot``.  The
  scipy-openblas32 copy is ours alone (NumPy's and SciPy's wheels bundle their own, renamed
  copies), so its global count is set to 1 once, here, and every GEMM runs single-threaded in the
  calling OpenMP thread with no per-call calls.  (scipy-openblas32 0.3.34 declares
  ``scipy_openblas_set_num_threads_local`` in its cblas.h but does not export it, so a build that
  linked against that header would not even link.)
- Robustness: NumPy's copy is an internal detail (file name, ILP64 symbol names, the unprefixed
  setter exported by accident) that a NumPy release or platform (Accelerate on macOS) can change;
  scipy-openblas32 is the packaged, versioned form made for exactly this.
- Size: our wheel stays as it was (6.2 MB here, no BLAS inside); the dependency costs a 7.9 MB
  download, 26 MB installed, which borrowing NumPy's copy did not.
- Loaded through the package at import, not linked at build time: the same library and the same
  speed, but no build requirement, no rpath that depends on where the wheel is installed, and
  ``auditwheel repair`` cannot copy the 25 MB library into our wheel (a linked extension would
  make it vendor a second copy).  A missing symbol gives a RuntimeWarning at import.

gemm_rm computes C(M, N) = alpha * op(A)(M, K) @ op(B)(K, N) + beta * C on row-major matrices; with
row-major CBLAS no operand swap is needed.  Through ``cython_blas`` (column-major) a row-major C
is a column-major C^T = op(B)^T op(A)^T, so the operands are swapped.

Threads.  Our kernels alternate OpenMP loops (im2col, pooling, ...) with GEMMs.  If OpenBLAS ran
its own thread pool inside each GEMM, its busy-waiting workers and OpenMP's would fight for the
cores (measured on 2 cores: a pixel65 layer stack 7.1 s instead of 0.27 s).  So every GEMM runs
single-threaded inside OpenBLAS and pgemm_rm splits the larger output dimension into one block per
OpenMP thread.  With a borrowed library (``numpy``, ``scipy``) the count is set to 1 around each
GEMM and restored afterwards, as well as a global setter allows.  Whoever raises our copy's count
later (threadpoolctl's ``threadpool_limits`` reaches every OpenBLAS it finds) makes the GEMMs inside
our ``prange`` loops threaded again; ``blas_info()["blas_threads"]`` shows the live count.
"""

import os

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cnncore_openmp_version(void) { return _OPENMP; }
    static int cnncore_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int cnncore_openmp_version(void) { return 0; }
    static int cnncore_omp_max_threads(void) { return 1; }
    #endif
    #if defined(__AVX512F__)
    #define CNNCORE_ISA "AVX512F"
    #elif defined(__AVX2__)
    #define CNNCORE_ISA "AVX2"
    #elif defined(__AVX__)
    #define CNNCORE_ISA "AVX"
    #elif defined(__SSE4_2__)
    #define CNNCORE_ISA "SSE4.2"
    #elif defined(__x86_64__)
    #define CNNCORE_ISA "SSE2"
    #elif defined(__ARM_NEON)
    #define CNNCORE_ISA "NEON"
    #else
    #define CNNCORE_ISA "unknown"
    #endif
    """
    int cnncore_openmp_version() noexcept nogil
    int cnncore_omp_max_threads() noexcept nogil
    const char* CNNCORE_ISA

# cblas_?gemm: (order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); CBLAS enums
# are ints.  LP64 (scipy-openblas32) and ILP64 (NumPy's) integer widths.
ctypedef void (*_sgemm32_fn)(int, int, int, int, int, int, float, const float*, int,
                             const float*, int, float, float*, int) noexcept nogil
ctypedef void (*_dgemm32_fn)(int, int, int, int, int, int, double, const double*, int,
                             const double*, int, double, double*, int) noexcept nogil
ctypedef void (*_sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                             int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil
ctypedef void (*_dgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                             int64_t, const double*, int64_t, double, double*,
                             int64_t) noexcept nogil
ctypedef int (*_set_threads_fn)(int) noexcept nogil

cdef _sgemm32_fn _sgemm32 = NULL
cdef _dgemm32_fn _dgemm32 = NULL
cdef _sgemm64_fn _sgemm64 = NULL
cdef _dgemm64_fn _dgemm64 = NULL
# Borrowed libraries only: set to 1 around each GEMM, then restored.
cdef _set_threads_fn _borrowed_threads = NULL
cdef Py_ssize_t _gemm_parts = 1
_info = {}
_lib = None  # keeps the loaded library alive

cdef enum:
    CBLAS_ROW_MAJOR = 101
    CBLAS_NO_TRANS = 111
    CBLAS_TRANS = 112

CHOICES = ("scipy-openblas32", "numpy", "scipy")
_THREADING = {0: "sequential", 1: "pthreads", 2: "openmp"}


cdef size_t _address(lib, name) except 0:
    import ctypes

    return <size_t> ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def _call(lib, name, restype):
    """lib.name() with the given ctypes result type, or None where the symbol is missing."""
    fn = getattr(lib, name, None)
    if fn is None:
        return None
    fn.restype = restype
    out = fn()
    return out.decode() if isinstance(out, bytes) else out


def _describe(lib, suffix):
    """Version string, CPU kernel name, threading model and thread count of an OpenBLAS."""
    import ctypes

    parallel = _call(lib, "scipy_openblas_get_parallel" + suffix, ctypes.c_int)
    return {
        "version": _call(lib, "scipy_openblas_get_config" + suffix, ctypes.c_char_p),
        "corename": _call(lib, "scipy_openblas_get_corename" + suffix, ctypes.c_char_p),
        "threading": _THREADING.get(parallel, parallel),
        "blas_threads": _call(lib, "scipy_openblas_get_num_threads" + suffix, ctypes.c_int),
    }


def _bundled(package, stem):
    """Paths of the OpenBLAS libraries a wheel of ``package`` bundles (Linux ``.libs/*.so``, macOS
    ``.dylibs/*.dylib``, Windows ``.libs/*.dll``)."""
    import glob

    root = os.path.dirname(package.__file__)
    paths = []
    for pattern in (root + ".libs/" + stem + "*.so*", root + "/.dylibs/" + stem + "*.dylib",
                    root + ".libs/" + stem + "*.dll"):
        paths += sorted(glob.glob(pattern))
    return paths


def _use_scipy_openblas32():
    """Load the scipy-openblas32 package's library, take its CBLAS GEMMs, set its threads to 1."""
    global _sgemm32, _dgemm32, _lib
    import ctypes
    import sys

    import scipy_openblas32

    libdir = scipy_openblas32.get_lib_dir()
    if sys.platform == "win32":  # get_library names the import .lib; load the .dll beside it
        name = next(n for n in os.listdir(libdir) if n.lower().endswith(".dll"))
    else:
        name = scipy_openblas32.get_library(fullname=True)
    path = os.path.join(libdir, name)
    lib = ctypes.CDLL(path)
    s, d = _address(lib, "scipy_cblas_sgemm"), _address(lib, "scipy_cblas_dgemm")
    # Our copy alone: one global setting, no per-call calls (see the module docstring).
    lib.scipy_openblas_set_num_threads(1)
    _sgemm32, _dgemm32, _lib = <_sgemm32_fn> s, <_dgemm32_fn> d, lib
    _info.update(library="scipy-openblas32", package_version=scipy_openblas32.__version__,
                 path=path, thread_control="library set to 1 thread once (a private copy)",
                 sgemm_address=s, dgemm_address=d, **_describe(lib, ""))


def _use_numpy_openblas():
    """NumPy's bundled ILP64 OpenBLAS (opt-in).  Raises OSError when it is absent or lacks a
    symbol we call."""
    global _sgemm64, _dgemm64, _borrowed_threads, _lib
    import ctypes

    import numpy

    paths = _bundled(numpy, "libscipy_openblas64_")
    if not paths:
        raise OSError("NumPy's wheel bundles no libscipy_openblas64_ here")
    lib = ctypes.CDLL(paths[0])
    s, d = _address(lib, "scipy_cblas_sgemm64_"), _address(lib, "scipy_cblas_dgemm64_")
    setter = _address(lib, "openblas_set_num_threads_local")
    _sgemm64, _dgemm64, _lib = <_sgemm64_fn> s, <_dgemm64_fn> d, lib
    _borrowed_threads = <_set_threads_fn> setter
    _info.update(library="numpy's OpenBLAS (ILP64 CBLAS)", package_version=numpy.__version__,
                 path=paths[0], thread_control="set to 1 around each GEMM (a borrowed copy)",
                 sgemm_address=s, dgemm_address=d, **_describe(lib, "64_"))


def _use_scipy_cython_blas():
    """scipy.linalg.cython_blas, with the thread setter of SciPy's bundled OpenBLAS if any."""
    global _borrowed_threads, _lib
    import ctypes
    import warnings

    import scipy

    _info.update(library="scipy.linalg.cython_blas", package_version=scipy.__version__,
                 path=None, thread_control=None, sgemm_address=<size_t> sgemm,
                 dgemm_address=<size_t> dgemm, version=None, corename=None, threading=None,
                 blas_threads=None)
    for path in _bundled(scipy, "libscipy_openblas"):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "openblas_set_num_threads_local"):
            continue
        _borrowed_threads = <_set_threads_fn> _address(lib, "openblas_set_num_threads_local")
        _lib = lib
        _info.update(path=path, thread_control="set to 1 around each GEMM (a borrowed copy)",
                     **_describe(lib, ""))
        return
    warnings.warn(
        "cnncore: no thread-count setter found in SciPy's OpenBLAS; GEMMs run one at a time, each "
        "with OpenBLAS's own threads (slower)", RuntimeWarning, stacklevel=3)


def _init():
    """Pick the OpenBLAS our GEMMs call; count our OpenMP threads."""
    global _gemm_parts
    import warnings

    choice = os.environ.get("CNNCORE_BLAS", "") or "scipy-openblas32"
    if choice not in CHOICES:
        raise ImportError(f"CNNCORE_BLAS={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice != "scipy":
        try:
            (_use_scipy_openblas32 if choice == "scipy-openblas32" else _use_numpy_openblas)()
        except (ImportError, OSError, AttributeError, StopIteration) as e:
            warnings.warn(
                f"cnncore: the {choice} OpenBLAS cannot be used ({type(e).__name__}: {e}); the "
                "GEMMs fall back to scipy.linalg.cython_blas (slower: 83-122 GFLOP/s against "
                "111-128 single-threaded here)", RuntimeWarning, stacklevel=2)
            choice = "scipy"
    if choice == "scipy":
        _use_scipy_cython_blas()
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:
        threads = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        threads = min(threads, int(env))
    single = _sgemm32 != NULL or _borrowed_threads != NULL
    _gemm_parts = threads if single and cnncore_openmp_version() else 1
    _info.update(requested=choice, gemm_threads=_gemm_parts,
                 threads_local=single)


_init()


def blas_info():
    """Which BLAS the kernels' GEMMs call, and how they are threaded.

    Keys: ``library`` (``"scipy-openblas32"``, ``"numpy's OpenBLAS (ILP64 CBLAS)"`` or
    ``"scipy.linalg.cython_blas"``), ``requested``, ``package_version``, ``version`` (OpenBLAS's
    config string), ``path``, ``corename`` (the CPU kernels OpenBLAS picked), ``threading`` (the
    library's own model), ``blas_threads`` (its current thread count), ``thread_control``,
    ``threads_local`` (every GEMM runs single-threaded in the calling thread), ``gemm_threads``
    (OpenMP threads the kernels split into), ``sgemm_address`` / ``dgemm_address`` (the functions
    called), ``openmp`` (the ``_OPENMP`` version the kernels were compiled with, 0 without),
    ``omp_max_threads`` and ``compiled_isa`` (the widest x86/ARM vector ISA enabled at compile
    time for the extensions).
    """
    import ctypes

    info = dict(_info)
    if _sgemm32 != NULL or _sgemm64 != NULL:  # the pointers the GEMMs call, read back
        info["sgemm_address"] = <size_t> _sgemm32 if _sgemm32 != NULL else <size_t> _sgemm64
        info["dgemm_address"] = <size_t> _dgemm32 if _dgemm32 != NULL else <size_t> _dgemm64
    if _lib is not None and info.get("blas_threads") is not None:
        suffix = "64_" if _sgemm64 != NULL else ""
        info["blas_threads"] = _call(_lib, "scipy_openblas_get_num_threads" + suffix, ctypes.c_int)
    info.update(openmp=cnncore_openmp_version(), omp_max_threads=cnncore_omp_max_threads(),
                compiled_isa=CNNCORE_ISA.decode())
    return info


cdef inline void _gemm_call(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                            const floating* A, int lda, const floating* B, int ldb,
                            floating beta, floating* C, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int cta = CBLAS_TRANS if trans_a else CBLAS_NO_TRANS
    cdef int ctb = CBLAS_TRANS if trans_b else CBLAS_NO_TRANS
    if _sgemm32 != NULL:  # row-major CBLAS: no operand swap
        if floating is float:
            _sgemm32(CBLAS_ROW_MAJOR, cta, ctb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        else:
            _dgemm32(CBLAS_ROW_MAJOR, cta, ctb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    elif _sgemm64 != NULL:
        if floating is float:
            _sgemm64(CBLAS_ROW_MAJOR, cta, ctb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        else:
            _dgemm64(CBLAS_ROW_MAJOR, cta, ctb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    elif floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float*> B, &ldb, <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double*> B, &ldb, <double*> A, &lda, &beta, C, &ldc)


cdef void gemm_rm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                  const floating* A, int lda, const floating* B, int ldb, floating beta,
                  floating* C, int ldc) noexcept nogil:
    # One single-threaded GEMM in the calling thread.
    cdef int old = 0
    if M <= 0 or N <= 0:
        return
    if _borrowed_threads != NULL:
        old = _borrowed_threads(1)
    _gemm_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
    if _borrowed_threads != NULL:
        _borrowed_threads(old)


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
