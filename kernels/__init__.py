"""cnncore_kernels: the array kernels under cnncore (installed from the ``kernels/`` directory).

CPU twins are Cython extensions (``_conv``, ``_pool``, ...); GPU twins are Numba ``@cuda.jit``
kernels in ``cuda/``.  The small dispatcher modules (``conv``, ``pooling``, ...) pick the twin by
array type.  Nothing here validates arguments: ``cnncore.functional`` does that once, at the public
boundary, and the kernels trust their inputs.
"""

import os
import warnings


def _openmp_already_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


# Our OpenMP loops (im2col, pooling, ...) alternate with GEMMs.  With libgomp's default (active)
# wait policy the idle OpenMP threads spin after each parallel region and steal the cores the work
# needs: measured on 2 cores, conv2d (8,64,56,56) 0.32 s instead of 0.043 s.  Passive waiting fixes
# that.  libgomp reads the policy once, when it is loaded, and one copy serves the whole process
# (PyTorch's bundled libgomp too), so it must be set before any OpenMP library is loaded: import
# cnncore before torch, or set OMP_WAIT_POLICY=PASSIVE yourself.  A value the user set is kept.
if "OMP_WAIT_POLICY" not in os.environ:
    if _openmp_already_loaded():
        warnings.warn(
            "an OpenMP runtime was loaded before cnncore (e.g. by importing torch first) with the "
            "active wait policy: cnncore's kernels can be several times slower. Import cnncore "
            "first, or set OMP_WAIT_POLICY=PASSIVE in the environment.",
            RuntimeWarning,
            stacklevel=2,
        )
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# Load each Cython extension from the build for this CPU's instruction-set level (see isa.py).
from cnncore_kernels import isa as _isa  # noqa: E402

_isa.install()
