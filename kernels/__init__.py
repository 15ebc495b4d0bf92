"""cnncore_kernels: the array kernels under cnncore (installed from the ``kernels/`` directory).

CPU twins are Cython extensions (``_im2col``, ``_conv``, ...); GPU twins are Numba ``@cuda.jit``
kernels in ``cuda/``.  The small dispatcher modules (``conv``, ``pooling``, ...) pick the twin by
array type.  Nothing here validates arguments: ``cnncore.functional`` does that once, at the public
boundary, and the kernels trust their inputs.
"""
