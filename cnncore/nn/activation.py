"""Activations: ``ReLU``, ``Tanh``, ``Softmax`` and ``LogSoftmax`` (over the class axis 1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnncore import functional as F
from cnncore.nn.module import Module, grad_enabled


class ReLU(Module):
    """``max(x, 0)`` elementwise, any shape.  Caches its input."""

    def __init__(self) -> None:
        self._x = None

    def forward(self, x: Any) -> Any:
        y = F.relu(x)
        self._x = x if grad_enabled() else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._x is None:
            raise RuntimeError("ReLU.backward needs a forward pass with gradients enabled first")
        return F.relu_backward(dy, self._x)


class Tanh(Module):
    """``tanh(x)`` elementwise, any shape.  Caches its output (``dx = dy * (1 - y^2)``)."""

    def __init__(self) -> None:
        self._y = None

    def forward(self, x: Any) -> Any:
        y = F.tanh(x)
        self._y = y if grad_enabled() else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._y is None:
            raise RuntimeError("Tanh.backward needs a forward pass with gradients enabled first")
        return F.tanh_backward(dy, self._y)


def _host(a: Any, what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what} runs on CPU (NumPy) arrays, got {type(a).__name__}")
    return a


class Softmax(Module):
    """Softmax over the class axis 1: (N, K) or (N, K, H, W) -> same shape.  Caches its output."""

    def __init__(self) -> None:
        self._y = None

    def forward(self, x: Any) -> Any:
        y = F.softmax(x)
        self._y = y if grad_enabled() else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._y is None:
            raise RuntimeError("Softmax.backward needs a forward pass with gradients enabled first")
        y = self._y
        dy = _host(dy, "Softmax.backward")
        if dy.shape != y.shape:
            raise ValueError(f"dy must have shape {tuple(y.shape)}, got {tuple(dy.shape)}")
        # dx_i = y_i * (dy_i - sum_j dy_j y_j)
        return y * (dy - np.sum(dy * y, axis=1, keepdims=True))


class LogSoftmax(Module):
    """Log-softmax over the class axis 1: (N, K) or (N, K, H, W).  Caches its output."""

    def __init__(self) -> None:
        self._y = None

    def forward(self, x: Any) -> Any:
        y = F.log_softmax(x)
        self._y = y if grad_enabled() else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._y is None:
            raise RuntimeError(
                "LogSoftmax.backward needs a forward pass with gradients enabled first"
            )
        y = self._y
        dy = _host(dy, "LogSoftmax.backward")
        if dy.shape != y.shape:
            raise ValueError(f"dy must have shape {tuple(y.shape)}, got {tuple(dy.shape)}")
        # dx_i = dy_i - softmax_i * sum_j dy_j
        return dy - np.exp(y) * np.sum(dy, axis=1, keepdims=True)
