"""Small helpers shared by the model builders (named layer lists -> ``Sequential``)."""

from __future__ import annotations

import numbers
from collections import OrderedDict

from cnncore import nn
from cnncore.nn.module import Module


def positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def sequential(
    layers: list[tuple[str, Module]], input_shape: tuple[int, int, int], **attrs: object
) -> nn.Sequential:
    """``Sequential(OrderedDict(layers))`` with ``input_shape`` (C, H, W), the input the paper
    uses (``summary(model)`` defaults to it), and any further plain attributes."""
    model = nn.Sequential(OrderedDict(layers))
    model.input_shape = tuple(int(s) for s in input_shape)
    for key, value in attrs.items():
        setattr(model, key, value)
    return model


def krizhevsky_lrn() -> nn.LocalResponseNorm:
    """AlexNet's response normalization: n=5, k=2, alpha=1e-4, beta=0.75 in the paper's formula
    ``a / (k + alpha * sum a^2)^beta``; torch's (and ours) divides alpha by n, hence 5e-4."""
    return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
