"""Sequential naming and indexing, Concat and the Inception block (names, shapes, gradients)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnncore.nn as nn
from tests.cnncore.nn_gradcheck import check_module_gradients

torch.set_num_threads(1)


def test_sequential_names_like_torch():
    ours = nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2), nn.Conv2d(3, 4, 1))
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.MaxPool2d(2), torch.nn.Conv2d(3, 4, 1)
    )
    assert [n for n, _ in ours.named_parameters()] == list(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    named = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 2, 3), pool1=nn.MaxPool2d(2)))
    assert [n for n, _ in named.named_children()] == ["conv1", "pool1"]
    assert list(named.state_dict()) == ["conv1.weight", "conv1.bias"]
    assert named.conv1 is named[0]


def test_sequential_indexing_len_iter_append():
    layers = [nn.Conv2d(1, 1, 1), nn.MaxPool2d(1), nn.Conv2d(1, 1, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == layers[1:]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]  # names kept, as torch
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(TypeError):
        seq["0"]
    extra = nn.Conv2d(1, 1, 1)
    seq.append(extra)
    assert len(seq) == 4 and seq[3] is extra and "3.weight" in seq.state_dict()
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(nn.Conv2d(1, 1, 1), "relu")


def test_sequential_forward_backward_chain():
    rng = np.random.default_rng(0)
    seq = nn.Sequential(nn.Conv2d(2, 3, 2), nn.MaxPool2d(2, 1), nn.Conv2d(3, 2, 2)).double()
    x = rng.standard_normal((2, 2, 6, 6))
    y = seq(x)
    np.testing.assert_allclose(y, seq[2](seq[1](seq[0](x))))
    check_module_gradients(seq, x[:1])


def test_concat_joins_channels_and_sums_gradients():
    rng = np.random.default_rng(1)
    cat = nn.Concat(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(3, 1, 1), nn.Conv2d(2, 1, 1))
    cat.double()
    x = rng.standard_normal((2, 2, 5, 5))
    y = cat(x)
    assert y.shape == (2, 6, 5, 5)
    np.testing.assert_array_equal(y[:, 3:5], nn.MaxPool2d(3, 1, 1)(x))
    check_module_gradients(cat, x[:1])
    with pytest.raises(ValueError, match="joined along channels"):
        nn.Concat(nn.Conv2d(2, 1, 1), nn.Conv2d(2, 1, 3)).double()(x)


class TorchInception(torch.nn.Module):
    """The paper's block in torch, named like torchvision (no batch norm, 5x5 in branch 3)."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()

        def conv(a, b, k, p=0):
            m = torch.nn.Sequential()
            m.add_module("conv", torch.nn.Conv2d(a, b, k, padding=p))
            m.add_module("relu", torch.nn.ReLU())
            return m

        self.branch1 = conv(cin, c1, 1)
        self.branch2 = torch.nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3, 1))
        self.branch3 = torch.nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 5, 2))
        self.branch4 = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1), conv(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def test_inception_loads_torch_weights_and_matches():
    rng = np.random.default_rng(2)
    args = (4, 2, 3, 4, 2, 3, 2)
    theirs = TorchInception(*args).double()
    ours = nn.Inception(*args)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert ours.out_channels == 11 and ours.state_dict()["branch1.conv.weight"].dtype == np.float32
    ours.double()
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((2, 4, 6, 5))
    y = ours(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters():
        t = dict(theirs.named_parameters())[name]
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def _grads(model):
    return {n: None if p.grad is None else p.grad.copy() for n, p in model.named_parameters()}


def _head(name):
    # a network on (2, 3, 6, 6) inputs with 5 outputs; the kernels' need_dx flags backward_params
    # must ask for, in call order (the last layer first)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(144, 5))
    if name == "conv":
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), flat), [True, False]
    if name == "linear":
        lin = nn.Sequential(nn.Flatten(), nn.Linear(108, 144))
        return nn.Sequential(lin, nn.ReLU(), nn.Linear(144, 5)), [True, False]
    if name == "inception":
        cat = nn.Concat(nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 3, padding=1))
        return nn.Sequential(cat, nn.ReLU(), flat), [True, False, False]
    if name == "parameter-free front":
        front = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 1, 1))
        return nn.Sequential(front, nn.Flatten(), nn.Linear(108, 5)), [False]
    frozen = nn.freeze_all(nn.Conv2d(3, 4, 3, padding=1))  # transfer learning: never run
    return nn.Sequential(frozen, nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), flat), [True, False]


@pytest.mark.parametrize("name", ["conv", "linear", "inception", "parameter-free front", "frozen"])
def test_backward_params_gives_backward_s_parameter_gradients_without_the_input_s(
    name, monkeypatch
):
    # the same parameter gradients as backward, None returned, and no gradient computed that only
    # the input's would need (torch skips them for inputs without requires_grad)
    from cnncore_kernels import conv as kconv
    from cnncore_kernels import linear as klinear

    model, flags = _head(name)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((2, 5)).astype(np.float32)
    model(x)
    assert model.backward(dy).shape == x.shape
    want = _grads(model)
    asked = []
    for mod, name_, at in ((kconv, "conv2d_backward", -4), (klinear, "linear_backward", 3)):
        real = getattr(mod, name_)

        def spy(*args, _real=real, _at=at):
            asked.append(args[_at])
            return _real(*args)

        monkeypatch.setattr(mod, name_, spy)
    model.zero_grad()
    model(x)
    assert model.backward_params(dy) is None
    assert asked == flags
    got = _grads(model)
    assert got.keys() == want.keys()
    for n in want:
        if want[n] is None:
            assert got[n] is None, n
        else:
            np.testing.assert_allclose(got[n], want[n], rtol=1e-6, atol=1e-6, err_msg=n)
