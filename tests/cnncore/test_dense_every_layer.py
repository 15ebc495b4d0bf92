"""Every layer type ``cnncore.nn`` exports, inside a patch classifier: the dense conversion is
exact against real patch scanning (each pixel's explicit patch through the classifier), with all
three methods and in tiles, or it is refused with a ``ValueError`` naming the layer.  The set of
covered layer types must equal the set exported, so a new layer cannot slip past."""

from __future__ import annotations

import inspect
from collections import OrderedDict

import numpy as np
import pytest

from cnncore import dense, nn
from cnncore.nn.shapes import output_shape
from cnncore.summarize import summary

F64 = np.float64
P = 7  # patch size
C = 2  # input channels


def conv(cin, cout, k, **kw):
    return nn.Conv2d(cin, cout, k, dtype=F64, **kw)


def linear(fin, fout):
    return nn.Linear(fin, fout, dtype=F64)


def net(*layers):
    nn.manual_seed(0)
    return nn.Sequential(*layers).eval()


def head(c, hw, k=3):
    return [nn.Flatten(), linear(c * hw * hw, k)]


# (case id, builder) pairs of convertible classifiers on 7x7 patches of C channels.
EXACT = {
    "Conv2d": lambda: net(conv(C, 3, 3, stride=2), nn.ReLU(), conv(3, 4, 3)),
    "Conv2d-dilated-groups": lambda: net(conv(C, 4, 3, dilation=2, groups=2), *head(4, 3)),
    "MaxPool2d": lambda: net(conv(C, 3, 2), nn.MaxPool2d(2, stride=2), *head(3, 3)),
    "MaxPool2d-dilated": lambda: net(
        conv(C, 3, 2), nn.MaxPool2d(2, stride=1, dilation=2), *head(3, 4)
    ),
    "AvgPool2d": lambda: net(conv(C, 3, 2), nn.AvgPool2d(3, stride=3), *head(3, 2)),
    "GlobalAvgPool2d": lambda: net(conv(C, 3, 3), nn.GlobalAvgPool2d(), *head(3, 1)),
    "ChannelMaxPool": lambda: net(conv(C, 4, 3), nn.ChannelMaxPool(2), conv(2, 3, 5)),
    "ChannelMaxPool-last": lambda: net(conv(C, 4, 7), nn.ChannelMaxPool(4)),
    "ChannelMaxPool-first": lambda: net(nn.ChannelMaxPool(2), conv(1, 3, 7)),
    "ReLU": lambda: net(conv(C, 3, 3), nn.ReLU(), *head(3, 5)),
    "Tanh": lambda: net(conv(C, 3, 3), nn.Tanh(), *head(3, 5)),
    "Dropout": lambda: net(conv(C, 3, 3), nn.Dropout(0.5), *head(3, 5)),
    "LocalResponseNorm": lambda: net(conv(C, 5, 3), nn.LocalResponseNorm(3, 0.1), *head(5, 5)),
    "Softmax-dim1-scores": lambda: net(conv(C, 3, 3), *head(3, 5), nn.Softmax(dim=1)),
    "Softmax-dim-1-scores": lambda: net(conv(C, 3, 3), *head(3, 5), nn.Softmax(dim=-1)),
    "LogSoftmax-dim-1-scores": lambda: net(conv(C, 3, 3), *head(3, 5), nn.LogSoftmax(dim=-1)),
    "Softmax-channels-inside": lambda: net(conv(C, 3, 3), nn.Softmax(dim=1), *head(3, 5)),
    "LogSoftmax-dim-3-maps": lambda: net(conv(C, 3, 7), nn.LogSoftmax(dim=-3)),
    "Flatten-Linear": lambda: net(nn.Flatten(), linear(C * P * P, 4), nn.ReLU(), linear(4, 2)),
    "Sequential-nested": lambda: net(nn.Sequential(conv(C, 3, 3), nn.ReLU()), *head(3, 5)),
}

# (case id, builder, regex the ValueError must match) of classifiers that must be refused.
REFUSED = {
    "LocalContrastNorm": (
        lambda: net(conv(C, 3, 3), nn.LocalContrastNorm(3), *head(3, 5)),
        r"layer '1' \(LocalContrastNorm\)",
    ),
    "Concat": (
        lambda: net(nn.Concat(conv(C, 2, 3), conv(C, 1, 3)), *head(3, 5)),
        r"layer '0' \(Concat\)",
    ),
    "Inception": (
        lambda: net(nn.Inception(C, 1, 1, 1, 1, 1, 1), *head(4, 7)),
        r"layer '0' \(Inception\)",
    ),
    "Softmax-spatial-W": (
        lambda: net(conv(C, 3, 3), nn.Softmax(dim=-1), *head(3, 5)),
        r"layer '1' \(Softmax\).*dim=-1",
    ),
    "Softmax-spatial-H": (
        lambda: net(conv(C, 3, 3), nn.Softmax(dim=2), *head(3, 5)),
        r"layer '1' \(Softmax\).*dim=2",
    ),
    "LogSoftmax-batch": (
        lambda: net(conv(C, 3, 3), *head(3, 5), nn.LogSoftmax(dim=0)),
        r"layer '3' \(LogSoftmax\).*batch",
    ),
    "Softmax-on-1x1-maps-W": (
        lambda: net(conv(C, 3, 7), nn.Softmax(dim=-1)),
        r"layer '1' \(Softmax\).*dim=-1",
    ),
    "Softmax-flattened-map": (
        lambda: net(conv(C, 3, 3), nn.Flatten(), nn.Softmax(dim=1), linear(75, 2)),
        r"layer '2' \(Softmax\).*flattened 5x5",
    ),
    "ChannelMaxPool-after-Flatten": (
        lambda: net(conv(C, 4, 7), nn.Flatten(), nn.ChannelMaxPool(2)),
        r"layer '2' \(ChannelMaxPool\)",
    ),
    "Dropout-training": (
        lambda: nn.Sequential(conv(C, 3, 3), nn.Dropout(0.5), *head(3, 5)),
        r"layer '1' \(Dropout\).*training",
    ),
    "Conv2d-padding": (
        lambda: net(conv(C, 3, 3, padding=1), *head(3, 7)),
        r"layer '0' \(Conv2d\).*padding",
    ),
    "AvgPool2d-padding": (
        lambda: net(conv(C, 3, 2), nn.AvgPool2d(2, padding=1), *head(3, 4)),
        r"layer '1' \(AvgPool2d\).*padding",
    ),
    "CrossEntropyLoss": (
        lambda: net(conv(C, 3, 7), nn.CrossEntropyLoss()),
        r"layer '1' \(CrossEntropyLoss\)",
    ),
    "RankingHingeLoss": (
        lambda: net(conv(C, 3, 7), nn.RankingHingeLoss()),
        r"layer '1' \(RankingHingeLoss\)",
    ),
    "Module": (lambda: net(conv(C, 3, 7), nn.Module()), r"layer '1' \(Module\)"),
}


def _exported_layer_types():
    return {
        name
        for name in nn.__all__
        if inspect.isclass(getattr(nn, name)) and issubclass(getattr(nn, name), nn.Module)
    }


def _types_in(model):
    return {type(m).__name__ for m in model.modules()}


def test_every_exported_layer_type_is_covered():
    covered = set()
    for build in EXACT.values():
        covered |= _types_in(build())
    for build, _ in REFUSED.values():
        covered |= _types_in(build())
    assert _exported_layer_types() <= covered, _exported_layer_types() - covered


def scan(model, x):
    """Real patch scanning: every pixel's explicit (zero padded) patch through the classifier."""
    N, _, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), ((P - 1) // 2, P // 2), ((P - 1) // 2, P // 2)))
    patches = np.stack(
        [xp[n, :, i : i + P, j : j + P] for n in range(N) for i in range(H) for j in range(W)]
    )
    with nn.no_grad():
        s = np.asarray(model(patches))
    s = s.reshape(N * H * W, -1)
    return s.reshape(N, H, W, -1).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("case", sorted(EXACT))
def test_conversion_is_exact_against_patch_scanning(case):
    model = EXACT[case]()
    x = np.random.default_rng(1).standard_normal((2, C, 9, 8))
    want = scan(model, x)
    plan = dense.analyze(model, P)
    assert plan.num_classes == want.shape[1]
    # the conversion's shape inference and summary's are one rule
    rows = summary(model, (C, P, P))
    assert tuple(rows[-1]["output_shape"]) in ((want.shape[1],), (want.shape[1], 1, 1))
    assert output_shape(model, (C, P, P)) == tuple(rows[-1]["output_shape"])
    for method in dense.METHODS if hasattr(dense, "METHODS") else ("dsparse", "fcn", "patchwise"):
        for tile in (None, 4):
            got = dense.predict(model, x, P, method=method, tile=tile)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"{method}")
    with nn.no_grad():
        np.testing.assert_allclose(dense.to_dense(model, P)(x), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unconvertible_layers_are_refused_naming_the_layer(case):
    build, match = REFUSED[case]
    model = build()
    for fn in (dense.analyze, dense.to_dense, dense.to_fcn):
        with pytest.raises(ValueError, match=match):
            fn(model, P)
    x = np.zeros((1, C, 5, 5))
    for method in ("dsparse", "fcn", "patchwise"):
        with pytest.raises(ValueError, match=match):
            dense.predict(model, x, P, method=method)


def test_maxout_plan_counts_the_divided_channels():
    plan = dense.analyze(EXACT["ChannelMaxPool-last"](), P)
    assert plan.num_classes == 1
    assert [s.out_shape[0] for s in plan.stages] == [4, 1]
    model = net(OrderedDict(conv=conv(C, 4, 3), maxout=nn.ChannelMaxPool(2), out=conv(2, 3, 5)))
    assert dense.analyze(model, P).num_classes == 3
