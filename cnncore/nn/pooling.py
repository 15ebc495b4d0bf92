"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``ChannelMaxPool`` (maxout) and
``GlobalAvgPool2d`` (NIN)."""

from __future__ import annotations

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.functional.pooling import as_bool, pool_params
from cnncore.nn.module import Module, grad_enabled


class MaxPool2d(Module):
    """Max pooling, as ``torch.nn.MaxPool2d`` (padding counts as -inf; ``stride`` defaults to the
    kernel).  x: (N, C, H, W) -> y: (N, C, Ho, Wo).

    With gradients enabled it keeps the int64 argmax indices (the only thing backward needs);
    under ``no_grad`` it runs the faster kernel that computes values only.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
    ) -> None:
        self.kernel_size, self.stride, self.padding, self.dilation = pool_params(
            kernel_size, stride, padding, dilation
        )
        self._indices = None
        self._input_shape: tuple[int, ...] | None = None

    def forward(self, x):
        args = (self.kernel_size, self.stride, self.padding, self.dilation)
        if grad_enabled():
            y, self._indices = F.max_pool2d(x, *args)
            self._input_shape = tuple(int(s) for s in x.shape)
            self._remember_output(y)
            return y
        self._indices = self._input_shape = None
        return F.max_pool2d_values(x, *args)

    def backward(self, dy):
        if self._indices is None:
            raise RuntimeError(
                "MaxPool2d.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.max_pool2d_backward(dy, self._indices, self._input_shape)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}"
        )


class AvgPool2d(Module):
    """Average pooling, as ``torch.nn.AvgPool2d`` (plus dilation: the window takes every d-th
    element).  x: (N, C, H, W) -> y: (N, C, Ho, Wo).  Caches only the input shape."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        count_include_pad: bool = True,
    ) -> None:
        self.kernel_size, self.stride, self.padding, self.dilation = pool_params(
            kernel_size, stride, padding, dilation
        )
        self.count_include_pad = as_bool(count_include_pad, "count_include_pad")
        self._input_shape: tuple[int, ...] | None = None

    def _args(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.dilation, self.count_include_pad)

    def forward(self, x):
        y = F.avg_pool2d(x, *self._args())
        self._input_shape = tuple(int(s) for s in x.shape) if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._input_shape is None:
            raise RuntimeError(
                "AvgPool2d.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.avg_pool2d_backward(dy, self._input_shape, *self._args())

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, count_include_pad={self.count_include_pad}"
        )


class ChannelMaxPool(Module):
    """Maxout / channel max pooling: the max over consecutive groups of ``pool_size`` feature maps.
    x: (N, C, H, W) -> y: (N, C // pool_size, H, W); C must be a multiple of ``pool_size``.
    Caches the argmax indices (with gradients enabled)."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = v.positive_int(pool_size, "pool_size")
        self._indices = None
        self._input_shape: tuple[int, ...] | None = None

    def forward(self, x):
        y, idx = F.channel_max_pool(x, self.pool_size)
        if grad_enabled():
            self._indices, self._input_shape = idx, tuple(int(s) for s in x.shape)
        else:
            self._indices = self._input_shape = None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._indices is None:
            raise RuntimeError(
                "ChannelMaxPool.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.channel_max_pool_backward(dy, self._indices, self._input_shape)

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}"


class GlobalAvgPool2d(Module):
    """Global average pooling (NIN): x (N, C, H, W) -> y (N, C, 1, 1), like
    ``torch.nn.AdaptiveAvgPool2d(1)``.  Caches only the input shape."""

    def __init__(self) -> None:
        self._input_shape: tuple[int, ...] | None = None

    def forward(self, x):
        y = F.global_avg_pool2d(x)
        self._input_shape = tuple(int(s) for s in x.shape) if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._input_shape is None:
            raise RuntimeError(
                "GlobalAvgPool2d.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.global_avg_pool2d_backward(dy, self._input_shape)
