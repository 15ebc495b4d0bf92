"""Numba CUDA twins of the CPU kernels: one module per family, named like its dispatcher.

Every module but the private ones is a twin behind a dispatcher (``cnncore_kernels.<family>`` picks
it for device arrays):

- ``conv``: im2col, col2im, conv2d forward and backward (im2col + ``_gemm``);
- ``pooling``: max (with and without indices), average, channel max, global average;
- ``normalization``: LRN and LCN;
- ``activation``: ReLU, tanh, softmax, log-softmax, dropout;
- ``linear``: the fully connected layer (``_gemm`` with the bias fused);
- ``loss``: softmax cross-entropy;
- ``optim``: the SGD step;
- ``checks``: range checks of integer arrays (pooling indices, class targets);
- ``window``: cut a rectangle out of an NCHW array (zeros past the edges), paste a block back;
- ``patches``: gather the patches of a batch of pixels, scatter their scores;
- ``elementwise``: add, scale, axpy (gradient accumulation).

Shared pieces: ``_gemm`` (the tiled shared-memory SGEMM), ``_launch`` (device arrays, launch
configurations, the block reductions ``block_sum`` / ``block_min_max``, ``sum_middle``,
workspaces) and ``_ptxcheck`` (``python -m cnncore_kernels.cuda._ptxcheck`` compiles every kernel
to PTX without a GPU; needs NVIDIA's NVVM/NVRTC wheels, the ``lint`` extra).

The dispatchers import these modules only for device arrays, so a CPU-only install never imports
numba; this package itself imports nothing.
"""
