"""The output shape of every layer of ``cnncore.nn`` from its attributes (no forward pass).

``output_shape(layer, shape, name)`` maps the shape of one input (without the batch axis:
``(C, H, W)`` for a map, ``(F,)`` for a vector) to the shape of one output, with the same formulas
as the kernels (``cnncore_kernels.geometry.out_size``, torch's rule), and refuses an input the layer
cannot take with a ``ValueError`` naming the layer.  It is the one per-layer rule behind both
``cnncore.summary`` and the dense conversion (``cnncore.dense.analyze``), so the two cannot drift.
Containers (``Sequential``, ``Concat``) are followed child by child.

``macs_per_position(layer, shape)`` is likewise the one rule for multiply-accumulates, behind
``summary``'s ``macs`` and the dense cost model (``cnncore.dense.cost``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cnncore import nn
from cnncore_kernels.geometry import out_size

Shape = tuple[int, ...]

__all__ = ["macs_per_position", "output_shape"]


def _who(name: str, layer: nn.Module) -> str:
    return f"layer {name!r} ({type(layer).__name__})"


def _map(layer: nn.Module, shape: Shape, name: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{_who(name, layer)} needs a (C, H, W) input, got shape {shape}")
    return shape  # type: ignore[return-value]


def _window(layer: nn.Module, shape: Shape, name: str) -> tuple[int, int]:
    _, h, w = _map(layer, shape, name)
    k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    out = tuple(
        out_size(size, kk, ss, pp, dd)
        for size, kk, ss, pp, dd in zip((h, w), k, s, p, d, strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"{_who(name, layer)} with kernel_size={tuple(k)}, padding={tuple(p)}, "
            f"dilation={tuple(d)} is larger than its padded input of shape {shape}"
        )
    return out  # type: ignore[return-value]


def _conv(layer: nn.Module, shape: Shape, name: str) -> Shape:
    c = _map(layer, shape, name)[0]
    if c != layer.in_channels:
        raise ValueError(
            f"{_who(name, layer)} expects {layer.in_channels} input channels but receives {c} "
            f"(input shape {shape})"
        )
    return (int(layer.out_channels), *_window(layer, shape, name))


def _pool(layer: nn.Module, shape: Shape, name: str) -> Shape:
    return (shape[0], *_window(layer, shape, name))


def _global_pool(layer: nn.Module, shape: Shape, name: str) -> Shape:
    return (_map(layer, shape, name)[0], 1, 1)


def _channel_pool(layer: nn.Module, shape: Shape, name: str) -> Shape:
    c, h, w = _map(layer, shape, name)
    if c % layer.pool_size:
        raise ValueError(
            f"{_who(name, layer)} with pool_size={layer.pool_size} needs channels that are a "
            f"multiple of pool_size, gets shape {shape}"
        )
    return (c // layer.pool_size, h, w)


def _same_map(layer: nn.Module, shape: Shape, name: str) -> Shape:
    _map(layer, shape, name)
    return shape


def _flatten(layer: nn.Module, shape: Shape, name: str) -> Shape:
    return (math.prod(shape),)


def _linear(layer: nn.Module, shape: Shape, name: str) -> Shape:
    if len(shape) != 1 or shape[0] != layer.in_features:
        raise ValueError(
            f"{_who(name, layer)} expects ({layer.in_features},) inputs (put a Flatten before "
            f"it), gets shape {shape}"
        )
    return (int(layer.out_features),)


def _softmax(layer: nn.Module, shape: Shape, name: str) -> Shape:
    ndim = len(shape) + 1  # the batch axis is part of the layer's input
    if not -ndim <= layer.dim < ndim:
        raise ValueError(
            f"{_who(name, layer)} with dim={layer.dim} does not fit an input of shape (N, *{shape})"
        )
    return shape


def _same(layer: nn.Module, shape: Shape, name: str) -> Shape:
    return shape


def _sequential(layer: nn.Module, shape: Shape, name: str) -> Shape:
    for child_name, child in layer.named_children():
        shape = output_shape(child, shape, f"{name}.{child_name}" if name else child_name)
    return shape


def _concat(layer: nn.Module, shape: Shape, name: str) -> Shape:
    outs = [
        (child_name, output_shape(child, shape, f"{name}.{child_name}" if name else child_name))
        for child_name, child in layer.named_children()
    ]
    first_name, first = outs[0]
    for child_name, out in outs:
        if len(out) != 3 or out[1:] != first[1:]:
            raise ValueError(
                f"branch {child_name!r} of {name!r} (Concat) gives shape {out}, which cannot be "
                f"joined along channels with {first} of branch {first_name!r}"
            )
    return (sum(o[0] for _, o in outs), *first[1:])


def _rules() -> tuple[tuple[type | tuple[type, ...], Callable[..., Shape]], ...]:
    # checked in order with isinstance (Inception is a Concat)
    return (
        (nn.Conv2d, _conv),
        ((nn.MaxPool2d, nn.AvgPool2d), _pool),
        (nn.GlobalAvgPool2d, _global_pool),
        (nn.ChannelMaxPool, _channel_pool),
        ((nn.LocalContrastNorm, nn.LocalResponseNorm), _same_map),
        (nn.Flatten, _flatten),
        (nn.Linear, _linear),
        ((nn.Softmax, nn.LogSoftmax), _softmax),
        ((nn.ReLU, nn.Tanh, nn.Dropout), _same),
        (nn.Sequential, _sequential),
        (nn.Concat, _concat),
    )


def output_shape(layer: nn.Module, shape: tuple[int, ...], name: str = "") -> Shape:
    """Shape of one output of ``layer`` for one input of ``shape`` (no batch axis).

    Raises ``ValueError`` naming the layer when it cannot take that input, and ``TypeError`` for
    a layer whose output shape is not known here.
    """
    shape = tuple(int(s) for s in shape)
    for kind, rule in _rules():
        if isinstance(layer, kind):
            return rule(layer, shape, name)
    raise TypeError(
        f"the output shape of {_who(name, layer)} is not known: output_shape knows Conv2d, "
        "pooling, normalization, activations, Dropout, Flatten, Linear, Sequential and Concat"
    )


def macs_per_position(layer: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of ``layer`` for one output position (all output channels), given one
    input of ``shape`` (no batch axis).

    ``Conv2d``: ``out_channels * (C // groups) * kh * kw`` (each filter reads its group's
    channels); ``Linear``: ``out_features * in_features`` (one position); every other layer 0
    (pooling, normalization and activations do no multiply-accumulates).  Multiply by the output
    positions (``Ho * Wo``) for a layer's count.
    """
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        groups = int(getattr(layer, "groups", 1))
        return int(layer.out_channels) * (int(shape[0]) // groups) * int(kh) * int(kw)
    if isinstance(layer, nn.Linear):
        return int(layer.out_features) * int(layer.in_features)
    return 0
