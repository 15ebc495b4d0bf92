"""Analysis of a patch classifier: its layers, their geometry, or why it cannot be converted.

``analyze(model, patch_size=None)`` walks the layers of a ``Sequential`` patch classifier (nested
Sequentials are flattened), follows a ``(C, h, w)`` patch through them and returns a ``Plan``:
one ``Stage`` per layer with its kernel, stride, dilation and ``step`` (the product ``d`` of all
earlier strides, Li, Zhao, Wang 2014), the total stride ``S`` and the receptive field of one score.
Everything the three methods, tiling and the cost model need about geometry lives here, the halo
of a tile included (``Plan.halo``).

Layers that cannot be converted exactly raise ``ValueError`` naming the layer and the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from cnncore import _validate as v
from cnncore import nn
from cnncore.nn.shapes import output_shape
from cnncore_kernels.geometry import out_size

METHODS = ("dsparse", "fcn", "patchwise")

# Layers that act on each pixel (each spatial position) separately: they pass through unchanged.
# (Looked up by name so the conversion follows whatever cnncore.nn provides.)
_POINTWISE = (
    "ReLU",
    "Tanh",
    "Sigmoid",
    "LeakyReLU",
    "Dropout",
    "LocalResponseNorm",
    "ChannelMaxPool",
    "Softmax",
    "LogSoftmax",
)
# Pointwise layers that mix channels: between Flatten and the first Linear the "channels" of the
# patch network are the whole flattened map, which the dense network does not have at one pixel.
_CHANNEL_MIXING = ("LocalResponseNorm", "ChannelMaxPool", "Softmax", "LogSoftmax")
_WHY_NOT = {
    "LocalContrastNorm": "it normalises with a Gaussian window and border correction over the "
    "whole map (and, with divisor='mean', a per-image mean), so a pixel's value depends on where "
    "the patch border lies",
    "BatchNorm2d": "it depends on the batch",
    "Concat": "branches cannot be converted (only chains of layers)",
    "Inception": "branches cannot be converted (only chains of layers)",
}


def _classes(names: tuple[str, ...]) -> tuple[type, ...]:
    return tuple(c for c in (getattr(nn, n, None) for n in names) if isinstance(c, type))


@dataclass(frozen=True)
class Stage:
    """One layer of the patch classifier and its place in the geometry.

    ``kind`` is ``"conv"``, ``"linear"`` (a Linear seen as a ``kernel`` convolution: ``(M, M)``
    after a ``C x M x M`` map, ``(1, 1)`` after another Linear), ``"maxpool"``, ``"avgpool"`` (also
    a global average pool, as an ``(h, w)`` window), ``"pointwise"`` or ``"flatten"``.  ``step``
    is the product of the strides of all earlier layers: the dense network dilates this layer by
    ``step``.
    ``in_shape``/``out_shape`` are ``(C, h, w)`` for one patch (``C`` is None before it is known).
    """

    name: str
    kind: str
    module: nn.Module
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    step: tuple[int, int] = (1, 1)
    in_shape: tuple[int | None, int, int] = (None, 1, 1)
    out_shape: tuple[int | None, int, int] = (None, 1, 1)
    groups: int = 1

    @property
    def dense_dilation(self) -> tuple[int, int]:
        """Dilation in the d-sparse network: the layer's own dilation times ``step`` (1 along an
        axis where the window has a single tap, where dilation changes nothing)."""
        return tuple(
            1 if self.kernel[a] == 1 else self.dilation[a] * self.step[a] for a in range(2)
        )

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """``(K, C // groups, kh, kw)``: the convolution weight, for a Linear a view of its
        ``(out, in)``."""
        if self.kind not in ("conv", "linear"):
            raise AttributeError(f"stage {self.name!r} ({self.kind}) has no weight")
        return (int(self.out_shape[0]), int(self.in_shape[0]) // self.groups, *self.kernel)

    @property
    def spatial(self) -> bool:
        """Whether the layer has a window (conv, linear-as-conv, pooling)."""
        return self.kind in ("conv", "linear", "maxpool", "avgpool")


@dataclass(frozen=True)
class Plan:
    """The geometry of a patch classifier on ``patch`` (``(Ph, Pw)``) patches."""

    patch: tuple[int, int]
    stages: tuple[Stage, ...]
    in_channels: int
    num_classes: int
    stride: tuple[int, int]
    receptive_field: tuple[int, int]

    def halo(self, method: str = "dsparse") -> tuple[tuple[int, int], tuple[int, int]]:
        """``((top, bottom), (left, right))``: the rows and columns around a block of pixels that
        the computation of their scores reads (zeros beyond the image, by the pixel convention).

        Scores of output rows ``[r0, r1)`` need image rows ``[r0 - top, r1 + bottom)``.  The patch
        of pixel ``i`` starts ``top = (P-1)//2`` rows above it; the dense and FCN networks read
        only the ``R`` rows of the receptive field (``bottom = R - 1 - top``, negative when ``R`` is
        much smaller than ``P``), patch scanning reads the whole patch (``bottom = P // 2``).
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        out = []
        for axis in range(2):
            top = (self.patch[axis] - 1) // 2
            if method == "patchwise":
                bottom = self.patch[axis] // 2
            else:
                bottom = self.receptive_field[axis] - 1 - top
            out.append((top, bottom))
        return out[0], out[1]

    @property
    def dense_stages(self) -> tuple[Stage, ...]:
        """Stages that become a module (everything but Flatten)."""
        return tuple(s for s in self.stages if s.kind != "flatten")


def leaves(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The layers of a (nested) ``Sequential`` in order, with dotted names."""
    if isinstance(model, nn.Sequential):
        for name, child in model.named_children():
            yield from leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, model


def _refuse(name: str, module: nn.Module, why: str) -> ValueError:
    return ValueError(f"layer {name!r} ({type(module).__name__}) cannot be converted: {why}")


def _unknown(name: str, m: nn.Module) -> ValueError:
    why = _WHY_NOT.get(
        type(m).__name__,
        "not a layer the conversion knows (conv, pooling, pointwise, Flatten, Linear)",
    )
    return _refuse(name, m, why)


def _input_channels(layers: list[tuple[str, nn.Module]], patch: tuple[int, int]) -> int | None:
    """The channels of a patch: from the first layer that states its input (a Conv2d's
    ``in_channels``, or a Linear's ``in_features`` over the flattened map), times the pool sizes
    of the channel max pools (maxout) before it.  None if no layer states it."""
    mult, (h, w), flat = 1, patch, None
    known = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.GlobalAvgPool2d, nn.Flatten, nn.Linear)
    for name, m in layers:
        if not isinstance(m, known + _classes(_POINTWISE)):
            raise _unknown(name, m)
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels) * mult
        if isinstance(m, nn.ChannelMaxPool):
            mult *= int(m.pool_size)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and flat is None:
            k, st, p, d = m.kernel_size, m.stride, m.padding, m.dilation
            h, w = out_size(h, k[0], st[0], p[0], d[0]), out_size(w, k[1], st[1], p[1], d[1])
            if h < 1 or w < 1:
                return None
        elif isinstance(m, nn.GlobalAvgPool2d) and flat is None:
            h, w = 1, 1
        elif isinstance(m, nn.Flatten) and flat is None:
            flat = (h, w)
        elif isinstance(m, nn.Linear):
            area = 1 if flat is None else flat[0] * flat[1]
            if flat is None or int(m.in_features) % area:
                return None
            return int(m.in_features) // area * mult
    return None


def _class_axis(
    name: str, m: nn.Module, shape: tuple[int, ...], flat: tuple[int, int] | None
) -> None:
    """A Softmax/LogSoftmax converts only over the class (channel) axis 1 of its input: ``dim``
    1 (or -3 on ``(N, C, h, w)`` maps, -1 on ``(N, K)`` score vectors)."""
    ndim = len(shape) + 1
    axis = int(m.dim) % ndim
    if axis != 1:
        what = "the batch axis" if axis == 0 else f"axis {axis} of its (N, *{shape}) input"
        raise _refuse(
            name,
            m,
            f"dim={m.dim} normalises over {what}; only the class/channel axis (dim=1, or -1 on "
            "(N, K) scores) is the same at every pixel of the dense network",
        )
    if flat is not None:
        raise _refuse(
            name,
            m,
            f"it mixes the features of a flattened {flat[0]}x{flat[1]} map, which lie at "
            "different pixels in the dense network",
        )


def resolve_patch_size(
    model: nn.Module, patch_size: int | tuple[int, int] | None
) -> tuple[int, int]:
    """``patch_size`` as ``(Ph, Pw)``; when it is None, the model's ``patch_size`` attribute (the
    builders of ``cnncore.models`` set it).  Raises ``ValueError`` when neither is given."""
    if patch_size is None:
        patch_size = getattr(model, "patch_size", None)
        if patch_size is None:
            raise ValueError(
                f"patch_size is required: {type(model).__name__} has no patch_size attribute "
                "(pass patch_size=P, or set model.patch_size = P)"
            )
    return v.positive_pair(patch_size, "patch_size")


def analyze(model: nn.Module, patch_size: int | tuple[int, int] | None = None) -> Plan:
    """Check that ``model`` is a convertible patch classifier for ``patch_size`` patches and
    return its ``Plan``.  ``patch_size`` (int or ``(Ph, Pw)``) defaults to ``model.patch_size``.
    Raises ``TypeError`` for a non-module and ``ValueError`` naming the layer for everything that
    cannot be converted exactly.

    Each layer's output shape comes from ``cnncore.nn.shapes.output_shape`` (the rule
    ``cnncore.summary`` uses) applied to the shape the patch network gives it: ``(C, h, w)``
    before ``Flatten``, ``(F,)`` after.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnncore.nn.Module, got {type(model).__name__}")
    patch = resolve_patch_size(model, patch_size)
    layers = list(leaves(model))
    if not isinstance(model, nn.Sequential) and layers == [("", model)]:
        layers = [(type(model).__name__, model)]
    spatial = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.GlobalAvgPool2d, nn.Linear)
    if not any(isinstance(m, spatial) for _, m in layers):
        raise ValueError("model has no convolution, pooling or Linear layer: nothing to convert")
    in_channels = _input_channels(layers, patch)
    if in_channels is None:
        raise ValueError(
            "model never states its input channels (no Conv2d, and no Linear after a Flatten "
            f"whose in_features fit a {patch[0]}x{patch[1]} patch)"
        )
    pointwise = _classes(_POINTWISE)

    C: int = in_channels
    h, w = patch
    shape: tuple[int, ...] = (C, h, w)  # what the patch network gives the next layer
    step = (1, 1)
    rf = [1, 1]
    flat: tuple[int, int] | None = None  # (h, w) of the map a Flatten turned into a vector
    after_linear = False
    stages: list[Stage] = []

    def window(name: str, m: nn.Module, kind: str, k, s, d, out=None) -> Stage:
        """The stage of a windowed layer; ``out`` (C, h, w) defaults to the shape rule's."""
        nonlocal h, w, step, shape
        eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        if eff[0] > h or eff[1] > w:
            raise ValueError(
                f"patch_size {patch} is too small: layer {name!r} ({type(m).__name__}) has a "
                f"window of {eff[0]}x{eff[1]} but receives a {h}x{w} map"
            )
        if out is None:
            out = shape = output_shape(m, shape, name)
        for a in range(2):
            rf[a] += d[a] * (k[a] - 1) * step[a]
        st = Stage(name, kind, m, k, s, d, step, (C, h, w), out)  # type: ignore[arg-type]
        h, w = out[1], out[2]
        step = (step[0] * s[0], step[1] * s[1])
        return st

    for name, m in layers:
        tname = type(m).__name__
        if isinstance(m, nn.Conv2d):
            if flat is not None:
                raise _refuse(name, m, "a convolution after Flatten")
            if tuple(m.padding) != (0, 0):
                raise _refuse(
                    name,
                    m,
                    f"padding {tuple(m.padding)} inside the patch network (zeros at the patch "
                    "border are not the image border, so patches and the dense network differ)",
                )
            if C != m.in_channels:
                output_shape(m, shape, name)  # the rule's refusal names the layer
            k, s, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
            st = window(name, m, "conv", k, s, d)
            st = replace(st, groups=int(getattr(m, "groups", 1)))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            if flat is not None:
                raise _refuse(name, m, "pooling after Flatten")
            if tuple(m.padding) != (0, 0):
                raise _refuse(name, m, f"padding {tuple(m.padding)} inside the patch network")
            if getattr(m, "ceil_mode", False):
                raise _refuse(name, m, "ceil_mode pads the patch implicitly")
            if getattr(m, "divisor_override", None) is not None:
                raise _refuse(name, m, "divisor_override is not supported")
            kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
            st = window(name, m, kind, tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation))
        elif tname == "GlobalAvgPool2d":
            if flat is not None:
                raise _refuse(name, m, "pooling after Flatten")
            # the mean over the patch's h x w map: an (h, w) window (dilated like any other)
            st = window(name, m, "avgpool", (h, w), (1, 1), (1, 1))
        elif isinstance(m, nn.Flatten):
            if (getattr(m, "start_dim", 1), getattr(m, "end_dim", -1)) != (1, -1):
                raise _refuse(name, m, "only Flatten(start_dim=1, end_dim=-1) is supported")
            shape = output_shape(m, shape, name)
            if flat is not None:
                continue  # flattening a vector again changes nothing
            flat = (h, w)
            st = Stage(name, "flatten", m, step=step, in_shape=(C, h, w), out_shape=(C, h, w))
        elif isinstance(m, nn.Linear):
            if flat is None:
                raise _refuse(name, m, "a Linear on a map needs a Flatten before it")
            fin, fout = int(m.in_features), int(m.out_features)
            k = (1, 1) if after_linear else flat
            if fin != C * k[0] * k[1]:
                raise _refuse(
                    name,
                    m,
                    f"in_features={fin} but a {patch[0]}x{patch[1]} patch gives "
                    f"{C} x {k[0]} x {k[1]} = {C * k[0] * k[1]} features",
                )
            shape = output_shape(m, shape, name)
            # the map is k[0] x k[1] here (the whole flattened map, or 1 x 1)
            h, w = k
            st = window(name, m, "linear", k, (1, 1), (1, 1), (fout, 1, 1))
            after_linear = True
        elif isinstance(m, pointwise):
            per_pixel = flat in (None, (1, 1)) or after_linear
            if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
                output_shape(m, shape, name)  # dim within the input's axes
                _class_axis(name, m, shape, None if per_pixel else flat)
            elif isinstance(m, (nn.LocalResponseNorm, nn.ChannelMaxPool)) and flat is not None:
                raise _refuse(
                    name,
                    m,
                    f"it needs a (C, H, W) map but follows a Flatten (the patch network gives it "
                    f"shape {shape}); in the dense network its channels would lie at different "
                    "pixels",
                )
            if tname == "Dropout" and m.training and float(getattr(m, "p", 0.0)) > 0:
                raise _refuse(
                    name,
                    m,
                    "Dropout in training mode draws a separate mask for every patch, which "
                    "the dense network cannot reproduce; call model.eval() first",
                )
            shape = output_shape(m, shape, name)
            out_map = (shape[0], h, w)  # C // pool_size after maxout, C otherwise
            st = Stage(name, "pointwise", m, step=step, in_shape=(C, h, w), out_shape=out_map)
        else:
            raise _unknown(name, m)
        if st.kind != "flatten":
            C = int(st.out_shape[0])
        stages.append(st)

    if not any(s.spatial for s in stages):
        raise ValueError("model has no convolution, pooling or Linear layer: nothing to convert")
    if flat is not None and not after_linear and flat != (1, 1):
        raise ValueError(f"model ends with a Flatten of a {flat[0]}x{flat[1]} map, not scores")
    if (h, w) != (1, 1):
        raise ValueError(
            f"model is not a patch classifier for {patch[0]}x{patch[1]} patches: it gives a "
            f"{h}x{w} map per patch (end it with Flatten + Linear, or adjust patch_size)"
        )
    return Plan(patch, tuple(stages), int(in_channels), int(C), step, (rf[0], rf[1]))
