"""``cnncore.show_config()``: the BLAS, threads and build the kernels run with (like
``numpy.show_config()``)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

# Addresses are for tests; a reader of the printout has no use for them.
_NOT_PRINTED = ("sgemm_address", "dgemm_address")
# Keys of blas_info() shown under "openmp" and "build" instead.
_ELSEWHERE = ("openmp", "omp_max_threads", "compiled_isa")


def show_config(cuda: bool = False) -> dict[str, Any]:
    """Print and return the configuration of the CPU kernels.

    Returns a dict: ``cnncore`` (version), ``python``, ``platform``, ``numpy``, ``scipy``, ``blas``
    (``cnncore_kernels._blas.blas_info()``: library, versions, path, threading, how the GEMMs'
    threads are controlled), ``openmp`` (the version the kernels were compiled with, 0 without;
    threads; the ``OMP_*`` and ``CNNCORE_BLAS`` environment), ``build`` (the widest vector ISA
    the kernels were compiled for, and what runs the float32 Winograd products: "blas", or
    "own 6x16 kernel" in the AVX2 build). With ``cuda=True`` also ``cuda`` (whether a GPU can be
    used; this imports numba).
    """
    import numpy
    import scipy

    from cnncore._version import __version__
    from cnncore_kernels._blas import blas_info
    from cnncore_kernels._winograd import OWN_GEMM

    blas = blas_info()
    config: dict[str, Any] = {
        "cnncore": {"version": __version__},
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas": {k: v for k, v in blas.items() if k not in _ELSEWHERE},
        "openmp": {
            "version": blas["openmp"],
            "max_threads": blas["omp_max_threads"],
            "environment": {
                k: os.environ[k]
                for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "CNNCORE_BLAS")
                if k in os.environ
            },
        },
        "build": {
            "compiled_isa": blas["compiled_isa"],
            "winograd_float32_gemm": "own 6x16 kernel" if OWN_GEMM else "blas",
        },
    }
    if cuda:
        from cnncore.device import cuda_available

        config["cuda"] = {"available": cuda_available()}
    for section, value in config.items():
        if isinstance(value, dict):
            print(f"{section}:")
            for k, v in value.items():
                if k not in _NOT_PRINTED:
                    print(f"  {k}: {v}")
        else:
            print(f"{section}: {value}")
    return config
