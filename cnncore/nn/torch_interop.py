"""PyTorch in and out: ``from_torch(torch_module)`` and ``to_torch(module)``, weights copied.

Supported in both directions: ``Conv2d`` (stride, padding, dilation, groups, bias; zero padding),
``MaxPool2d``, ``AvgPool2d`` (``count_include_pad``), ``ReLU``, ``Tanh``, ``LocalResponseNorm``,
``Dropout``, ``Flatten`` (of everything after the batch axis), ``Linear``, ``Softmax`` /
``LogSoftmax`` and ``Sequential`` with its child names (a ``torch.nn.ModuleDict`` comes in as a
``Sequential`` of its entries in order).  ``GlobalAvgPool2d`` is ``AdaptiveAvgPool2d(1)``.
``to_torch`` also takes the networks of ``cnncore.dense.to_dense`` and ``to_fcn``: their padding
by the pixel convention becomes a ``ZeroPad2d`` (negative where it crops), their dilated
convolutions and pools torch layers, so the exact d-sparse network runs wherever PyTorch runs.
Anything else is refused with the layer's name and type.

PyTorch is imported inside the functions only; ``import cnncore`` never loads it, so torch's
modules and tensors are not annotated here (the cnncore side is).
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from types import ModuleType

import numpy as np

from cnncore import device
from cnncore.nn.activation import LogSoftmax, ReLU, Softmax, Tanh
from cnncore.nn.container import Sequential
from cnncore.nn.conv import Conv2d
from cnncore.nn.dropout import Dropout
from cnncore.nn.linear import Flatten, Linear
from cnncore.nn.module import Module, Parameter
from cnncore.nn.normalization import LocalResponseNorm
from cnncore.nn.pooling import AvgPool2d, ChannelMaxPool, GlobalAvgPool2d, MaxPool2d

_FROM_TORCH = (
    "Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), ReLU, Tanh, LocalResponseNorm, Dropout, "
    "Flatten, Linear, Softmax, LogSoftmax, Sequential, ModuleDict"
)
_TO_TORCH = (
    "Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, ChannelMaxPool, ReLU, Tanh, "
    "LocalResponseNorm, Dropout, Flatten, Linear, Softmax, LogSoftmax, Sequential and the "
    "networks of dense.to_dense / dense.to_fcn"
)
_DTYPES = {"torch.float32": np.float32, "torch.float64": np.float64}


def _import_torch() -> ModuleType:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "from_torch / to_torch need PyTorch: pip install torch (any recent CPU or CUDA build)"
        ) from None
    return torch


def _pair(value) -> tuple[int, int]:
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    return int(value[0]), int(value[1])


def _label(name: str, module) -> str:
    return f"layer {name!r} ({type(module).__name__})" if name else type(module).__name__


def _refused(name: str, module, known: str) -> TypeError:
    return TypeError(f"{_label(name, module)} is not supported; supported layers: {known}")


# -- torch -> cnncore ----------------------------------------------------------------------------


def _array(tensor, name: str) -> np.ndarray:
    dtype = _DTYPES.get(str(tensor.dtype))
    if dtype is None:
        raise TypeError(f"{name} has dtype {tensor.dtype}; only float32 and float64 convert")
    return np.array(tensor.detach().cpu().numpy(), dtype=dtype, copy=True, order="C")


def _copy_into(param: Parameter, tensor, name: str) -> None:
    param.data = _array(tensor, name)
    param.requires_grad = bool(tensor.requires_grad)


def _conv_padding(name: str, m) -> tuple[int, int]:
    if m.padding_mode != "zeros":
        raise ValueError(
            f"{_label(name, m)}: padding_mode={m.padding_mode!r} is not supported (zeros only)"
        )
    if m.padding == "valid":
        return 0, 0
    if m.padding == "same":
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        total = [d[a] * (k[a] - 1) for a in range(2)]
        if any(t % 2 for t in total):
            raise ValueError(
                f"{_label(name, m)}: padding='same' with kernel {k} and dilation {d} pads "
                "unevenly, which cnncore's symmetric padding cannot express"
            )
        return total[0] // 2, total[1] // 2
    return _pair(m.padding)


def _from_conv(name: str, m) -> Conv2d:
    dtype = _array(m.weight, f"{name}.weight").dtype
    out = Conv2d(
        m.in_channels,
        m.out_channels,
        _pair(m.kernel_size),
        stride=_pair(m.stride),
        padding=_conv_padding(name, m),
        dilation=_pair(m.dilation),
        bias=m.bias is not None,
        dtype=dtype,
        groups=m.groups,
    )
    _copy_into(out.weight, m.weight, f"{name}.weight")
    if m.bias is not None:
        _copy_into(out.bias, m.bias, f"{name}.bias")
    return out


def _from_linear(name: str, m) -> Linear:
    dtype = _array(m.weight, f"{name}.weight").dtype
    out = Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
    _copy_into(out.weight, m.weight, f"{name}.weight")
    if m.bias is not None:
        _copy_into(out.bias, m.bias, f"{name}.bias")
    return out


def _from_pool(name: str, m, torch) -> Module:
    if m.ceil_mode:
        raise ValueError(f"{_label(name, m)}: ceil_mode=True is not supported")
    k = _pair(m.kernel_size)
    s = k if m.stride is None else _pair(m.stride)
    if isinstance(m, torch.nn.MaxPool2d):
        if m.return_indices:
            raise ValueError(
                f"{_label(name, m)}: return_indices=True is not supported (a layer returns one "
                "array; use cnncore.functional.max_pool2d for the indices)"
            )
        return MaxPool2d(k, stride=s, padding=_pair(m.padding), dilation=_pair(m.dilation))
    if m.divisor_override is not None:
        raise ValueError(f"{_label(name, m)}: divisor_override is not supported")
    return AvgPool2d(k, stride=s, padding=_pair(m.padding), count_include_pad=m.count_include_pad)


def _from_softmax(name: str, m, cls: type) -> Module:
    if m.dim is None:
        raise ValueError(
            f"{_label(name, m)}: dim=None (torch's implicit dim) is ambiguous; give dim=1, the "
            "class axis"
        )
    return cls(dim=m.dim)


def _from_children(items, torch, prefix: str) -> Sequential:
    layers = OrderedDict(
        (child, _from(m, f"{prefix}.{child}" if prefix else child, torch)) for child, m in items
    )
    return Sequential(layers)


def _from(m, name: str, torch) -> Module:
    tnn = torch.nn
    if type(m) is tnn.Sequential:
        out: Module = _from_children(m.named_children(), torch, name)
    elif type(m) is tnn.ModuleDict:
        out = _from_children(m.items(), torch, name)
    elif type(m) is tnn.Conv2d:
        out = _from_conv(name, m)
    elif type(m) is tnn.Linear:
        out = _from_linear(name, m)
    elif type(m) in (tnn.MaxPool2d, tnn.AvgPool2d):
        out = _from_pool(name, m, torch)
    elif type(m) is tnn.AdaptiveAvgPool2d and _pair(m.output_size) == (1, 1):
        out = GlobalAvgPool2d()
    elif type(m) is tnn.ReLU:
        out = ReLU()
    elif type(m) is tnn.Tanh:
        out = Tanh()
    elif type(m) is tnn.LocalResponseNorm:
        out = LocalResponseNorm(m.size, alpha=m.alpha, beta=m.beta, k=m.k)
    elif type(m) is tnn.Dropout:
        out = Dropout(m.p)
    elif type(m) is tnn.Flatten:
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ValueError(
                f"{_label(name, m)}: only Flatten(start_dim=1, end_dim=-1) is supported, got "
                f"start_dim={m.start_dim}, end_dim={m.end_dim}"
            )
        out = Flatten()
    elif type(m) is tnn.Softmax:
        out = _from_softmax(name, m, Softmax)
    elif type(m) is tnn.LogSoftmax:
        out = _from_softmax(name, m, LogSoftmax)
    else:
        raise _refused(name, m, _FROM_TORCH)
    out.training = bool(m.training)  # this module only: children keep their own modes
    return out


def from_torch(module) -> Module:
    """The cnncore twin of a ``torch.nn`` module, with its weights copied (not shared).

    Parameters
    ----------
    module : torch.nn.Module
        A ``torch.nn.Sequential`` (children named or numbered), a ``torch.nn.ModuleDict`` (its
        entries, in order, as a ``Sequential``) or a single supported layer.  Weights float32 or
        float64, on any device (copied to the host).

    Returns
    -------
    Module
        Same child names, so ``state_dict()`` has the torch names and shapes; the training mode
        and ``requires_grad`` flags of the source.  Its outputs equal the source's.

    Raises
    ------
    TypeError
        For a layer type that does not convert, naming the layer (e.g. ``BatchNorm2d``).
    ValueError
        For a setting that does not convert (``ceil_mode``, ``padding_mode="reflect"``, ...).
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return _from(module, "", torch)


# -- cnncore -> torch ----------------------------------------------------------------------------


def _tensor(data, torch):
    return torch.from_numpy(np.array(device.to_numpy(data), copy=True, order="C"))


def _set(torch_param, param: Parameter, torch) -> None:
    torch_param.data = _tensor(param.data, torch)
    torch_param.requires_grad_(param.requires_grad)


def _dtype(param: Parameter, torch):
    return torch.float64 if param.dtype == np.float64 else torch.float32


def _to_conv(m: Module, torch, shape: tuple[int, ...], padding):
    k_out, c_per_group, kh, kw = shape
    out = torch.nn.Conv2d(
        c_per_group * m.groups,
        k_out,
        (kh, kw),
        stride=tuple(m.stride),
        padding=tuple(padding),
        dilation=tuple(m.dilation),
        groups=m.groups,
        bias=m.bias is not None,
        dtype=_dtype(m.weight, torch),
    )
    with torch.no_grad():
        out.weight.data = _tensor(m.weight.data, torch).reshape(shape)
        out.weight.requires_grad_(m.weight.requires_grad)
        if m.bias is not None:
            _set(out.bias, m.bias, torch)
    return out


def _to_linear(m: Linear, torch):
    out = torch.nn.Linear(
        m.in_features, m.out_features, bias=m.bias is not None, dtype=_dtype(m.weight, torch)
    )
    _set(out.weight, m.weight, torch)
    if m.bias is not None:
        _set(out.bias, m.bias, torch)
    return out


def _to_avg_pool(m: AvgPool2d, torch):
    if tuple(m.dilation) == (1, 1):
        return torch.nn.AvgPool2d(
            tuple(m.kernel_size),
            stride=tuple(m.stride),
            padding=tuple(m.padding),
            count_include_pad=m.count_include_pad,
        )
    from cnncore.nn._torch_layers import DilatedAvgPool2d

    return DilatedAvgPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.count_include_pad)


def _to_children(m: Module, torch, prefix: str, first=None):
    layers = OrderedDict()
    if first is not None:
        layers[first[0]] = first[1]
    for child, sub in m.named_children():
        layers[child] = _to(sub, f"{prefix}.{child}" if prefix else child, torch)
    return torch.nn.Sequential(layers)


def _pixel_pad(m: Module, torch, method: str) -> tuple:
    """The padding of a dense network's forward: the pixel convention's zeros before, and only
    the rows the receptive field reads after (negative: cropped)."""
    (top, bottom), (left, right) = m.plan.halo(method)
    names = {name for name, _ in m.named_children()}
    key = "pixel_pad"
    while key in names:
        key = f"_{key}"
    return key, torch.nn.ZeroPad2d((left, right, top, bottom))


def _converted_net_kinds() -> tuple[type, ...]:
    import sys

    if "cnncore.dense" not in sys.modules:  # nothing can be a dense network yet
        return ()
    from cnncore.dense import DenseNet, FCNNet

    return (DenseNet, FCNNet)


def _to(m: Module, name: str, torch):
    tnn = torch.nn
    kind = type(m).__name__
    converted = _converted_net_kinds()
    if converted and isinstance(m, converted):
        method = "dsparse" if isinstance(m, converted[0]) else "fcn"
        out = _to_children(m, torch, name, first=_pixel_pad(m, torch, method))
    elif type(m) is Sequential:
        out = _to_children(m, torch, name)
    elif type(m) is Conv2d:
        out = _to_conv(m, torch, m.weight.shape, m.padding)
    elif kind == "SharedConv":  # a dense network's view of a Conv2d or Linear weight
        out = _to_conv(m, torch, m.shape, (0, 0))
    elif type(m) is Linear:
        out = _to_linear(m, torch)
    elif type(m) is MaxPool2d:
        out = tnn.MaxPool2d(
            tuple(m.kernel_size),
            stride=tuple(m.stride),
            padding=tuple(m.padding),
            dilation=tuple(m.dilation),
        )
    elif type(m) is AvgPool2d:
        out = _to_avg_pool(m, torch)
    elif type(m) is GlobalAvgPool2d:
        out = tnn.AdaptiveAvgPool2d(1)
    elif type(m) is ChannelMaxPool:
        from cnncore.nn._torch_layers import ChannelMaxPool as TorchChannelMaxPool

        out = TorchChannelMaxPool(m.pool_size)
    elif type(m) is ReLU:
        out = tnn.ReLU()
    elif type(m) is Tanh:
        out = tnn.Tanh()
    elif type(m) is LocalResponseNorm:
        out = tnn.LocalResponseNorm(m.size, alpha=m.alpha, beta=m.beta, k=m.k)
    elif type(m) is Dropout:
        out = tnn.Dropout(m.p)
    elif kind == "EvalDropout":  # a dense network's Dropout: the identity (it refuses training)
        out = tnn.Identity()
    elif type(m) is Flatten:
        out = tnn.Flatten()
    elif type(m) is Softmax:
        out = tnn.Softmax(dim=m.dim)
    elif type(m) is LogSoftmax:
        out = tnn.LogSoftmax(dim=m.dim)
    else:
        raise _refused(name, m, _TO_TORCH)
    out.training = bool(m.training)  # this module only: children keep their own modes
    return out


def to_torch(module: Module):
    """The ``torch.nn`` twin of a cnncore module, with its weights copied (not shared).

    Parameters
    ----------
    module : Module
        A ``Sequential`` of supported layers, a single supported layer, or a network of
        ``cnncore.dense.to_dense`` / ``to_fcn``.  Parameters float32 or float64, on the CPU or
        the GPU (copied to the host; move the result with ``.to("cuda")``).

    Returns
    -------
    torch.nn.Module
        A ``torch.nn.Sequential`` with the same child names (its ``state_dict`` loads into the
        cnncore model), in the same training mode.  For ``to_dense(model)`` it is
        ``ZeroPad2d`` (the pixel convention) followed by the dilated layers, and maps images
        ``(N, C, H, W)`` to the scores ``(N, K, H, W)`` of ``dense.predict``; for ``to_fcn(model)``
        the scores on the grid of the total stride, as ``FCNNet.forward``.  A dense network's
        ``Dropout`` becomes ``Identity``: per-patch dropout masks have no dense equivalent.

    Raises
    ------
    TypeError
        For a layer that does not convert, naming the layer (e.g. ``LocalContrastNorm``,
        ``Concat``).
    """
    torch = _import_torch()
    if not isinstance(module, Module):
        raise TypeError(f"module must be a cnncore.nn.Module, got {type(module).__name__}")
    return _to(module, "", torch)
