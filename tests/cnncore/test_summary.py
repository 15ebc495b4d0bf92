"""``cnncore.summary`` against PyTorch: output shapes, parameters and MACs from a torch twin of
each model run on the meta device (no memory, no arithmetic), and receptive fields / total
strides measured with autograd on random chains of windows."""

from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore import models
from cnncore import nn as cnn
from cnncore.summarize import format_summary, print_summary, summary

torch = pytest.importorskip("torch")
tnn = torch.nn


@pytest.fixture(autouse=True)
def _seed():
    cnn.manual_seed(0)


# -- a torch twin of any of our models, built from the layers' attributes --------------------------
class TorchConcat(tnn.Module):
    def __init__(self, branches: OrderedDict) -> None:
        super().__init__()
        self.branches = tnn.ModuleDict(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches.values()], dim=1)


class TorchChannelMax(tnn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        n, c, h, w = x.shape
        return x.reshape(n, c // self.k, self.k, h, w).amax(dim=2)


def torch_twin(m, device: str = "meta") -> tnn.Module:
    if isinstance(m, cnn.Sequential):
        return tnn.Sequential(
            OrderedDict((n, torch_twin(c, device)) for n, c in m.named_children())
        )
    if isinstance(m, cnn.Concat):
        return TorchConcat(OrderedDict((n, torch_twin(c, device)) for n, c in m.named_children()))
    if isinstance(m, cnn.Conv2d):
        return tnn.Conv2d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            groups=m.groups,
            bias=m.bias is not None,
            device=device,
            dtype=torch.float64,
        )
    if isinstance(m, cnn.Linear):
        return tnn.Linear(
            m.in_features,
            m.out_features,
            bias=m.bias is not None,
            device=device,
            dtype=torch.float64,
        )
    if isinstance(m, cnn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)
    if isinstance(m, cnn.AvgPool2d):
        assert m.dilation == (1, 1)
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, count_include_pad=True)
    if isinstance(m, cnn.GlobalAvgPool2d):
        return tnn.AdaptiveAvgPool2d(1)
    if isinstance(m, cnn.ChannelMaxPool):
        return TorchChannelMax(m.pool_size)
    simple = {
        cnn.ReLU: tnn.ReLU,
        cnn.Tanh: tnn.Tanh,
        cnn.Flatten: tnn.Flatten,
        cnn.Dropout: tnn.Identity,
        cnn.LocalResponseNorm: tnn.Identity,  # shape-preserving (torch's is slow to start on meta)
        cnn.LocalContrastNorm: tnn.Identity,
    }
    return simple[type(m)]()


def torch_rows(model, input_shape):
    """Per top-level child of the twin: output shape, parameter count and MACs (from hooks)."""
    twin = torch_twin(model)
    rows = OrderedDict()
    hooks = []
    for name, child in twin.named_children():
        rows[name] = {"params": sum(p.numel() for p in child.parameters()), "macs": 0}

        def count(mod, inp, out, name=name):
            if isinstance(mod, tnn.Conv2d):
                per_out = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
                rows[name]["macs"] += out[0].numel() * per_out
            elif isinstance(mod, tnn.Linear):
                rows[name]["macs"] += out[0].numel() * mod.in_features

        def shape(mod, inp, out, name=name):
            rows[name]["output_shape"] = tuple(out.shape[1:])

        hooks += [m.register_forward_hook(count) for m in child.modules()]
        hooks.append(child.register_forward_hook(shape))
    twin(torch.empty(1, *input_shape, device="meta", dtype=torch.float64))
    for h in hooks:
        h.remove()
    return rows


def assert_summary_matches_torch(model, input_shape=None):
    input_shape = input_shape or model.input_shape
    rows = summary(model, input_shape)
    expected = torch_rows(model, input_shape)
    assert [r["name"] for r in rows] == list(expected)
    for r in rows:
        e = expected[r["name"]]
        got = (r["output_shape"], r["params"], r["macs"])
        assert got == (e["output_shape"], e["params"], e["macs"]), r["name"]
    return rows


SMALL_MODELS = {
    "toy15": models.toy15,
    "pixel65": models.pixel65,
    "pixel97": lambda: models.pixel_net(97),
    "pixel129": lambda: models.pixel_net(129),
    "pixel161": lambda: models.pixel_net(161),
    "pixel193": lambda: models.pixel_net(193),
    "nin": models.nin,
    "googlenet": models.googlenet,
}


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_summary_matches_torch_on_meta(name):
    model = SMALL_MODELS[name]()
    assert_summary_matches_torch(model)
    # a larger input than the paper's still works wherever the model allows it
    if name in ("nin", "toy15"):
        c, h, w = model.input_shape
        assert_summary_matches_torch(model, (c, h + 7, w + 12))


def test_summary_of_other_layer_kinds():
    model = cnn.Sequential(
        OrderedDict(
            conv1=cnn.Conv2d(2, 12, 3, stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
            tanh1=cnn.Tanh(),
            maxout1=cnn.ChannelMaxPool(3),
            pool1=cnn.AvgPool2d((2, 3), stride=(2, 1), padding=1),
            lcn1=cnn.LocalContrastNorm(5),
            nested=cnn.Sequential(cnn.Conv2d(4, 6, 1, bias=False), cnn.ReLU()),
            branches=cnn.Concat(cnn.Conv2d(6, 3, 3, padding=1), cnn.MaxPool2d(3, 1, 1)),
            gap=cnn.GlobalAvgPool2d(),
            flatten=cnn.Flatten(),
            fc=cnn.Linear(9, 4, bias=False),
        )
    )
    rows = assert_summary_matches_torch(model, (2, 17, 13))
    by_name = {r["name"]: r for r in rows}
    # the 5x5 window of local contrast normalization widens the field
    assert by_name["lcn1"]["receptive_field"][0] == by_name["pool1"]["receptive_field"][0] + 4 * 2
    assert by_name["nested"]["type"] == "Sequential"


# -- receptive fields and total strides, measured with autograd ------------------------------------
window = st.tuples(
    st.sampled_from(["conv", "max", "avg"]),
    st.integers(1, 3),  # kernel
    st.integers(1, 3),  # stride
    st.integers(1, 2),  # dilation
)


def measured_field(layers, size: int, head: bool):
    """Rows of the input that output (0, 0) and output (0, 1) depend on, in a chain of
    all-ones windows (every pool replaced by a ones convolution: same geometry, no argmax)."""
    mods = []
    for _, k, s, d in layers:
        conv = tnn.Conv2d(1, 1, k, s, 0, d, bias=False, dtype=torch.float64)
        tnn.init.ones_(conv.weight)
        mods.append(conv)
    net = tnn.Sequential(*mods)
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = net(x)
    if head:  # Flatten + Linear with positive weights: the output sees the whole map
        y = y.sum().reshape(1, 1, 1, 1)

    def rows_used(i, j):
        (g,) = torch.autograd.grad(y[0, 0, i, j], x, retain_graph=True)
        used = torch.nonzero(g[0, 0].sum(dim=1) > 0).flatten()
        cols = torch.nonzero(g[0, 0].sum(dim=0) > 0).flatten()
        return int(used.min()), int(used.max()), int(cols.min()), int(cols.max())

    first = rows_used(0, 0)
    second = rows_used(0, 1) if y.shape[-1] > 1 else None
    return first, second


@settings(max_examples=25, deadline=None)
@given(st.lists(window, min_size=1, max_size=4), st.integers(0, 4), st.booleans())
def test_receptive_field_and_stride_by_autograd(layers, extra, head):
    rf, jump = 1, 1
    for _, k, s, d in layers:
        rf, jump = rf + d * (k - 1) * jump, jump * s
    size = rf + jump + extra  # at least two outputs along each axis
    ours = []
    for kind, k, s, d in layers:
        if kind == "conv":
            ours.append(cnn.Conv2d(1, 1, k, s, 0, d))
        elif kind == "max":
            ours.append(cnn.MaxPool2d(k, s, 0, d))
        else:
            ours.append(cnn.AvgPool2d(k, s, 0, d))
    out_hw = summary(cnn.Sequential(*ours), (1, size, size))[-1]["output_shape"][1:]
    if head:
        ours += [cnn.Flatten(), cnn.Linear(out_hw[0] * out_hw[1], 1)]
    rows = summary(cnn.Sequential(*ours), (1, size, size))
    (r0, r1, c0, c1), second = measured_field(layers, size, head)
    assert (r0, c0) == (0, 0)
    assert rows[-1]["receptive_field"] == (r1 + 1, c1 + 1)
    if not head:
        assert second is not None and second[2] == rows[-1]["total_stride"][1]
    assert rows[-1]["total_stride"] == (jump, jump)


def test_patch_network_fields():
    # toy15 sees its whole 15x15 patch; pixel65 sees 60 rows (tests/cnncore/test_models.py measures
    # both with autograd); the pixel_net family sees exactly its patch
    assert summary(models.toy15())[-1]["receptive_field"] == (15, 15)
    assert summary(models.toy15())[-1]["total_stride"] == (6, 6)
    assert summary(models.pixel65())[-1]["receptive_field"] == (60, 60)
    assert summary(models.pixel65())[-1]["total_stride"] == (8, 8)
    for p, stages in ((97, 4), (129, 4), (161, 5), (193, 5)):
        last = summary(models.pixel_net(p))[-1]
        assert last["receptive_field"] == (p, p)
        assert last["total_stride"] == (2**stages, 2**stages)
        assert last["output_shape"] == (2,)


def test_pixel_net_redundancy_documented():
    # MACs of one patch over MACs per pixel of the d-sparse network (each layer at one position)
    documented = {97: 414, 129: 557, 161: 1265, 193: 1608}
    for p, ratio in documented.items():
        model = models.pixel_net(p)
        per_position = 0
        for m in model:
            if isinstance(m, cnn.Conv2d):
                per_position += m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, cnn.Linear):
                per_position += m.in_features * m.out_features
        total = sum(r["macs"] for r in summary(model))
        assert round(total / per_position) == ratio


# -- shapes against our own forward pass -----------------------------------------------------------
@pytest.mark.parametrize("build", [models.toy15, models.pixel65])
def test_summary_shapes_match_forward(build):
    model = build().eval()
    x = np.random.default_rng(0).random((2, *model.input_shape), dtype=np.float32)
    rows = summary(model)
    for r, child in zip(rows, model, strict=True):
        x = child(x)
        assert tuple(x.shape[1:]) == r["output_shape"], r["name"]
        assert r["params"] == sum(p.data.size for p in child.parameters())


def test_inception_row_matches_forward():
    model = models.googlenet()
    row = {r["name"]: r for r in summary(model)}["inception_3a"]
    x = np.random.default_rng(1).random((1, 192, 28, 28), dtype=np.float32)
    assert tuple(model.inception_3a.eval()(x).shape[1:]) == row["output_shape"]


# -- table formatting ------------------------------------------------------------------------------
def test_format_and_print():
    rows = summary(models.toy15())
    text = format_summary(rows)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["layer", "type", "output", "shape"]
    assert any(line.split()[:2] == ["conv1", "Conv2d"] for line in lines)
    total_params = sum(r["params"] for r in rows)
    total_macs = sum(r["macs"] for r in rows)
    assert f"{total_params:,}" in lines[-2] and f"{total_macs:,}" in lines[-2]
    buf = io.StringIO()
    print_summary(models.toy15(), file=buf)
    assert buf.getvalue().strip() == text


# -- bad input -------------------------------------------------------------------------------------
def test_bad_input():
    toy = models.toy15()
    with pytest.raises(ValueError, match="input_shape"):
        summary(toy, (15, 15))
    with pytest.raises(TypeError, match="input_shape"):
        summary(toy, (3, 15.0, 15))
    with pytest.raises(ValueError, match="input_shape"):
        summary(toy, (3, 0, 15))
    with pytest.raises(ValueError, match=r"'conv1'.*3 input channels.*\(4, 15, 15\)"):
        summary(toy, (4, 15, 15))
    with pytest.raises(ValueError, match=r"'conv3'.*larger than its padded input"):
        summary(toy, (3, 14, 14))
    with pytest.raises(ValueError, match="input_shape is required"):
        summary(cnn.Sequential(cnn.ReLU()))
    with pytest.raises(ValueError, match=r"'1' \(Linear\).*Flatten"):
        summary(cnn.Sequential(cnn.Conv2d(1, 2, 1), cnn.Linear(2, 2)), (1, 1, 1))
    with pytest.raises(ValueError, match=r"'0' \(Linear\) expects \(5,\)"):
        summary(cnn.Sequential(cnn.Linear(5, 2)), (4,))
    with pytest.raises(ValueError, match="ChannelMaxPool"):
        summary(cnn.Sequential(cnn.ChannelMaxPool(3)), (4, 2, 2))
    with pytest.raises(ValueError, match="cannot be joined"):
        summary(cnn.Sequential(cnn.Concat(cnn.Conv2d(1, 1, 3), cnn.ReLU())), (1, 5, 5))
    with pytest.raises(TypeError, match="model"):
        summary("toy15", (3, 15, 15))

    class Custom(cnn.Module):
        def __init__(self):
            self.a = cnn.ReLU()

    with pytest.raises(TypeError, match="Sequential"):
        summary(Custom(), (1, 2, 2))
    with pytest.raises(TypeError, match=r"layer 'c' \(Custom\)"):
        summary(cnn.Sequential(OrderedDict(c=Custom())), (1, 2, 2))


def test_single_layer_and_vector_input():
    rows = summary(cnn.Conv2d(3, 8, 3), (3, 10, 10))
    assert len(rows) == 1 and rows[0]["output_shape"] == (8, 8, 8)
    rows = summary(cnn.Sequential(cnn.Linear(5, 3), cnn.ReLU(), cnn.Linear(3, 2)), (5,))
    assert [r["output_shape"] for r in rows] == [(3,), (3,), (2,)]
    assert [r["macs"] for r in rows] == [15, 0, 6]
    assert rows[-1]["receptive_field"] is None
