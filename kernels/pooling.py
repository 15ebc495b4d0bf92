"""Dispatcher for pooling: picks the CPU (Cython ``_pooling``) or GPU (Numba CUDA) twin by array
type.

Signatures shared by both twins (inputs validated by ``cnncore.functional.pooling``; the twins trust
them).  ``kernel``, ``stride``, ``padding``, ``dilation`` are ``(h, w)`` tuples of Python ints
(stride already defaulted to the kernel), shapes are tuples of Python ints, arrays C-contiguous.

- ``max_pool2d(x, kernel, stride, padding, dilation) -> (y, indices)``
  x (N, C, H, W) -> y (N, C, Ho, Wo) same dtype, indices int64 (N, C, Ho, Wo): flat ``h*W + w`` of
  the chosen element in its plane.  Padding is never chosen; taps visited in window order (rows,
  then columns); an element replaces the running max when it is greater or is NaN (torch's rule:
  ties keep the first, the last NaN wins); the running max starts at -inf on the first valid tap.
- ``max_pool2d_values(x, kernel, stride, padding, dilation) -> y``: the same values, no indices.
- ``max_pool2d_backward(dy, indices, input_shape) -> dx``: dx (N, C, H, W) zeros, then
  ``dx[n, c].flat[indices[n, c, i, j]] += dy[n, c, i, j]`` (indices in [0, H*W)), added in output
  order (i, then j).
- ``max_pool2d_backward_checked(dy, indices, input_shape) -> (dx, bad)``: the same, the indices
  not trusted: ``bad`` is None, or the flat position and value of the first index outside
  [0, H*W) (dx then unfinished or None).  The CPU twin checks each index as it scatters it (no
  pass of its own over the indices), the GPU twin runs its range check first.
- ``avg_pool2d(x, kernel, stride, padding, dilation, count_include_pad) -> y``: the taps inside the
  input (padding is zero) summed in window order (rows, then columns) starting from 0, then divided
  by ``kh*kw`` (count_include_pad) or by (valid rows) * (valid columns) of the window.
- ``avg_pool2d_backward(dy, input_shape, kernel, stride, padding, dilation, count_include_pad)
  -> dx``: every input element starts at 0 and adds ``dy[o] / divisor(o)`` of each output o whose
  window holds it, taps in window order (i, then j; i.e. output rows, then columns, descending).
- ``channel_max_pool(x, pool_size) -> (y, indices)``: x (N, C, H, W) -> y (N, C//k, H, W), indices
  int64 (N, C//k, H, W) = absolute input channel of the max over channels ``g*k .. g*k+k-1`` (same
  greater-or-NaN rule, channels in increasing order).
- ``channel_max_pool_backward(dy, indices, input_shape) -> dx``: ``dx[n, c, h, w] = dy[n, g, h, w]``
  where ``indices[n, g, h, w] == c``, else 0.
- ``global_avg_pool2d(x) -> y``: (N, C, 1, 1) means of the planes (summed in float64, divided by
  H*W, rounded to the dtype).
- ``global_avg_pool2d_backward(dy, input_shape) -> dx``: ``dy[n, c, 0, 0] / (H*W)`` everywhere.
"""

from __future__ import annotations

from cnncore_kernels import _pooling
from cnncore_kernels.arrays import twin
from cnncore_kernels.buffers import pooled


@pooled
def max_pool2d(x, kernel, stride, padding, dilation):
    # inputs validated by cnncore.functional.max_pool2d
    return twin(x, _pooling, "pooling").max_pool2d(x, kernel, stride, padding, dilation)


@pooled
def max_pool2d_values(x, kernel, stride, padding, dilation):
    # inputs validated by cnncore.functional.max_pool2d_values
    return twin(x, _pooling, "pooling").max_pool2d_values(x, kernel, stride, padding, dilation)


@pooled
def max_pool2d_backward(dy, indices, input_shape):
    # inputs validated by cnncore.functional.max_pool2d_backward
    return twin(dy, _pooling, "pooling").max_pool2d_backward(dy, indices, input_shape)


@pooled
def max_pool2d_backward_checked(dy, indices, input_shape):
    # shapes validated by cnncore.functional.max_pool2d_backward, the indices' range here
    return twin(dy, _pooling, "pooling").max_pool2d_backward_checked(dy, indices, input_shape)


@pooled
def avg_pool2d(x, kernel, stride, padding, dilation, count_include_pad):
    # inputs validated by cnncore.functional.avg_pool2d
    return twin(x, _pooling, "pooling").avg_pool2d(
        x, kernel, stride, padding, dilation, count_include_pad
    )


@pooled
def avg_pool2d_backward(dy, input_shape, kernel, stride, padding, dilation, count_include_pad):
    # inputs validated by cnncore.functional.avg_pool2d_backward
    return twin(dy, _pooling, "pooling").avg_pool2d_backward(
        dy, input_shape, kernel, stride, padding, dilation, count_include_pad
    )


@pooled
def channel_max_pool(x, pool_size):
    # inputs validated by cnncore.functional.channel_max_pool
    return twin(x, _pooling, "pooling").channel_max_pool(x, pool_size)


@pooled
def channel_max_pool_backward(dy, indices, input_shape):
    # inputs validated by cnncore.functional.channel_max_pool_backward
    return twin(dy, _pooling, "pooling").channel_max_pool_backward(dy, indices, input_shape)


@pooled
def global_avg_pool2d(x):
    # inputs validated by cnncore.functional.global_avg_pool2d
    return twin(x, _pooling, "pooling").global_avg_pool2d(x)


@pooled
def global_avg_pool2d_backward(dy, input_shape):
    # inputs validated by cnncore.functional.global_avg_pool2d_backward
    return twin(dy, _pooling, "pooling").global_avg_pool2d_backward(dy, input_shape)
