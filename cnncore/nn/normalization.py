"""Normalization layers: ``LocalResponseNorm`` (AlexNet, across channels) and
``LocalContrastNorm`` (Jarrett et al. 2009; docs/contract/arrays.rst gives the formula)."""

from __future__ import annotations

import numbers
from typing import Any

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.nn.module import Module, grad_enabled


def _positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (value >= 0 if allow_zero else value > 0) or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


class LocalResponseNorm(Module):
    """As ``torch.nn.LocalResponseNorm``:
    ``y = x / (k + alpha/size * sum_{size neighbouring channels} x^2) ** beta``.
    x: (N, C, H, W) -> same shape.  Caches its input."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        self.size = v.positive_int(size, "size")
        self.alpha = _positive_float(alpha, "alpha", allow_zero=True)
        self.beta = _positive_float(beta, "beta", allow_zero=True)
        self.k = _positive_float(k, "k")
        self._x = None

    def forward(self, x: Any) -> Any:
        y = F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        self._x = x if grad_enabled() else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._x is None:
            raise RuntimeError(
                "LocalResponseNorm.backward needs a forward pass with gradients enabled first"
            )
        return F.local_response_norm_backward(dy, self._x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class LocalContrastNorm(Module):
    """Local contrast normalization (subtractive then divisive, Gaussian window over space and
    channels; ``divisor`` "mean" or "fixed").  x: (N, C, H, W) -> same shape.  Caches its input."""

    def __init__(
        self, size: int = 9, sigma: float = 2.0, threshold: float = 1e-4, divisor: str = "mean"
    ) -> None:
        self.size = v.positive_int(size, "size")
        self.sigma = _positive_float(sigma, "sigma")
        self.threshold = _positive_float(threshold, "threshold", allow_zero=True)
        if divisor not in ("mean", "fixed"):
            raise ValueError(f"divisor must be 'mean' or 'fixed', got {divisor!r}")
        self.divisor = divisor
        self._x = None

    def _args(self) -> tuple:
        return (self.size, self.sigma, self.threshold, self.divisor)

    def forward(self, x: Any) -> Any:
        y = F.local_contrast_norm(x, *self._args())
        self._x = x if grad_enabled() else None
        return y

    def backward(self, dy: Any) -> Any:
        if self._x is None:
            raise RuntimeError(
                "LocalContrastNorm.backward needs a forward pass with gradients enabled first"
            )
        return F.local_contrast_norm_backward(dy, self._x, *self._args())

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, sigma={self.sigma}, threshold={self.threshold}, "
            f"divisor={self.divisor!r}"
        )
