"""Validated public kernels: forward and backward of every operation (NCHW, see SPEC.md).

Each function validates its arguments once and hands them to the dispatcher in
``cnncore_kernels``, which runs the Cython CPU twin or the Numba CUDA twin by array type.
"""

from cnncore.functional.conv import col2im, conv2d, conv2d_backward, im2col
from cnncore.functional.pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    channel_max_pool,
    channel_max_pool_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_values,
)

__all__ = ["col2im", "conv2d", "conv2d_backward", "im2col"]
__all__ += [
    "avg_pool2d",
    "avg_pool2d_backward",
    "channel_max_pool",
    "channel_max_pool_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_values",
]
