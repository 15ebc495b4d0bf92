"""Numba CUDA twins of the CPU kernels, one module per family (same names as the dispatchers).

``conv`` (im2col, col2im, conv2d forward/backward, with ``gemm``, the tiled SGEMM), ``pooling``,
``normalization`` (LRN, LCN), ``activation`` (ReLU, tanh, softmax), ``linear``, ``loss``
(cross-entropy), ``optim`` (SGD step), ``elementwise`` (gradient accumulation), and ``_launch``
(device arrays, launch configurations, reductions, workspaces).  The dispatchers import these
modules only for GPU arrays, so a CPU-only install never imports numba; this package itself
imports nothing.  ``python -m cnncore_kernels.cuda._ptxcheck`` compiles every kernel to PTX
without a GPU (needs NVIDIA's NVVM/NVRTC wheels).
"""
