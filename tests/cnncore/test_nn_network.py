"""A whole small network against torch autograd, weights loaded from the torch state_dict."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

import cnncore.nn as nn
from tests.cnncore.nn_gradcheck import check_module_gradients

torch.set_num_threads(1)


def pair():
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(3, 2, 1),
        torch.nn.LocalResponseNorm(3, alpha=0.01, beta=0.75, k=2.0),
        torch.nn.Conv2d(6, 8, 3, dilation=2),
        torch.nn.Tanh(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(8, 5),
    )
    ours = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.LocalResponseNorm(3, alpha=0.01, beta=0.75, k=2.0),
        nn.Conv2d(6, 8, 3, dilation=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(8, 5),
    )
    return ours, theirs


def test_network_output_and_gradients_match_torch():
    torch.manual_seed(0)
    ours, theirs = pair()
    theirs.double().eval()
    ours.double().eval()
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 12, 12))
    targets = np.array([1, 4])

    scores = ours(x)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(scores, targets)
    dx = ours.backward(loss_fn.backward())

    xt = torch.tensor(x, requires_grad=True)
    st = theirs(xt)
    lt = torch.nn.functional.cross_entropy(st, torch.tensor(targets))
    lt.backward()
    np.testing.assert_allclose(scores, st.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss == np.float64(lt.item()) or abs(loss - lt.item()) < 1e-12
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    tp = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(tp)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tp[name].grad.numpy(), rtol=1e-9, atol=1e-12)


def test_network_float32_close_to_torch():
    torch.manual_seed(1)
    ours, theirs = pair()
    theirs.eval()
    ours.eval()
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype(np.float32)
    y = ours(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_network_gradcheck_with_lcn_and_maxout():
    nn.manual_seed(2)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(2, 4, 3),
            maxout=nn.ChannelMaxPool(2),
            lcn=nn.LocalContrastNorm(3, sigma=1.0),
            gap=nn.GlobalAvgPool2d(),
            flat=nn.Flatten(),
            fc=nn.Linear(2, 3),
        )
    ).double()
    x = np.random.default_rng(2).standard_normal((2, 2, 7, 7))
    check_module_gradients(net, x)
