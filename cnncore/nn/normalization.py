"""Normalization layers: ``LocalResponseNorm`` (AlexNet, across channels) and
``LocalContrastNorm`` (Jarrett et al. 2009; docs/contract/arrays.rst gives the formula)."""

from __future__ import annotations

from cnncore import functional as F
from cnncore.functional.normalization import lcn_params, lrn_params
from cnncore.nn.module import Module, grad_enabled


class LocalResponseNorm(Module):
    """As ``torch.nn.LocalResponseNorm``:
    ``y = x / (k + alpha/size * sum_{size neighbouring channels} x^2) ** beta``.
    x: (N, C, H, W) -> same shape.  Caches its input."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        # the rules of functional.local_response_norm (beta may be negative, as in torch)
        self.size, self.alpha, self.beta, self.k = lrn_params(size, alpha, beta, k)
        self._x = None

    def forward(self, x):
        y = F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        self._x = x if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError(
                "LocalResponseNorm.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.local_response_norm_backward(dy, self._x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class LocalContrastNorm(Module):
    """Local contrast normalization (subtractive then divisive, Gaussian window over space and
    channels; ``divisor`` "mean" or "fixed").  x: (N, C, H, W) -> same shape.  Caches its input.

    On flat windows (``s == 0``) the gradient is finite, the limit of central differences, where
    PyTorch's autograd of the formula gives NaN (see ``functional.local_contrast_norm_backward``).
    """

    def __init__(
        self, size: int = 9, sigma: float = 2.0, threshold: float = 1e-4, divisor: str = "mean"
    ) -> None:
        # the rules of functional.local_contrast_norm (threshold > 0)
        self.size, self.sigma, self.threshold, self.divisor = lcn_params(
            size, sigma, threshold, divisor
        )
        self._x = None

    def _args(self) -> tuple:
        return (self.size, self.sigma, self.threshold, self.divisor)

    def forward(self, x):
        y = F.local_contrast_norm(x, *self._args())
        self._x = x if grad_enabled() else None
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError(
                "LocalContrastNorm.backward needs a forward pass with gradients enabled first"
            )
        self._check_dy(dy)
        return F.local_contrast_norm_backward(dy, self._x, *self._args())

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, sigma={self.sigma}, threshold={self.threshold}, "
            f"divisor={self.divisor!r}"
        )
