"""The model builders: the benchmark patch networks against torch twins written from SPEC.md."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from cnncore import models, nn

torch = pytest.importorskip("torch")
tnn = torch.nn


@pytest.fixture(autouse=True)
def _seed():
    nn.manual_seed(0)


def torch_toy15(c: int = 3, k: int = 2) -> tnn.Sequential:
    # SPEC.md: conv1 2x2/1 (16), ReLU, pool1 max 2x2/2, conv2 2x2/1 (32), ReLU, pool2 max 3x3/3,
    # conv3 2x2/1 (2 classes)
    return tnn.Sequential(
        OrderedDict(
            conv1=tnn.Conv2d(c, 16, 2),
            relu1=tnn.ReLU(),
            pool1=tnn.MaxPool2d(2, 2),
            conv2=tnn.Conv2d(16, 32, 2),
            relu2=tnn.ReLU(),
            pool2=tnn.MaxPool2d(3, 3),
            conv3=tnn.Conv2d(32, k, 2),
        )
    ).double()


def torch_pixel65(c: int = 3, k: int = 2) -> tnn.Sequential:
    # SPEC.md: conv 5x5 (32), ReLU, max 2x2/2, conv 5x5 (64), ReLU, max 2x2/2, conv 3x3 (128), ReLU,
    # max 2x2/2, Flatten, Linear 3200->256, ReLU, Linear 256->2
    return tnn.Sequential(
        OrderedDict(
            conv1=tnn.Conv2d(c, 32, 5),
            relu1=tnn.ReLU(),
            pool1=tnn.MaxPool2d(2, 2),
            conv2=tnn.Conv2d(32, 64, 5),
            relu2=tnn.ReLU(),
            pool2=tnn.MaxPool2d(2, 2),
            conv3=tnn.Conv2d(64, 128, 3),
            relu3=tnn.ReLU(),
            pool3=tnn.MaxPool2d(2, 2),
            flatten=tnn.Flatten(),
            fc4=tnn.Linear(3200, 256),
            relu4=tnn.ReLU(),
            fc5=tnn.Linear(256, k),
        )
    ).double()


def load_into_torch(model, twin: tnn.Module) -> tnn.Module:
    state = {
        n: torch.from_numpy(np.asarray(a, dtype=np.float64)) for n, a in model.state_dict().items()
    }
    twin.load_state_dict(state, strict=True)  # names and shapes must match exactly
    return twin


@pytest.mark.parametrize(
    ("build", "twin", "patch", "out_shape"),
    [
        (models.toy15, torch_toy15, 15, (2, 2, 1, 1)),
        (models.pixel65, torch_pixel65, 65, (2, 2)),
    ],
)
def test_patch_networks_match_the_spec(build, twin, patch, out_shape):
    model = build()
    assert model.patch_size == patch
    assert model.input_shape == (3, patch, patch)
    t = load_into_torch(model, twin())
    assert tuple(t(torch.zeros(2, 3, patch, patch, dtype=torch.float64)).shape) == out_shape


@pytest.mark.parametrize(
    ("build", "twin"), [(models.toy15, torch_toy15), (models.pixel65, torch_pixel65)]
)
def test_patch_networks_forward_and_backward_match_torch(build, twin):
    model = build().double()
    t = load_into_torch(model, twin())
    x = np.random.default_rng(2).standard_normal((2, *model.input_shape))
    y = model(x)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = t(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    dx = model.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    tparams = dict(t.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_patch_networks_options():
    t = load_into_torch(models.toy15(in_channels=1, num_classes=5), torch_toy15(1, 5))
    assert tuple(t(torch.zeros(1, 1, 15, 15, dtype=torch.float64)).shape) == (1, 5, 1, 1)
    t = load_into_torch(models.pixel65(in_channels=4, num_classes=3), torch_pixel65(4, 3))
    assert tuple(t(torch.zeros(1, 4, 65, 65, dtype=torch.float64)).shape) == (1, 3)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="num_classes"):
            models.toy15(num_classes=bad)
    with pytest.raises(TypeError, match="in_channels"):
        models.pixel65(in_channels=2.0)


def receptive_extent(net: tnn.Module, c: int, p: int) -> tuple[int, int]:
    """The input rows and columns whose perturbation changes some output (float64 torch)."""
    x = torch.zeros(1, c, p, p, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x += torch.rand(1, c, p, p, generator=g, dtype=torch.float64)
    y = net(x)
    # a random projection of all outputs: its gradient is nonzero on every input that matters
    w = torch.rand(y.shape, generator=g, dtype=torch.float64) + 0.5
    (y * w).sum().backward()
    used = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(used.any(dim=1)).flatten()
    cols = torch.nonzero(used.any(dim=0)).flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_patch_network_receptive_fields_by_gradient():
    assert receptive_extent(load_into_torch(models.toy15(), torch_toy15()), 3, 15) == (15, 15)
    # pixel65's odd-sized pools drop the last row and column: 60 of the 65 rows are seen
    assert receptive_extent(load_into_torch(models.pixel65(), torch_pixel65()), 3, 65) == (60, 60)


# -- the lecture's architectures: the papers' tables ----------------------------------------------
def conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def fc_params(fin: int, fout: int) -> int:
    return fin * fout + fout


def rows_of(model):
    from cnncore.summarize import summary

    return {r["name"]: r for r in summary(model)}


def test_alexnet_table():
    model = models.alexnet()
    assert model.input_shape == (3, 227, 227)
    rows = rows_of(model)
    from tests.cnncore.test_summary import assert_summary_matches_torch

    assert_summary_matches_torch(model)
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    neurons = [int(np.prod(rows[n]["output_shape"])) for n in names]
    # the lecture's neurons per layer (Krizhevsky et al. 2012, section 3.5 with a 227 input)
    assert neurons == [290400, 186624, 64896, 64896, 43264, 4096, 4096, 1000]
    expected = (
        conv_params(3, 96, 11)
        + conv_params(96, 256, 5)
        + conv_params(256, 384, 3)
        + conv_params(384, 384, 3)
        + conv_params(384, 256, 3)
        + fc_params(9216, 4096)
        + fc_params(4096, 4096)
        + fc_params(4096, 1000)
    )
    total = sum(r["params"] for r in rows.values())
    assert total == expected == 62_378_344
    # the paper's two towers halve the inputs of conv2, conv4 and conv5: 60,965,224 ("60 million")
    grouped = total - (96 * 256 * 25 + 384 * 384 * 9 + 384 * 256 * 9) // 2
    assert grouped == 60_965_224
    paper = models.alexnet(groups=2)
    assert sum(r["params"] for r in rows_of(paper).values()) == grouped
    layers = dict(paper.named_children())
    assert [layers[n].groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [
        1,
        2,
        1,
        2,
        2,
    ]
    assert_summary_matches_torch(paper)
    layer_names = list(rows)
    assert layer_names[:4] == ["conv1", "relu1", "norm1", "pool1"]
    assert layer_names[-7:] == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]


@pytest.mark.parametrize(
    ("config", "millions"),
    [("A", 133), ("A-LRN", 133), ("B", 133), ("C", 134), ("D", 138), ("E", 144)],
)
def test_vgg_parameter_counts(config, millions):
    model = models.vgg(config)
    rows = rows_of(model)
    total = sum(r["params"] for r in rows.values())
    assert round(total / 1e6) == millions  # Simonyan and Zisserman 2015, Table 2
    convs = [n for n in rows if n.startswith("conv")]
    n_weight_layers = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}[config]
    assert len(convs) + 3 == n_weight_layers
    assert ("norm1" in rows) == (config == "A-LRN")
    assert rows["pool5"]["output_shape"] == (512, 7, 7)
    assert rows["fc8"]["output_shape"] == (1000,)
    if config == "C":  # the 1x1 convolutions close stages 3, 4 and 5
        assert [getattr(model, f"conv{s}_3").kernel_size for s in (3, 4, 5)] == [(1, 1)] * 3
    if config == "E":
        from tests.cnncore.test_summary import assert_summary_matches_torch

        assert_summary_matches_torch(model)


def test_vgg_bad_config():
    with pytest.raises(ValueError, match="config"):
        models.vgg("F")


# Szegedy et al. 2015, Table 1: output size, depth, widths, params (K), ops (M)
GOOGLENET_TABLE = {
    "3a": (28, 256, (64, 96, 128, 16, 32, 32), 159, 128),
    "3b": (28, 480, (128, 128, 192, 32, 96, 64), 380, 304),
    "4a": (14, 512, (192, 96, 208, 16, 48, 64), 364, 73),
    "4b": (14, 512, (160, 112, 224, 24, 64, 64), 437, 88),
    "4c": (14, 512, (128, 128, 256, 24, 64, 64), 463, 100),
    "4d": (14, 528, (112, 144, 288, 32, 64, 64), 580, 119),
    "4e": (14, 832, (256, 160, 320, 32, 128, 128), 840, 170),
    "5a": (7, 832, (256, 160, 320, 32, 128, 128), 1072, 54),
    "5b": (7, 1024, (384, 192, 384, 48, 128, 128), 1388, 71),
}


def test_googlenet_table():
    rows = rows_of(models.googlenet())
    blocks = [n for n in rows if n.startswith("inception")]
    assert [n[-2:] for n in blocks] == list(GOOGLENET_TABLE)
    cin = 192
    for name, (size, depth, widths, _paper_k, paper_ops) in GOOGLENET_TABLE.items():
        row = rows[f"inception_{name}"]
        assert row["type"] == "Inception"
        assert row["output_shape"] == (depth, size, size)
        c1, r3, c3, r5, c5, pp = widths
        weights = cin * c1 + cin * r3 + r3 * c3 * 9 + cin * r5 + r5 * c5 * 25 + cin * pp
        assert row["params"] == weights + sum(widths)  # plus one bias per filter
        assert row["macs"] == weights * size * size
        if name != "5a":
            assert abs(row["macs"] / 1e6 - paper_ops) < 1, name  # the table's rounding
        cin = depth
    # Table 1 prints 54M for 5a, but its own widths give 160+... = 1.04M weights at 7x7 = 51M;
    # its params column disagrees with its widths for 4a, 4c, 4d, 4e, 5a and 5b likewise.
    assert round(rows["inception_5a"]["macs"] / 1e6) == 51
    # conv2 (3x3 reduce 64, 3x3 192): 112K params, 360M ops; the classifier 1000K, 1M
    conv2 = rows["conv2_reduce"]["macs"] + rows["conv2"]["macs"]
    assert round(conv2 / 1e6) == 360
    assert round((rows["conv2_reduce"]["params"] + rows["conv2"]["params"]) / 1024) == 112
    assert round(rows["fc"]["params"] / 1024) == 1001 and round(rows["fc"]["macs"] / 1e6) == 1
    assert rows["pool5"]["output_shape"] == (1024, 1, 1)
    total = sum(r["params"] for r in rows.values())
    assert 6.95e6 < total < 7.05e6  # Table 1's params column sums to 6.8M (see above)


def test_nin_parameters():
    rows = rows_of(models.nin())
    expected = (
        conv_params(3, 96, 11)
        + 2 * conv_params(96, 96, 1)
        + conv_params(96, 256, 5)
        + 2 * conv_params(256, 256, 1)
        + conv_params(256, 384, 3)
        + 2 * conv_params(384, 384, 1)
        + conv_params(384, 1024, 3)
        + conv_params(1024, 1024, 1)
        + conv_params(1024, 1000, 1)
    )
    total = sum(r["params"] for r in rows.values())
    assert total == expected
    assert round(total / 1e6, 1) in (7.5, 7.6)  # "7.5M" (the released model is 30 MB)
    assert list(rows)[-1] == "pool4" and rows["pool4"]["output_shape"] == (1000, 1, 1)
    assert "linear" not in "".join(r["type"].lower() for r in rows.values())


@pytest.mark.parametrize(
    ("build", "sizes"),
    [
        # (Zeiler and Fergus 2013, Figure 3): 110, 55, 26, 13, 13, 13, 13, 6
        (models.clarifai, {"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13, "pool5": 6}),
        # OverFeat fast (Sermanet et al. 2014, Table 1): 56, 28, 24, 12, 12, 12, 12, 6
        (models.overfeat, {"conv1": 56, "pool1": 28, "conv2": 24, "pool2": 12, "pool5": 6}),
        # Chatfield et al. 2014 (the released models' sizes)
        (models.cnn_f, {"conv1": 54, "pool1": 27, "conv2": 27, "pool2": 13, "pool5": 6}),
        (models.cnn_m, {"conv1": 109, "pool1": 54, "conv2": 26, "pool2": 13, "pool5": 6}),
        (models.cnn_s, {"conv1": 109, "pool1": 36, "conv2": 34, "pool2": 17, "pool5": 6}),
    ],
)
def test_other_imagenet_models(build, sizes):
    model = build(num_classes=20)
    rows = rows_of(model)
    assert {n: rows[n]["output_shape"][1] for n in sizes} == sizes
    assert rows["fc8"]["output_shape"] == (20,)
    if build is models.overfeat:  # "145M parameters" at 1000 classes
        total = sum(r["params"] for r in rows.values()) + 4096 * 980 + 980
        assert abs(total / 1e6 - 145) < 1


def test_num_classes_of_small_imagenet_models():
    assert rows_of(models.nin(num_classes=10))["pool4"]["output_shape"] == (10, 1, 1)
    assert rows_of(models.googlenet(num_classes=7))["fc"]["output_shape"] == (7,)
    builders = [models.alexnet, models.clarifai, models.overfeat, models.vgg, models.cnn_f]
    builders += [models.cnn_m, models.cnn_s, models.nin, models.googlenet]
    for build in builders:  # refused before anything is allocated
        with pytest.raises(ValueError, match="num_classes"):
            build(num_classes=0)
        with pytest.raises(TypeError, match="num_classes"):
            build(num_classes="10")
    with pytest.raises(ValueError, match="patch_size"):
        models.pixel_net(100)
