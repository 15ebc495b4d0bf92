"""cnncore_kernels: the array kernels under cnncore (installed from the ``kernels/`` directory).

CPU twins are Cython extensions (``_conv``, ``_pooling``, ...); GPU twins are Numba ``@cuda.jit``
kernels in ``cuda/``.  The small dispatcher modules (``conv``, ``pooling``, ...) pick the twin by
array type.  Nothing here validates arguments: ``cnncore.functional`` does that once, at the public
boundary, and the kernels trust their inputs.
"""

import os

from cnncore_kernels._openmp import openmp_already_loaded, settle_wait_policy

# Our OpenMP loops (im2col, pooling, ...) alternate with GEMMs and Python glue; OpenMP threads that
# spin after each parallel region steal the cores the work needs (see _openmp.py), whichever of
# torch or cnncore is imported first.  The policy must be in the environment before any of our
# extensions loads libgomp; the throttle (when torch loaded libgomp first) is an extension itself,
# so it starts once the import hook below can find it.
_openmp_first = openmp_already_loaded()
if not _openmp_first:
    settle_wait_policy(os.environ)

# Load each Cython extension from the build for this CPU's instruction-set level (see isa.py).
from cnncore_kernels import isa as _isa  # noqa: E402

_isa.install()
if _openmp_first:
    settle_wait_policy(os.environ)
