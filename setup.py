"""Build the Cython kernels of cnncore.

The directory ``kernels/`` is installed as the package ``cnncore_kernels`` (PyPI has an unrelated
``kernels`` package, so the import name must not be ``kernels``).  Every ``kernels/*.pyx`` becomes
an extension ``cnncore_kernels.<name>``.  OpenMP is used only when a test program compiles and links
with ``-fopenmp``; set ``CNNCORE_NO_OPENMP=1`` to build without it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup


def openmp_flags() -> list[str]:
    """Return ``["-fopenmp"]`` if a small OpenMP program builds, else ``[]``."""
    if os.environ.get("CNNCORE_NO_OPENMP", "0") not in ("", "0"):
        print("cnncore: OpenMP disabled by CNNCORE_NO_OPENMP", file=sys.stderr)
        return []
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    if shutil.which(cc) is None:
        return []
    src = (
        "#include <omp.h>\nint main(void){int n=0;\n"
        "#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "omp.c")
        with open(path, "w") as f:
            f.write(src)
        cmd = [cc, "-fopenmp", path, "-o", os.path.join(tmp, "omp")]
        ok = subprocess.run(cmd, capture_output=True).returncode == 0
    print(f"cnncore: OpenMP {'enabled' if ok else 'not available'}", file=sys.stderr)
    return ["-fopenmp"] if ok else []


def extensions() -> list[Extension]:
    omp = openmp_flags()
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"] + omp
    # Built from source on the machine that runs it, so tune for it; CNNCORE_PORTABLE=1 opts out.
    if os.environ.get("CNNCORE_PORTABLE", "0") in ("", "0"):
        compile_args.append("-march=native")
    # Developer convenience: CNNCORE_BUILD_ONLY=_conv,_pool builds just those extensions in place
    # (python setup.py build_ext --inplace), leaving the others as they are.
    only = {s for s in os.environ.get("CNNCORE_BUILD_ONLY", "").split(",") if s}
    exts = []
    for pyx in sorted(glob.glob(os.path.join("kernels", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only and name not in only:
            continue
        exts.append(
            Extension(
                f"cnncore_kernels.{name}",
                [pyx],
                include_dirs=[np.get_include()],
                extra_compile_args=compile_args,
                extra_link_args=omp,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(
    # every package under cnncore/, and kernels/ (with its subpackages) as cnncore_kernels
    packages=find_packages(include=["cnncore", "cnncore.*"])
    + ["cnncore_kernels"]
    + [f"cnncore_kernels.{p}" for p in find_packages("kernels")],
    package_dir={"cnncore_kernels": "kernels"},
    ext_modules=extensions(),
)
