"""Fused operations: ``conv2d_relu`` (bias and ReLU applied where the convolution writes its
output) and ``relu_max_pool2d`` (max pooling of ``relu(x)`` without a pass over ``relu(x)``).

Each equals the unfused chain exactly (same float operations): ``conv2d_relu(x, w, b, ...) ==
relu(conv2d(x, w, b, ...))`` and ``relu_max_pool2d(x, ...) == max_pool2d_values(relu(x), ...)``.
Gradients need no fused kernels: the ReLU's backward from its output's sign is exact
(``relu_backward(dy, relu(z)) == relu_backward(dy, z)``, NaN included), and ``relu`` commutes
with the maximum.  Used by ``Sequential`` and the dense networks.
"""

from __future__ import annotations

from cnncore.functional.activation import relu
from cnncore.functional.conv import _conv2d
from cnncore.functional.pooling import max_pool2d_values


def conv2d_relu(
    x,
    weight,
    bias=None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    algorithm: str = "auto",
):
    """``relu(conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm))`` in one pass
    over the output: x (N, C, H, W), weight (K, C // groups, kh, kw), bias (K,) -> y (N, K, Ho, Wo).
    The GEMM and Winograd paths apply the bias and the ReLU where the convolution writes y; the
    GPU runs the ReLU as its own pass afterwards.  Arguments, algorithm choice and errors as
    ``conv2d``."""
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm, "relu")


def relu_max_pool2d(
    x,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
):
    """``max_pool2d_values(relu(x), ...)``, computed as ``relu(max_pool2d_values(x, ...))``: the
    ReLU runs over the pooled output only (a quarter of ``x`` for 2x2/2 pooling).  Exact: ReLU is
    monotone, so it commutes with the maximum (NaN wins in both).  x (N, C, H, W) -> (N, C, Ho, Wo);
    arguments as ``max_pool2d``."""
    return relu(max_pool2d_values(x, kernel_size, stride, padding, dilation))
