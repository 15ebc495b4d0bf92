"""cnncore_kernels: the array kernels under cnncore (installed from the ``kernels/`` directory).

CPU twins are Cython extensions (``_conv``, ``_pool``, ...); GPU twins are Numba ``@cuda.jit``
kernels in ``cuda/``.  The small dispatcher modules (``conv``, ``pooling``, ...) pick the twin by
array type.  Nothing here validates arguments: ``cnncore.functional`` does that once, at the public
boundary, and the kernels trust their inputs.
"""

import os

from cnncore_kernels._openmp import settle_wait_policy

# Our OpenMP loops (im2col, pooling, ...) alternate with GEMMs and Python glue; OpenMP threads that
# spin after each parallel region steal the cores the work needs (see _openmp.py), whichever of
# torch or cnncore is imported first.
settle_wait_policy(os.environ)
