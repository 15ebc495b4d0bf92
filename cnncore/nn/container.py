"""Containers: ``Sequential`` (a chain), ``Concat`` (branches joined along channels) and
GoogLeNet's ``Inception`` block."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from cnncore import device as _device
from cnncore.nn.activation import ReLU
from cnncore.nn.conv import Conv2d
from cnncore.nn.fusion import run_chain
from cnncore.nn.module import Module, grad_enabled
from cnncore.nn.pooling import MaxPool2d


class Sequential(Module):
    """A chain of modules: ``forward`` runs them in order, ``backward`` in reverse.

    ``Sequential(m0, m1, ...)`` names the children ``"0"``, ``"1"``, ... (so parameters are
    ``"0.weight"``, as in torch); ``Sequential(OrderedDict(conv1=..., relu1=...))`` uses the given
    names.  Indexable (``seq[0]``, ``seq[-1]``, ``seq[1:3]`` gives a Sequential sharing the modules
    under their names), ``len``, iteration and ``append``.  A convolution followed by ``ReLU``,
    and ``ReLU`` followed by ``MaxPool2d``, run fused (``cnncore.nn.fusion``): the outputs and
    gradients are exactly those of running the modules one by one.
    """

    def __init__(self, *modules: Module | Mapping[str, Module]) -> None:
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(
                    f"Sequential entry {name!r} must be a Module, got {type(m).__name__}"
                )
            if name in vars(self):
                raise ValueError(f"Sequential has two children named {name!r}")
            self.add_module(name, m)

    def _items(self) -> list[tuple[str, Module]]:
        return list(self.named_children())

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Module]:
        return iter(m for _, m in self._items())

    def __getitem__(self, index: int | slice) -> Module:
        items = self._items()
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Sequential index must be an int or a slice, got {index!r}")
        if not -len(items) <= index < len(items):
            raise IndexError(f"index {index} is out of range for a Sequential of {len(items)}")
        return items[index][1]

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end, named ``str(len(self))``."""
        name = str(len(self))
        if name in vars(self):
            raise ValueError(f"cannot append: a child named {name!r} already exists")
        if not isinstance(module, Module):
            raise TypeError(f"append needs a Module, got {type(module).__name__}")
        self.add_module(name, module)
        return self

    def forward(self, x):
        # conv -> ReLU and ReLU -> MaxPool2d neighbours run fused: same outputs and gradients,
        # fewer passes over the activations (see cnncore.nn.fusion)
        return run_chain(list(self), x)

    def backward(self, dy):
        for m in reversed(list(self)):
            dy = m.backward(dy)
        return dy

    def backward_params(self, dy) -> None:
        if type(self).backward is not Sequential.backward:
            # a subclass with a backward of its own: run that (Module's default), unless it
            # overrides this method too (the dense networks)
            super().backward_params(dy)
            return
        self._chain_backward_params(dy)

    def _chain_backward_params(self, dy) -> None:
        # the input's gradient is not needed, so neither is any gradient before the first child
        # with a trainable parameter: that child runs backward_params, those before it nothing
        children = list(self)
        first = next((i for i, m in enumerate(children) if m.trainable()), len(children))
        for m in reversed(children[first + 1 :]):
            dy = m.backward(dy)
        if first < len(children):
            children[first].backward_params(dy)


class Concat(Module):
    """Runs every branch on the same input and concatenates the outputs along channels (axis 1).

    Children are named ``"0"``, ``"1"``, ... (or by a mapping, as in ``Sequential``).  All branch
    outputs must agree in every axis but the channels.  ``backward`` splits ``dy`` by channels and
    sums the branches' input gradients.
    """

    def __init__(self, *branches: Module | Mapping[str, Module]) -> None:
        if len(branches) == 1 and isinstance(branches[0], Mapping):
            items = list(branches[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(branches)]
        if not items:
            raise ValueError("Concat needs at least one branch")
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Concat branch {name!r} must be a Module, got {type(m).__name__}")
            self.add_module(name, m)
        self._channels: list[int] | None = None

    def branches(self) -> list[Module]:
        return list(self.children())

    def forward(self, x):
        outs = [b(x) for b in self.branches()]
        ref = tuple(outs[0].shape)
        for (name, _), o in zip(self.named_children(), outs, strict=True):
            s = tuple(o.shape)
            if len(s) != len(ref) or s[0] != ref[0] or s[2:] != ref[2:]:
                raise ValueError(
                    f"Concat branch {name!r} gives shape {s}, which cannot be joined along "
                    f"channels with shape {ref} of the first branch"
                )
        self._channels = [int(o.shape[1]) for o in outs] if grad_enabled() else None
        y = _device.concat(outs, axis=1)
        self._remember_output(y)
        return y

    def backward(self, dy):
        return self._backward(dy, True)

    def backward_params(self, dy) -> None:
        if type(self).backward is not Concat.backward:  # a backward of its own: run that
            super().backward_params(dy)
            return
        self._backward(dy, False)

    def _backward(self, dy, need_dx):
        if self._channels is None:
            raise RuntimeError("Concat.backward needs a forward pass with gradients enabled first")
        self._check_dy(dy)
        dx = None
        start = 0
        for b, c in zip(self.branches(), self._channels, strict=True):
            if need_dx:
                g = b.backward(_device.take(dy, start, start + c, axis=1))
                dx = g if dx is None else _device.add(dx, g)
            elif b.trainable():  # no input gradient asked: untrainable branches need nothing
                b.backward_params(_device.take(dy, start, start + c, axis=1))
            start += c
        return dx


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> Module:
    # named like torchvision's BasicConv2d ("conv"), without its batch norm (the paper has none)
    return Sequential(
        OrderedDict(
            conv=Conv2d(in_channels, out_channels, kernel_size, padding=padding),
            relu=ReLU(),
        )
    )


class Inception(Concat):
    """GoogLeNet's Inception block (Szegedy et al. 2015, Figure 2b), ReLU after every convolution.

    Branches, named as in torchvision's ``Inception`` so its convolution weights map by name
    (``branch2.1.conv.weight``; torchvision adds batch norms, and uses 3x3 in branch 3 where the
    paper has 5x5):

    - branch1: 1x1 conv (ch1x1)
    - branch2: 1x1 conv (ch3x3red) -> 3x3 conv, padding 1 (ch3x3)
    - branch3: 1x1 conv (ch5x5red) -> 5x5 conv, padding 2 (ch5x5)
    - branch4: 3x3 max pool, stride 1, padding 1 -> 1x1 conv (pool_proj)

    Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj, same H and W as the input.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ) -> None:
        super().__init__(
            OrderedDict(
                branch1=_conv_relu(in_channels, ch1x1, 1),
                branch2=Sequential(
                    _conv_relu(in_channels, ch3x3red, 1), _conv_relu(ch3x3red, ch3x3, 3, 1)
                ),
                branch3=Sequential(
                    _conv_relu(in_channels, ch5x5red, 1), _conv_relu(ch5x5red, ch5x5, 5, 2)
                ),
                branch4=Sequential(
                    MaxPool2d(3, stride=1, padding=1), _conv_relu(in_channels, pool_proj, 1)
                ),
            )
        )
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}"
