"""The modules of the converted networks, built from a ``Plan``.

Convolutions and Linear layers become ``SharedConv``: a convolution over a *view* of the original
layer's weight ``Parameter`` (a Linear's ``(out, C*M*M)`` weight seen as ``(out, C, M, M)``), whose
backward writes the gradient back in the Parameter's own shape, so the converted network and the
patch classifier train the same Parameter objects.  Pooling layers are new pooling modules with the
new stride and dilation; pointwise layers are copies (their own caches, the same Parameters).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from cnncore import functional as F
from cnncore import nn
from cnncore.dense.convert import Plan, Stage
from cnncore.functional.fused import conv2d_relu
from cnncore.nn.module import Module, Parameter, grad_enabled


class SharedConv(Module):
    """Convolution with padding 0 whose weight is ``weight.data`` seen as ``shape`` (K, C, kh, kw).

    ``weight``/``bias`` are the Parameters of the original layer (not copies).  x: (N, C, H, W) ->
    (N, K, Ho, Wo).  ``source`` names the original layer (for messages and ``repr``).
    """

    def __init__(
        self,
        weight: Parameter,
        bias: Parameter | None,
        shape: tuple[int, int, int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int],
        source: str,
        groups: int = 1,
    ) -> None:
        self.weight = weight
        self.bias = bias
        self.shape = tuple(int(s) for s in shape)
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.source = source
        self.groups = int(groups)
        self._x = None

    def _w(self):
        w = self.weight.data
        return w if tuple(w.shape) == self.shape else w.reshape(self.shape)

    def forward(self, x):
        b = self.bias.data if self.bias is not None else None
        y = F.conv2d(x, self._w(), b, self.stride, 0, self.dilation, self.groups)
        self._x = x if grad_enabled() else None
        self._remember_output(y)
        return y

    def forward_relu(self, x):
        """``relu(self.forward(x))``, bias and ReLU applied where the output is written."""
        b = self.bias.data if self.bias is not None else None
        y = conv2d_relu(x, self._w(), b, self.stride, 0, self.dilation, self.groups)
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
            raise RuntimeError(
                f"{self.source}: backward needs a forward pass with gradients enabled"
            )
        self._check_dy(dy)
        dx, dw, db = F.conv2d_backward(
            dy,
            self._x,
            self._w(),
            self.stride,
            0,
            self.dilation,
            self.groups,
            need_dx=need_dx,
            need_dweight=self.weight.requires_grad,
            need_dbias=self.bias is not None and self.bias.requires_grad,
        )
        if dw is not None:
            self.weight.accumulate(dw.reshape(self.weight.data.shape))
        if self.bias is not None:
            self.bias.accumulate(db)
        self._x = None
        return dx

    def extra_repr(self) -> str:
        K, C, kh, kw = self.shape
        return (
            f"{C * self.groups}, {K}, kernel_size=({kh}, {kw}), stride={self.stride}, "
            f"dilation={self.dilation}"
            + (f", groups={self.groups}" if self.groups != 1 else "")
            + f", shares={self.source!r}"
        )


class EvalDropout(Module):
    """Dropout of the patch classifier in the converted network: the identity, and refused in
    training mode (per-patch masks cannot be reproduced by a network shared by all pixels)."""

    def __init__(self, p: float, source: str) -> None:
        self.p = float(p)
        self.source = source
        self.training = False

    def forward(self, x):
        if self.training and self.p > 0:
            raise ValueError(
                f"layer {self.source!r} (Dropout(p={self.p})) cannot run in training mode in the "
                "converted network: every patch would need its own mask; call .eval()"
            )
        self._remember_output(x)
        return x

    def backward(self, dy):
        self._check_dy(dy)
        return dy

    def extra_repr(self) -> str:
        return f"p={self.p}, eval only, from {self.source!r}"


def _module(st: Stage, dense: bool) -> Module:
    stride = (1, 1) if dense else st.stride
    dilation = st.dense_dilation if dense else st.dilation
    if st.kind in ("conv", "linear"):
        m = st.module
        return SharedConv(
            m.weight, m.bias, st.weight_shape, stride, dilation, st.name, groups=st.groups
        )
    if st.kind == "maxpool":
        return nn.MaxPool2d(st.kernel, stride=stride, padding=0, dilation=dilation)
    if st.kind == "avgpool":
        return nn.AvgPool2d(st.kernel, stride=stride, padding=0, dilation=dilation)
    if st.kind == "pointwise":
        if isinstance(st.module, nn.Dropout):
            return EvalDropout(st.module.p, st.name)
        if isinstance(st.module, (nn.Softmax, nn.LogSoftmax)):
            # over the class axis (analyze refuses any other): axis 1 of the (N, K, H, W) maps,
            # whichever dim (1, or -1 of (N, K) scores) the patch classifier named it by
            return type(st.module)(dim=1)
        m = copy.copy(st.module)  # own caches, same Parameters
        m.training = st.module.training
        return m
    raise AssertionError(f"stage {st.name!r} of kind {st.kind!r} has no module")


def build_layers(plan: Plan, dense: bool) -> OrderedDict[str, Module]:
    """The converted layers, named as in the patch classifier (dots become underscores).

    ``dense=True``: the d-sparse network (every stride 1, each window dilated by ``step``);
    ``dense=False``: the FCN (strides kept; Linear layers as ``M x M`` and ``1 x 1`` convolutions).
    """
    out: OrderedDict[str, Module] = OrderedDict()
    for st in plan.dense_stages:
        out[st.name.replace(".", "_") or "layer"] = _module(st, dense)
    return out
