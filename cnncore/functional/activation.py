"""Public, validated activations: ReLU, tanh, softmax and log-softmax, forward and backward.

Arrays of any shape (softmax: at least one axis), float32 or float64 on the CPU, float32 on the GPU;
results come in the input's dtype and shape.  Backward functions take the forward's output where
that is what the gradient needs (tanh, softmax, log-softmax), as torch's autograd does.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from cnncore import _validate as v
from cnncore_kernels import activation as _k


def _array(x: Any, name: str) -> Any:
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    x = v.any_float_array(x, name)
    if tuple(x.shape) != shape:  # np.ascontiguousarray turns a 0-d array into shape (1,)
        x = x.reshape(shape)
    v.check_size(shape, name)
    return x


def _grad_pair(dy: Any, ref: Any, ref_name: str) -> tuple[Any, Any]:
    ref = _array(ref, ref_name)
    dy = v.any_float_array(dy, "dy")
    v.same_device_and_dtype(ref, ref_name, dy, "dy")
    if tuple(dy.shape) != tuple(ref.shape):
        raise ValueError(
            f"dy must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(dy.shape)}"
        )
    return dy, ref


def _axis(axis: Any, ndim: int, name: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension for a softmax, got shape ()")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {name} with {ndim} dimensions")
    return int(axis) % ndim


def relu(x: Any) -> Any:
    """``max(x, 0)`` elementwise (NaN propagates, as torch.relu).  x: any shape."""
    return _k.relu(_array(x, "x"))


def relu_backward(dy: Any, x: Any) -> Any:
    """Gradient of ``relu``: ``dx = dy`` where ``x > 0``, else 0.  dy, x: same shape."""
    dy, x = _grad_pair(dy, x, "x")
    return _k.relu_backward(dy, x)


def tanh(x: Any) -> Any:
    """``tanh(x)`` elementwise.  x: any shape."""
    return _k.tanh(_array(x, "x"))


def tanh_backward(dy: Any, y: Any) -> Any:
    """Gradient of ``tanh`` from its output ``y = tanh(x)``: ``dx = dy * (1 - y**2)``."""
    dy, y = _grad_pair(dy, y, "y")
    return _k.tanh_backward(dy, y)


def softmax(x: Any, axis: int = 1) -> Any:
    """Softmax along ``axis`` (default 1, the class axis of (N, K) or (N, K, H, W)).

    ``exp(x - max) / sum(exp(x - max))`` with the maximum taken along ``axis`` (no overflow).
    """
    x = _array(x, "x")
    return _k.softmax(x, _axis(axis, x.ndim, "x"))


def log_softmax(x: Any, axis: int = 1) -> Any:
    """Log-softmax along ``axis``: ``(x - max) - log(sum(exp(x - max)))``."""
    x = _array(x, "x")
    return _k.log_softmax(x, _axis(axis, x.ndim, "x"))


def softmax_backward(dy: Any, y: Any, axis: int = 1) -> Any:
    """Gradient of ``softmax`` from its output ``y``: ``dx = y * (dy - sum(dy * y, axis))``."""
    dy, y = _grad_pair(dy, y, "y")
    return _k.softmax_backward(dy, y, _axis(axis, y.ndim, "y"))


def log_softmax_backward(dy: Any, y: Any, axis: int = 1) -> Any:
    """Gradient of ``log_softmax`` from its output ``y``: ``dx = dy - exp(y) * sum(dy, axis)``."""
    dy, y = _grad_pair(dy, y, "y")
    return _k.log_softmax_backward(dy, y, _axis(axis, y.ndim, "y"))
