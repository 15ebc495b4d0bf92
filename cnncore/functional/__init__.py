"""Validated public kernels: forward and backward of every operation (NCHW; the contract is
docs/contract/arrays.rst).

Each function validates its arguments once and hands them to the dispatcher in
``cnncore_kernels``, which runs the Cython CPU twin or the Numba CUDA twin by array type.
"""

from cnncore.functional.activation import (
    dropout,
    dropout_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)
from cnncore.functional.conv import col2im, conv2d, conv2d_backward, im2col
from cnncore.functional.conv_selection import (
    clear_conv_autotune_cache,
    conv_algorithm,
    conv_autotune_enabled,
    set_conv_autotune,
)
from cnncore.functional.linear import linear, linear_backward
from cnncore.functional.loss import cross_entropy
from cnncore.functional.normalization import (
    local_contrast_norm,
    local_contrast_norm_backward,
    local_response_norm,
    local_response_norm_backward,
)
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
    "clear_conv_autotune_cache",
    "conv_algorithm",
    "conv_autotune_enabled",
    "set_conv_autotune",
]
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
__all__ += [
    "cross_entropy",
    "dropout",
    "dropout_backward",
    "linear",
    "linear_backward",
    "local_contrast_norm",
    "local_contrast_norm_backward",
    "local_response_norm",
    "local_response_norm_backward",
    "log_softmax",
    "log_softmax_backward",
    "relu",
    "relu_backward",
    "softmax",
    "softmax_backward",
    "tanh",
    "tanh_backward",
]
