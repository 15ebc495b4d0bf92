"""PyTorch modules for the cnncore layers that ``torch.nn`` lacks, used by ``to_torch``.

This module imports torch at module level: only ``cnncore.nn.torch_interop`` imports it, inside
its functions, so ``import cnncore`` never loads PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class DilatedAvgPool2d(torch.nn.Module):
    """Average pooling whose window takes every ``dilation``-th element, as cnncore's
    ``AvgPool2d(..., dilation=d)`` (``torch.nn.AvgPool2d`` has no dilation): the window sum is a
    depthwise convolution with ones, divided by the taps (``count_include_pad``) or by the taps
    that fall inside the image.  x: (N, C, H, W) -> (N, C, Ho, Wo)."""

    def __init__(
        self,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.dilation = tuple(dilation)
        self.count_include_pad = bool(count_include_pad)

    def _window_sum(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        ones = x.new_ones((c, 1, *self.kernel_size))
        return F.conv2d(x, ones, None, self.stride, self.padding, self.dilation, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self._window_sum(x)
        if self.count_include_pad or self.padding == (0, 0):
            return total / (self.kernel_size[0] * self.kernel_size[1])
        return total / self._window_sum(x.new_ones((1, 1, *x.shape[2:])))

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, count_include_pad={self.count_include_pad}"
        )


class ChannelMaxPool(torch.nn.Module):
    """Maxout: the max over groups of ``pool_size`` consecutive channels, as cnncore's
    ``ChannelMaxPool``.  x: (N, C, H, W) -> (N, C // pool_size, H, W)."""

    def __init__(self, pool_size: int) -> None:
        super().__init__()
        self.pool_size = int(pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, c // self.pool_size, self.pool_size, h, w).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}"
