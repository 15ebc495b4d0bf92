"""Fused operations: ``conv2d_relu`` (bias and ReLU applied where the convolution writes its
output) and ``relu_max_pool2d`` (max pooling of ``relu(x)`` without a pass over ``relu(x)``).

Each equals the unfused chain exactly (same float operations): ``conv2d_relu(x, w, b, ...) ==
relu(conv2d(x, w, b, ...))`` and ``relu_max_pool2d(x, ...) == max_pool2d_values(relu(x), ...)``.
Gradients need no fused kernels: the ReLU's backward from its output's sign is exact
(``relu_backward(dy, relu(z)) == relu_backward(dy, z)``, NaN included), and ``relu`` commutes
with the maximum.  Used by ``Sequential`` and the dense networks.
"""

from __future__ import annotations

from typing import Any

from cnncore import _validate as v
from cnncore.device import concat, take
from cnncore.functional.activation import relu
from cnncore.functional.conv import _conv_geometry
from cnncore.functional.pooling import max_pool2d_values
from cnncore_kernels import conv as _k


def conv2d_relu(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Any:
    """``relu(conv2d(x, weight, bias, stride, padding, dilation, groups))`` in one pass over the
    output: x (N, C, H, W), weight (K, C // groups, kh, kw), bias (K,) -> y (N, K, Ho, Wo).
    On the CPU the bias and the ReLU are applied where the convolution writes y; on the GPU the
    ReLU runs as its own kernel afterwards.  Arguments and errors as ``conv2d``."""
    x = v.any_float_array(x, "x", 4)
    weight = v.any_float_array(weight, "weight", 4)
    v.same_device_and_dtype(x, "x", weight, "weight")
    if bias is not None:
        bias = v.any_float_array(bias, "bias", 1)
        v.same_device_and_dtype(x, "x", bias, "bias")
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) to match weight {tuple(weight.shape)}, "
                f"got {tuple(bias.shape)}"
            )
    groups = v.positive_int(groups, "groups")
    stride, padding, dilation, _ = _conv_geometry(x, weight, stride, padding, dilation, "x", groups)
    if groups == 1:
        return _k.conv2d_forward(x, weight, bias, stride, padding, dilation, activation="relu")
    Cg, Kg = int(x.shape[1]) // groups, int(weight.shape[0]) // groups
    return concat(
        [
            _k.conv2d_forward(
                take(x, g * Cg, (g + 1) * Cg),
                weight[g * Kg : (g + 1) * Kg],
                None if bias is None else bias[g * Kg : (g + 1) * Kg],
                stride,
                padding,
                dilation,
                activation="relu",
            )
            for g in range(groups)
        ],
        axis=1,
    )


def relu_max_pool2d(
    x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1
) -> Any:
    """``max_pool2d_values(relu(x), ...)``, computed as ``relu(max_pool2d_values(x, ...))``: the
    ReLU runs over the pooled output only (a quarter of ``x`` for 2x2/2 pooling).  Exact: ReLU is
    monotone, so it commutes with the maximum (NaN wins in both).  x (N, C, H, W) -> (N, C, Ho, Wo);
    arguments as ``max_pool2d``."""
    return relu(max_pool2d_values(x, kernel_size, stride, padding, dilation))
