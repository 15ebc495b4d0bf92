"""Fully connected layer ``Linear`` and ``Flatten``."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from cnncore import _validate as v
from cnncore import functional as F
from cnncore.nn.init import LazyUniformFanIn
from cnncore.nn.module import Module, Parameter, float_dtype, grad_enabled


class Linear(Module):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``: weight (out_features, in_features),
    bias (out_features,).  x: (N, in_features) -> y: (N, out_features).  Caches its input."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: DTypeLike = np.float32
    ) -> None:
        self.in_features = v.positive_int(in_features, "in_features")
        self.out_features = v.positive_int(out_features, "out_features")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"Linear: bias must be a bool, got {bias!r}")
        dtype = float_dtype(dtype, "Linear")
        shape = (self.out_features, self.in_features)
        v.check_size(shape, "Linear weight")
        self.weight = Parameter(LazyUniformFanIn(shape, self.in_features, dtype))
        self.bias = (
            Parameter(LazyUniformFanIn((self.out_features,), self.in_features, dtype))
            if bias
            else None
        )
        self._x = None

    def forward(self, x):
        b = self.bias.data if self.bias is not None else None
        y = F.linear(x, self.weight.data, b)
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
            raise RuntimeError("Linear.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        dx, dw, db = F.linear_backward(
            dy,
            self._x,
            self.weight.data,
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
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), as ``torch.nn.Flatten()``.  Caches the input shape."""

    def __init__(self) -> None:
        self._input_shape: tuple[int, ...] | None = None

    def forward(self, x):
        x = v.any_float_array(x, "x")  # float32/float64, no empty axis (the rules of the kernels)
        if len(x.shape) < 1:
            raise ValueError(f"Flatten needs an array with a batch axis, got shape {x.shape}")
        shape = tuple(int(s) for s in x.shape)
        self._input_shape = shape if grad_enabled() else None
        n = int(np.prod(shape[1:], dtype=np.int64))
        if not isinstance(x, np.ndarray):  # GPU array: reshape of a contiguous device array
            y = x.reshape(shape[0], n)
        else:
            y = np.ascontiguousarray(x).reshape(shape[0], n)
        self._remember_output(y)
        return y

    def backward(self, dy):
        if self._input_shape is None:
            raise RuntimeError("Flatten.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        if not isinstance(dy, np.ndarray):
            return dy.reshape(*self._input_shape)
        return np.ascontiguousarray(dy).reshape(self._input_shape)
