"""Activations: ``ReLU``, ``Tanh``, ``Softmax`` and ``LogSoftmax`` (over the class axis 1)."""

from __future__ import annotations

import numbers

import numpy as np

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.nn.module import Module, grad_enabled


def _dim(dim, owner: str) -> int:
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{owner}: dim must be an int, got {dim!r}")
    return v.integer(dim, f"{owner} dim")


class ReLU(Module):
    """``max(x, 0)`` elementwise, any shape.  Caches its input."""

    def __init__(self) -> None:
        self._x = None

    def forward(self, x):
        y = F.relu(x)
        self._x = x if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError("ReLU.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        return F.relu_backward(dy, self._x)


class Tanh(Module):
    """``tanh(x)`` elementwise, any shape.  Caches its output (``dx = dy * (1 - y^2)``)."""

    def __init__(self) -> None:
        self._y = None

    def forward(self, x):
        y = F.tanh(x)
        self._y = y if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._y is None:
            raise RuntimeError("Tanh.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        return F.tanh_backward(dy, self._y)


class Softmax(Module):
    """Softmax over ``dim`` (default 1, the class axis of (N, K) or (N, K, H, W)), as
    ``torch.nn.Softmax(dim=1)``.  Caches its output."""

    def __init__(self, dim: int = 1) -> None:
        self.dim = _dim(dim, type(self).__name__)
        self._y = None

    def forward(self, x):
        y = F.softmax(x, self.dim)
        self._y = y if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._y is None:
            raise RuntimeError("Softmax.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        return F.softmax_backward(dy, self._y, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax over ``dim`` (default 1), as ``torch.nn.LogSoftmax(dim=1)``.  Caches its
    output."""

    def __init__(self, dim: int = 1) -> None:
        self.dim = _dim(dim, type(self).__name__)
        self._y = None

    def forward(self, x):
        y = F.log_softmax(x, self.dim)
        self._y = y if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._y is None:
            raise RuntimeError(
                "LogSoftmax.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.log_softmax_backward(dy, self._y, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
