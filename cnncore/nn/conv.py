"""Convolution layer."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from cnncore import _validate as v
from cnncore.functional import conv2d, conv2d_backward
from cnncore.functional.conv_selection import check_algorithm
from cnncore.functional.fused import conv2d_relu
from cnncore.nn.init import LazyUniformFanIn
from cnncore.nn.module import Module, Parameter, float_dtype, grad_enabled


class Conv2d(Module):
    """2-D convolution, as ``torch.nn.Conv2d``: weight (K, C // groups, kh, kw), bias (K,).

    x: (N, C, H, W) -> y: (N, K, Ho, Wo).  ``groups`` splits channels and filters into
    independent convolutions (AlexNet's two towers).  ``algorithm`` is passed to ``conv2d`` and
    ``conv2d_backward`` ("auto": the documented rule or the autotuner, see
    ``cnncore.functional.conv_selection``).  Caches its input (while gradients are enabled).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        dtype: DTypeLike = np.float32,
        groups: int = 1,
        algorithm: str = "auto",
    ) -> None:
        if not isinstance(bias, (bool, np.bool_)):  # torch's 7th argument is groups, ours bias
            raise TypeError(
                f"bias must be a bool, got {bias!r} (pass groups by keyword: groups={bias!r})"
            )
        self.in_channels = v.positive_int(in_channels, "in_channels")
        self.out_channels = v.positive_int(out_channels, "out_channels")
        self.kernel_size = v.positive_pair(kernel_size, "kernel_size")
        self.stride = v.positive_pair(stride, "stride")
        self.padding = v.nonneg_pair(padding, "padding")
        self.dilation = v.positive_pair(dilation, "dilation")
        self.groups = v.positive_int(groups, "groups")
        self.algorithm = check_algorithm(algorithm)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}"
            )
        dtype = float_dtype(dtype, "Conv2d")
        cin = self.in_channels // self.groups
        v.check_size((self.out_channels, cin, *self.kernel_size), "Conv2d weight")
        fan_in = cin * self.kernel_size[0] * self.kernel_size[1]
        shape = (self.out_channels, cin, *self.kernel_size)
        self.weight = Parameter(LazyUniformFanIn(shape, fan_in, dtype))
        self.bias = (
            Parameter(LazyUniformFanIn((self.out_channels,), fan_in, dtype)) if bias else None
        )
        self._x = None

    def forward(self, x):
        return self._run(conv2d, x)

    def forward_relu(self, x):
        """``relu(self.forward(x))`` with the bias and ReLU applied where the output is written
        (used by ``Sequential`` for a Conv2d followed by ReLU); caches like ``forward``."""
        return self._run(conv2d_relu, x)

    def _run(self, conv, x):
        b = self.bias.data if self.bias is not None else None
        args = (self.stride, self.padding, self.dilation, self.groups, self.algorithm)
        y = conv(x, self.weight.data, b, *args)
        self._x = x if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        return self._backward(dy, True)

    def backward_params(self, dy) -> None:
        # the weight and bias gradients only: the input's gradient is not computed
        self._backward(dy, False)

    def _backward(self, dy, need_dx):
        if self._x is None:
            raise RuntimeError("Conv2d.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        dx, dw, db = conv2d_backward(
            dy,
            self._x,
            self.weight.data,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.algorithm,
            need_dx=need_dx,
            need_dweight=self.weight.requires_grad,
            need_dbias=self.bias is not None and self.bias.requires_grad,
        )
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
            + (f", groups={self.groups}" if self.groups != 1 else "")
            + (f", algorithm={self.algorithm!r}" if self.algorithm != "auto" else "")
        )
