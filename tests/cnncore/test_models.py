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
