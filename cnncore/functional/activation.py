"""Public, validated activations: ReLU, tanh, softmax and log-softmax, forward and backward.

Arrays of any shape (softmax: at least one axis), float32 or float64 on the CPU, float32 on the GPU;
results come in the input's dtype and shape.  Backward functions take the forward's output where
that is what the gradient needs (tanh, softmax, log-softmax), as torch's autograd does.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from cnncore import _validate as v
from cnncore_kernels import activation as _k


def _array(x, name: str):
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    x = v.any_float_array(x, name)
    if tuple(x.shape) != shape:  # np.ascontiguousarray turns a 0-d array into shape (1,)
        x = x.reshape(shape)
    v.check_size(shape, name)
    return x


def _grad_pair(dy, ref, ref_name: str) -> tuple:
    ref = _array(ref, ref_name)
    dy = v.any_float_array(dy, "dy")
    v.same_device_and_dtype(ref, ref_name, dy, "dy")
    if tuple(dy.shape) != tuple(ref.shape):
        raise ValueError(
            f"dy must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(dy.shape)}"
        )
    return dy, ref


def _axis(axis, ndim: int, name: str) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension for a softmax, got shape ()")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {name} with {ndim} dimensions")
    return int(axis) % ndim


def relu(x):
    """``max(x, 0)`` elementwise (NaN propagates, as torch.relu).  x: any shape."""
    return _k.relu(_array(x, "x"))


def relu_backward(dy, x):
    """Gradient of ``relu``: ``dx = dy`` where ``x > 0``, else 0.  dy, x: same shape."""
    dy, x = _grad_pair(dy, x, "x")
    return _k.relu_backward(dy, x)


def tanh(x):
    """``tanh(x)`` elementwise.  x: any shape."""
    return _k.tanh(_array(x, "x"))


def tanh_backward(dy, y):
    """Gradient of ``tanh`` from its output ``y = tanh(x)``: ``dx = dy * (1 - y**2)``."""
    dy, y = _grad_pair(dy, y, "y")
    return _k.tanh_backward(dy, y)


def softmax(x, axis: int = 1):
    """Softmax along ``axis`` (default 1, the class axis of (N, K) or (N, K, H, W)).

    ``exp(x - max) / sum(exp(x - max))`` with the maximum taken along ``axis`` (no overflow).
    """
    x = _array(x, "x")
    return _k.softmax(x, _axis(axis, x.ndim, "x"))


def log_softmax(x, axis: int = 1):
    """Log-softmax along ``axis``: ``(x - max) - log(sum(exp(x - max)))``."""
    x = _array(x, "x")
    return _k.log_softmax(x, _axis(axis, x.ndim, "x"))


def softmax_backward(dy, y, axis: int = 1):
    """Gradient of ``softmax`` from its output ``y``: ``dx = y * (dy - sum(dy * y, axis))``."""
    dy, y = _grad_pair(dy, y, "y")
    return _k.softmax_backward(dy, y, _axis(axis, y.ndim, "y"))


def log_softmax_backward(dy, y, axis: int = 1):
    """Gradient of ``log_softmax`` from its output ``y``: ``dx = dy - exp(y) * sum(dy, axis)``."""
    dy, y = _grad_pair(dy, y, "y")
    return _k.log_softmax_backward(dy, y, _axis(axis, y.ndim, "y"))


def dropout_p(p) -> float:
    """A validated dropout probability in [0, 1] (``Dropout`` checks it at construction)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a number, got {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    return float(p)


def _dropout_args(p, key) -> tuple[int, int, float]:
    p = dropout_p(p)
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral):
        raise TypeError(f"key must be an int, got {key!r}")
    if not 0 <= key < 2**64:
        raise ValueError(f"key must be in [0, 2**64), got {key}")
    thr = math.ceil(float(p) * 2**24)
    return int(key), thr, 0.0 if p == 1.0 else 1.0 / (1.0 - float(p))


def dropout(x, p: float, key: int):
    """Inverted dropout with the mask of ``key``: each element is kept with probability ``1 - p``
    (to within ``2**-24``) and scaled by ``1 / (1 - p)``, else zeroed.

    The mask is a hash of the element's flat index and ``key`` (a 64-bit int): no stored state,
    the same on the CPU and the GPU (bit for bit), and independent across keys.  x: any shape.
    """
    key, thr, scale = _dropout_args(p, key)
    return _k.dropout(_array(x, "x"), key, thr, scale)


def dropout_backward(dy, p: float, key: int):
    """Gradient of ``dropout(x, p, key)``: ``dy`` times the same mask."""
    key, thr, scale = _dropout_args(p, key)
    return _k.dropout(_array(dy, "dy"), key, thr, scale)
