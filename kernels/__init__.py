"""cnncore_kernels: the array kernels under cnncore (installed from the ``kernels/`` directory).

Every family of kernels has three modules named after it: the dispatcher ``<family>.py`` (what
``cnncore`` calls; its docstring states the signatures and rules both twins follow), the CPU twin
``_<family>.pyx`` (a Cython extension; where the CPU side is plain NumPy, a namespace of the same
names inside the dispatcher instead, "NumPy" below) and the GPU twin ``cuda/<family>.py`` (Numba
``@cuda.jit`` kernels).  The dispatcher picks the twin by array type with ``arrays.twin``,
importing the CUDA module only for device arrays.  Nothing here validates arguments:
``cnncore.functional`` (and ``cnncore.dense``) does that once, at the public boundary, and the
kernels trust their inputs.

=============  ===========================  ==================  ==================================
dispatcher     CPU twin                     GPU twin            what it holds
=============  ===========================  ==================  ==================================
conv           _conv, winograd (_winograd)  cuda/conv           conv2d fwd/bwd, im2col, col2im
pooling        _pooling                     cuda/pooling        max, avg, channel max, global avg
normalization  _normalization               cuda/normalization  LRN, LCN
activation     _activation                  cuda/activation     ReLU, tanh, (log-)softmax, dropout
loss           _loss                        cuda/loss           softmax cross-entropy
linear         NumPy + _linear              cuda/linear         the fully connected layer
optim          NumPy                        cuda/optim          the SGD step
checks         _checks                      cuda/checks         range checks of indices, targets
window         NumPy                        cuda/window         cut a rectangle, paste a block
patches        NumPy                        cuda/patches        gather patches, scatter scores
elementwise    NumPy                        cuda/elementwise    add, scale, axpy
=============  ===========================  ==================  ==================================

Shared pieces, no family of their own: ``arrays`` (``is_cuda_array``, ``twin``, ``empty``),
``buffers`` and ``_buffers`` (the memory handler every dispatcher runs under: freed large blocks
kept for reuse),
``geometry`` and ``_geometry.pxd`` (the one output-size rule, for Python and for Cython),
``_blas`` (the one BLAS extension, cimported by ``_conv``, ``_linear``, ``_winograd``),
``_softmax.pxi`` and ``_ranges.pxi`` (included by the twins that share them), ``_threads``,
``_cpu_features``, ``isa`` and ``_openmp`` (build and runtime set-up), ``cuda/_gemm`` (the SGEMM of
``cuda/conv`` and ``cuda/linear``), ``cuda/_launch`` (device arrays, launch configurations, block
reductions) and ``cuda/_ptxcheck``.
"""

import os

# Load each Cython extension from the build for this CPU's instruction-set level (see isa.py).
from cnncore_kernels import isa as _isa
from cnncore_kernels._openmp import settle_wait_policy

_isa.install()
# Our OpenMP loops (im2col, pooling, ...) alternate with GEMMs and Python glue; OpenMP threads that
# spin after each parallel region steal the cores the work needs.  One scheme, whichever of torch
# and cnncore is imported first: libgomp's throttled spin count (see _openmp.py).  It runs an
# extension, so it starts once the import hook can find it.
settle_wait_policy(os.environ)
