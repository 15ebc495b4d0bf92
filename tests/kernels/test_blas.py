"""The kernels' one BLAS (cnncore_kernels._blas): which library runs, that the GEMMs really go to
it, its thread control, and that no fallback is silent."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import cnncore
from cnncore_kernels import _blas, _conv, _linear

scipy_openblas32 = pytest.importorskip("scipy_openblas32")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _library():
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
    return ctypes.CDLL(path), path


def _run(script, tmp_path, **env):
    """Run ``script`` in a fresh interpreter (the library is chosen at import) from ``tmp_path``."""
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH"), REPO, os.environ.get("PYTHONPATH")) if p
    )
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_one_blas_state_shared_by_the_kernels():
    # _conv and _linear cimport _blas: no copy of the discovery or of blas_info of their own.
    assert _conv.blas_info is _blas.blas_info
    assert not hasattr(_linear, "blas_info")
    for module in (_conv, _linear):
        assert not hasattr(module, "_init"), module
    capi = _blas.__pyx_capi__
    assert "_gemm_parts" in capi
    assert any("pgemm_rm" in name for name in capi) and any("gemm_rm" in n for n in capi)


def test_default_library_is_scipy_openblas32_and_its_gemm_is_the_one_called():
    info = _blas.blas_info()
    lib, path = _library()
    assert info["library"] == "scipy-openblas32", info
    assert info["path"] == path
    assert info["package_version"] == scipy_openblas32.__version__
    assert info["version"].startswith("OpenBLAS ")
    # The function pointers the GEMMs call are that library's CBLAS symbols.
    address = ctypes.cast(lib.scipy_cblas_sgemm, ctypes.c_void_p).value
    assert info["sgemm_address"] == address
    assert info["dgemm_address"] == ctypes.cast(lib.scipy_cblas_dgemm, ctypes.c_void_p).value
    # Our private copy runs one thread per call; the kernels split the work with OpenMP.
    assert info["blas_threads"] == 1
    assert info["threads_local"]
    assert info["gemm_threads"] >= 1


# OpenBLAS hands the jobs of a multithreaded call to a registered callback: counting them proves
# that the kernels' GEMMs ran inside the scipy-openblas32 library (and only there).
_COUNT_JOBS = r"""
import ctypes, os, sys, threading
import numpy as np
import cnncore
from cnncore.functional import conv2d
from cnncore_kernels import _blas, _linear
import scipy_openblas32 as so

lib = ctypes.CDLL(os.path.join(so.get_lib_dir(), so.get_library(fullname=True)))
DOJOB = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                            ctypes.c_void_p, ctypes.c_int)
calls = []

def run_jobs(sync, dojob, numjobs, elsize, jobdata, data):
    # the jobs of one call synchronise with each other: run them concurrently
    job = DOJOB(dojob)
    calls.append(numjobs)
    rest = [threading.Thread(target=job, args=(i, jobdata + i * elsize, data))
            for i in range(1, numjobs)]
    for t in rest:
        t.start()
    job(0, jobdata, data)
    for t in rest:
        t.join()

callback = CALLBACK(run_jobs)
lib.scipy_openblas_set_threads_callback_function(callback)
lib.scipy_openblas_set_num_threads(2)  # let it thread, so its calls reach the callback
rng = np.random.default_rng(0)
a = rng.standard_normal((384, 320))
b = rng.standard_normal((320, 256)).astype(np.float32)
y = _linear.matmul(a.astype(np.float32), b)
np.testing.assert_allclose(y, a @ b, rtol=1e-4, atol=1e-3)
after_matmul = len(calls)
x = rng.standard_normal((1, 32, 40, 40)).astype(np.float32)
w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
y = conv2d(x, w, algorithm="im2col")  # big GEMMs: OpenBLAS threads them
print(_blas.blas_info()["library"], after_matmul, len(calls) - after_matmul)
"""


def test_kernels_gemms_run_in_the_reported_library(tmp_path):
    out = _run(_COUNT_JOBS, tmp_path, OMP_NUM_THREADS="1")
    library, matmul_calls, conv_calls = out.stdout.split("\n")[-2].rsplit(" ", 2)
    assert library == "scipy-openblas32"
    assert int(matmul_calls) > 0 and int(conv_calls) > 0, out.stdout
    # Control: with another library forced, scipy-openblas32 sees no GEMM at all.
    out = _run(_COUNT_JOBS, tmp_path, OMP_NUM_THREADS="1", CNNCORE_BLAS="scipy")
    library, matmul_calls, conv_calls = out.stdout.split("\n")[-2].rsplit(" ", 2)
    assert library == "scipy.linalg.cython_blas"
    assert (int(matmul_calls), int(conv_calls)) == (0, 0), out.stdout


def test_missing_scipy_openblas32_falls_back_with_a_warning(tmp_path):
    fake = tmp_path / "fake" / "scipy_openblas32"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no OpenBLAS in this test')\n")
    script = (
        "import numpy as np, cnncore\n"
        "from cnncore_kernels import _blas, _linear\n"
        "a = np.arange(12.0).reshape(3, 4)\n"
        "np.testing.assert_allclose(_linear.matmul(a, a.T.copy()), a @ a.T)\n"
        "print(_blas.blas_info()['library'])\n"
    )
    out = _run(script, tmp_path, PYTHONPATH=str(tmp_path / "fake"))
    assert out.stdout.strip() == "scipy.linalg.cython_blas"
    assert "RuntimeWarning" in out.stderr and "scipy-openblas32" in out.stderr, out.stderr
    assert "no OpenBLAS in this test" in out.stderr


def test_unknown_library_request_is_an_error(tmp_path):
    environ = dict(os.environ, CNNCORE_BLAS="mkl", PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-c", "import cnncore_kernels._blas"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "CNNCORE_BLAS='mkl'" in out.stderr and "scipy-openblas32" in out.stderr


def _numpy_openblas():
    import glob

    paths = glob.glob(os.path.dirname(np.__file__) + ".libs/libscipy_openblas64_*.so*")
    lib = ctypes.CDLL(paths[0]) if paths else None
    return lib if lib is not None and hasattr(lib, "scipy_openblas_get_num_threads64_") else None


def test_kernels_leave_numpys_blas_threads_alone():
    # The kernels' GEMMs no longer borrow NumPy's OpenBLAS: its thread count stays the user's.
    lib = _numpy_openblas()
    if lib is None:
        pytest.skip("NumPy's wheel bundles no ILP64 OpenBLAS here")
    before = lib.scipy_openblas_get_num_threads64_()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    cnncore.functional.conv2d(x, w)
    assert lib.scipy_openblas_get_num_threads64_() == before


@pytest.mark.parametrize("choice", ["numpy", "scipy"])
def test_each_library_gives_the_same_products(tmp_path, choice):
    if choice == "numpy" and _numpy_openblas() is None:
        pytest.skip("NumPy's wheel bundles no ILP64 OpenBLAS here")
    rng = np.random.default_rng(2)
    a = rng.standard_normal((70, 50))
    b = rng.standard_normal((60, 50))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    script = (
        "import numpy as np, cnncore\n"
        "from cnncore_kernels import _blas, _linear\n"
        "a, b = np.load('a.npy'), np.load('b.npy')\n"
        "np.save('ab.npy', _linear.matmul(a, b, trans_b=True))\n"
        "np.save('ab32.npy', _linear.matmul(a.astype(np.float32), b.astype(np.float32), "
        "trans_b=True))\n"
        "print(_blas.blas_info()['library'])\n"
    )
    out = _run(script, tmp_path, CNNCORE_BLAS=choice)
    assert "RuntimeWarning" not in out.stderr, out.stderr
    assert out.stdout.strip() != "scipy-openblas32"
    np.testing.assert_allclose(np.load(tmp_path / "ab.npy"), a @ b.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "ab32.npy"), a @ b.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_linear.matmul(a, b, trans_b=True), a @ b.T, rtol=1e-12, atol=1e-12)


def test_show_config_prints_and_returns_the_blas(capsys):
    config = cnncore.show_config()
    printed = capsys.readouterr().out
    assert config["blas"]["library"] == _blas.blas_info()["library"]
    assert config["blas"]["version"] in printed
    assert config["openmp"]["version"] == _blas.blas_info()["openmp"]
    assert config["build"]["compiled_isa"] == _blas.blas_info()["compiled_isa"]
    from cnncore_kernels import _winograd

    own = "own 6x16 kernel" if _winograd.OWN_GEMM else "blas"
    assert config["build"]["winograd_float32_gemm"] == own
    assert "sgemm_address" not in printed
    assert config["cnncore"]["version"] == cnncore.__version__
