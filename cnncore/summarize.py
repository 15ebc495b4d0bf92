"""Layer-by-layer tables of a model: output shapes, parameters, multiply-accumulates and receptive
fields, computed from the layers' attributes (no forward pass, so VGG-E at 224x224 takes
microseconds).

``summary(model, input_shape=None)`` (``cnncore.summary``) gives one row per top-level child of
a ``Sequential`` (a nested ``Sequential``, a ``Concat`` or an ``Inception`` block is one row);
``format_summary`` and ``print_summary`` turn the rows into the kind of table the papers print.

What is counted:

  * ``params``: every element of the layer's parameters (weights and biases).
  * ``macs``: multiply-accumulates of ``Conv2d`` and ``Linear`` for one input (what the papers
    call operations); pooling, normalization, activations and dropout count 0.
  * ``receptive_field``: ``(h, w)``, the size of the input region that one output unit depends
    on, with padding counted as input; ``total_stride``: ``(h, w)``, the input pixels between
    neighbouring output units.  A ``Linear`` after ``Flatten`` of a ``C x M x M`` map sees the
    whole map (it is an ``M x M`` convolution, as in the FCN conversion), so the receptive field
    of a patch classifier is that of its scores.  ``Concat`` takes the largest field of its
    branches.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TextIO

from cnncore import nn
from cnncore.nn.module import Module
from cnncore.nn.shapes import macs_per_position, output_shape

Pair = tuple[int, int]


@dataclass(frozen=True)
class _Signal:
    """What flows between layers: the shape of one input (no batch axis), the receptive field
    and total stride of one of its units, and the map a Flatten folded away (for the Linear)."""

    shape: tuple[int, ...]
    rf: Pair | None = (1, 1)
    stride: Pair | None = (1, 1)
    flat_map: Pair | None = None  # (H, W) of the map a Flatten turned into a vector


def _field(sig: _Signal, kernel: Pair, dilation: Pair, stride: Pair) -> tuple[Pair | None, ...]:
    """Receptive field and total stride after a window of ``kernel`` (dilated) moving by
    ``stride``: rf += (effective kernel - 1) * jump; jump *= stride."""
    if sig.rf is None or sig.stride is None:
        return None, None
    rf = tuple(
        r + d * (k - 1) * j for r, k, d, j in zip(sig.rf, kernel, dilation, sig.stride, strict=True)
    )
    jump = tuple(j * s for j, s in zip(sig.stride, stride, strict=True))
    return rf, jump


def _map(sig: _Signal, name: str, layer: Module) -> tuple[int, int, int]:
    if len(sig.shape) != 3:
        raise ValueError(
            f"layer {name!r} ({type(layer).__name__}) needs a (C, H, W) input, got shape "
            f"{sig.shape}"
        )
    return sig.shape  # type: ignore[return-value]


def _window(sig: _Signal, name: str, layer: Module) -> tuple[Pair, _Signal]:
    """Output (H, W) (the shape rule of ``cnncore.nn.shapes``) and the signal after a sliding
    window (convolution or pooling)."""
    out = output_shape(layer, sig.shape, name)
    k, s, d = layer.kernel_size, layer.stride, layer.dilation
    rf, jump = _field(sig, k, d, s)
    return (out[1], out[2]), replace(sig, shape=out, rf=rf, stride=jump)


def _conv(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    (ho, wo), out = _window(sig, name, layer)
    return out, macs_per_position(layer, sig.shape) * ho * wo


def _pool(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    return _window(sig, name, layer)[1], 0


def _global_pool(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    out = output_shape(layer, sig.shape, name)
    rf, _ = _field(sig, sig.shape[1:], (1, 1), (1, 1))  # an H x W window at stride 1 (FCN view)
    return replace(sig, shape=out, rf=rf), 0


def _channel_pool(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    return replace(sig, shape=output_shape(layer, sig.shape, name)), 0


def _contrast_norm(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    out = output_shape(layer, sig.shape, name)
    rf, jump = _field(sig, (layer.size, layer.size), (1, 1), (1, 1))
    return replace(sig, shape=out, rf=rf, stride=jump), 0


def _flatten(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    flat_map = (sig.shape[1], sig.shape[2]) if len(sig.shape) == 3 else sig.flat_map
    return replace(sig, shape=output_shape(layer, sig.shape, name), flat_map=flat_map), 0


def _linear(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    output_shape(layer, sig.shape, name)
    rf, jump = sig.rf, sig.stride
    if sig.flat_map is not None:  # the first Linear after Flatten sees the whole M x M map
        rf, _ = _field(sig, sig.flat_map, (1, 1), (1, 1))
    out = replace(sig, shape=(layer.out_features,), rf=rf, stride=jump, flat_map=None)
    return out, macs_per_position(layer, sig.shape)


def _pointwise(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    return replace(sig, shape=output_shape(layer, sig.shape, name)), 0


def _sequential(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    macs = 0
    for child_name, child in layer.named_children():
        sig, m = _propagate(child, sig, f"{name}.{child_name}")
        macs += m
    return sig, macs


def _concat(sig: _Signal, name: str, layer) -> tuple[_Signal, int]:
    outs, macs = [], 0
    for child_name, child in layer.named_children():
        out, m = _propagate(child, sig, f"{name}.{child_name}")
        outs.append((child_name, out))
        macs += m
    first_name, first = outs[0]
    for child_name, out in outs:
        if len(out.shape) != 3 or out.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"branch {child_name!r} of {name!r} (Concat) gives shape {out.shape}, which "
                f"cannot be joined along channels with {first.shape} of branch {first_name!r}"
            )
    rfs = [o.rf for _, o in outs]
    rf = None if None in rfs else (max(r[0] for r in rfs), max(r[1] for r in rfs))
    strides = {o.stride for _, o in outs}
    stride = strides.pop() if len(strides) == 1 else None
    channels = sum(o.shape[0] for _, o in outs)
    return _Signal((channels, *first.shape[1:]), rf, stride), macs


@functools.cache
def _handlers() -> tuple[tuple[type | tuple[type, ...], Callable[..., tuple[_Signal, int]]], ...]:
    # checked in order with isinstance: Inception is a Concat, so Concat covers it
    return (
        (nn.Conv2d, _conv),
        (nn.MaxPool2d, _pool),
        (nn.AvgPool2d, _pool),
        (nn.GlobalAvgPool2d, _global_pool),
        (nn.ChannelMaxPool, _channel_pool),
        (nn.LocalContrastNorm, _contrast_norm),
        (nn.Flatten, _flatten),
        (nn.Linear, _linear),
        (nn.Sequential, _sequential),
        (nn.Concat, _concat),
        (
            (nn.ReLU, nn.Tanh, nn.Softmax, nn.LogSoftmax, nn.Dropout, nn.LocalResponseNorm),
            _pointwise,
        ),
    )


def _propagate(layer: Module, sig: _Signal, name: str) -> tuple[_Signal, int]:
    for kind, handler in _handlers():
        if isinstance(layer, kind):
            return handler(sig, name, layer)
    raise TypeError(
        f"summary cannot compute the output of layer {name!r} ({type(layer).__name__}): it knows "
        "Conv2d, pooling, normalization, activations, Dropout, Flatten, Linear, Sequential and "
        "Concat/Inception"
    )


def _count_params(module: Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())


def _input_shape(model: Module, input_shape) -> tuple[int, ...]:
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                "input_shape is required: (C, H, W) for one input, without the batch axis "
                f"({type(model).__name__} has no input_shape attribute)"
            )
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(
            f"input_shape must be a tuple (C, H, W) or (F,), got {input_shape!r}"
        ) from None
    if len(shape) not in (1, 3):
        raise ValueError(
            f"input_shape must be (C, H, W) or (F,) for one input, without the batch axis; got "
            f"{shape}"
        )
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"input_shape must hold ints, got {shape}")
    if any(s < 1 for s in shape):
        raise ValueError(f"input_shape entries must be >= 1, got {shape}")
    return tuple(int(s) for s in shape)


def summary(model: Module, input_shape: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """One row per top-level child of ``model`` (in order), for one input of ``input_shape``.

    Reached as ``cnncore.summary(model)``, like ``torchinfo.summary``.

    Parameters
    ----------
    model : Module
        A ``Sequential`` (or a single layer, which gives one row).
    input_shape : tuple, optional
        ``(C, H, W)`` (or ``(F,)``) without the batch axis; defaults to ``model.input_shape``,
        which the builders of ``cnncore.models`` set.  ``ValueError`` when neither is given.

    Returns
    -------
    list of dict
        One per layer, with ``name``, ``type`` (the class name), ``output_shape`` (no batch
        axis), ``params``, ``macs``, ``receptive_field`` and ``total_stride`` (``(h, w)``
        pairs, ``None`` where undefined).

    Raises
    ------
    ValueError
        Naming the layer when shapes do not fit.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a cnncore Module, got {type(model).__name__}")
    shape = _input_shape(model, input_shape)
    if len(shape) == 3:
        sig = _Signal(shape)
    else:
        sig = _Signal(shape, rf=None, stride=None)
    if isinstance(model, nn.Sequential):
        layers = list(model.named_children())
    elif any(True for _ in model.named_children()) and not isinstance(model, nn.Concat):
        raise TypeError(
            f"summary needs a Sequential (a chain of layers), got {type(model).__name__} with "
            "children whose order of application it cannot know"
        )
    else:
        layers = [(type(model).__name__, model)]
    rows = []
    for name, layer in layers:
        sig, macs = _propagate(layer, sig, name)
        rows.append(
            {
                "name": name,
                "type": type(layer).__name__,
                "output_shape": sig.shape,
                "params": _count_params(layer),
                "macs": macs,
                "receptive_field": sig.rf,
                "total_stride": sig.stride,
            }
        )
    return rows


def _pair_text(p: Pair | None) -> str:
    if p is None:
        return "-"
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _count_text(n: int) -> str:
    return f"{n:,}" if n else "-"


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The rows of ``summary`` as a text table: layer, type, output shape, outputs (neurons per
    input), params, MACs, receptive field, total stride; then the totals."""
    header = ("layer", "type", "output shape", "outputs", "params", "MACs", "RF", "stride")
    body = [
        (
            r["name"],
            r["type"],
            " x ".join(str(s) for s in r["output_shape"]),
            f"{math.prod(r['output_shape']):,}",
            _count_text(r["params"]),
            _count_text(r["macs"]),
            _pair_text(r["receptive_field"]),
            _pair_text(r["total_stride"]),
        )
        for r in rows
    ]
    params = sum(r["params"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    total = ("total", "", "", "", f"{params:,}", f"{macs:,}", "", "")
    table = [header, *body, total]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    left = {0, 1}  # names left-aligned, numbers right-aligned

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    lines = [fmt(header), rule, *(fmt(line) for line in body), rule, fmt(total)]
    lines.append(f"params: {params / 1e6:.2f} M    MACs: {macs / 1e9:.3f} G (one input)")
    return "\n".join(lines)


def print_summary(
    model: Module, input_shape: tuple[int, ...] | None = None, file: TextIO | None = None
) -> None:
    """Print ``format_summary(summary(model, input_shape))`` (to ``file``, default stdout)."""
    print(format_summary(summary(model, input_shape)), file=file or sys.stdout)
