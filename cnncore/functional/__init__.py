"""Validated public kernels: forward and backward of every operation (NCHW, see SPEC.md).

Each function validates its arguments once and hands them to the dispatcher in
``cnncore_kernels``, which runs the Cython CPU twin or the Numba CUDA twin by array type.
"""

from cnncore.functional.conv import col2im, conv2d, conv2d_backward, im2col

__all__ = ["col2im", "conv2d", "conv2d_backward", "im2col"]
