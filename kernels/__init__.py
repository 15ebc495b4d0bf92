"""cnncore_kernels: the array kernels under cnncore (installed from the ``kernels/`` directory).

CPU twins are Cython extensions (``_conv``, ``_pool``, ...); GPU twins are Numba ``@cuda.jit``
kernels in ``cuda/``.  The small dispatcher modules (``conv``, ``pooling``, ...) pick the twin by
array type.  Nothing here validates arguments: ``cnncore.functional`` does that once, at the public
boundary, and the kernels trust their inputs.
"""

import os

# Our OpenMP loops (im2col, pooling, ...) alternate with OpenBLAS's own pthreads inside GEMM.  With
# libgomp's default policy the idle OpenMP threads spin after each parallel region and steal the
# cores OpenBLAS needs (measured: conv2d 2-3x slower on 2 cores).  Passive waiting fixes that.  It
# must be set before libgomp is loaded, i.e. before the first extension is imported; a value the
# user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
