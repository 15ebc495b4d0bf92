"""Pointwise, normalization, fully connected and dropout layers: torch.nn as the oracle, finite
differences in float64, train/eval behaviour, caching only with gradients enabled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnncore.nn as nn
from tests.cnncore.nn_gradcheck import check_module_gradients

torch.set_num_threads(1)


def against_torch(ours, theirs, x, rtol=1e-10, atol=1e-12, seed=0):
    """Output, input gradient and parameter gradients of ``ours`` equal ``theirs`` (float64)."""
    rng = np.random.default_rng(seed)
    theirs = theirs.double()
    ours.double()
    ours.load_state_dict(theirs.state_dict())
    y = ours(x)
    dy = rng.standard_normal(y.shape)
    ours.zero_grad()
    dx = ours.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tp[name].grad.numpy(), rtol=rtol, atol=atol)


def x4(shape=(2, 5, 4, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.Tanh(), torch.nn.Tanh()),
        (nn.Softmax(), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(), torch.nn.LogSoftmax(dim=1)),
        (nn.LocalResponseNorm(3), torch.nn.LocalResponseNorm(3)),
        (nn.LocalResponseNorm(4, 0.1, 0.6, 2.0), torch.nn.LocalResponseNorm(4, 0.1, 0.6, 2.0)),
        (nn.Flatten(), torch.nn.Flatten()),
    ],
)
def test_pointwise_and_lrn_match_torch(ours, theirs):
    against_torch(ours, theirs, x4())


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_and_loads_its_state(bias):
    theirs = torch.nn.Linear(6, 4, bias=bias)
    ours = nn.Linear(6, 4, bias=bias)
    assert ours.weight.shape == (4, 6) and list(ours.state_dict()) == list(theirs.state_dict())
    against_torch(ours, theirs, x4((3, 6)))


@pytest.mark.parametrize(
    "layer",
    [
        nn.ReLU(),
        nn.Tanh(),
        nn.Softmax(),
        nn.LogSoftmax(),
        nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5),
        nn.LocalContrastNorm(3, sigma=1.0, divisor="mean"),
        nn.LocalContrastNorm(4, sigma=1.5, threshold=0.1, divisor="fixed"),
        nn.Linear(5 * 4 * 3, 3),
        nn.Flatten(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_gradients_by_finite_differences(layer):
    x = x4((2, 5, 4, 3), seed=1)
    if isinstance(layer, nn.Linear):
        x = x.reshape(2, -1)
    check_module_gradients(layer.double(), x)


def test_cross_channel_and_local_contrast_norm_keep_shape():
    x = x4((1, 3, 6, 5)).astype(np.float32)
    assert nn.LocalContrastNorm()(x).shape == x.shape
    assert nn.LocalResponseNorm(5)(x).dtype == np.float32


def test_layers_cache_only_with_gradients_enabled():
    x = x4((2, 3, 4, 4))
    for layer in (nn.ReLU(), nn.Tanh(), nn.LocalResponseNorm(3), nn.Linear(48, 2).double()):
        inp = x.reshape(2, -1) if isinstance(layer, nn.Linear) else x
        with nn.no_grad():
            layer(inp)
        cached = [k for k, v in vars(layer).items() if k.startswith("_") and v is not None]
        assert cached == [], f"{type(layer).__name__} cached {cached} under no_grad"
        with pytest.raises(RuntimeError, match="gradients enabled"):
            layer.backward(np.ones((2, 2)))


def test_frozen_linear_computes_no_weight_gradient(monkeypatch):
    import cnncore.nn.linear as linear_module

    calls = []
    real = linear_module.F.linear_backward

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(linear_module.F, "linear_backward", spy)
    layer = nn.Linear(4, 3).double()
    layer.weight.requires_grad = False
    x = x4((2, 4))
    layer(x)
    dx = layer.backward(np.ones((2, 3)))
    assert layer.weight.grad is None and layer.bias.grad is not None
    assert calls[-1]["need_dweight"] is False and calls[-1]["need_dbias"] is True
    np.testing.assert_allclose(dx, np.ones((2, 3)) @ layer.weight.data)


# -- dropout --------------------------------------------------------------------------------
def test_dropout_train_is_inverted_and_backward_uses_same_mask():
    nn.manual_seed(0)
    d = nn.Dropout(0.25)
    x = np.ones((200, 50), dtype=np.float32)
    y = d(x)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert abs(kept.mean() - 0.75) < 0.02
    dy = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(d.backward(dy), dy * y)


def test_dropout_eval_is_identity_and_seeded_runs_repeat():
    d = nn.Dropout(0.5)
    x = x4((3, 4))
    d.eval()
    assert d(x) is x and d.backward(x) is x
    d.train()
    d.seed(7)
    a = d(x)
    d.seed(7)
    np.testing.assert_array_equal(d(x), a)
    nn.manual_seed(3)
    m1 = nn.Dropout(0.5)
    nn.manual_seed(3)
    m2 = nn.Dropout(0.5)
    np.testing.assert_array_equal(m1(x), m2(x))
    assert not np.array_equal(m1(x), m1(x))  # fresh masks each call
    np.testing.assert_array_equal(nn.Dropout(1.0)(x), 0 * x)
    state = m1.rng_state()
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        m1(x.astype(np.int32))
    assert m1.rng_state() == state  # a refused call draws no mask
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.5)
    seq = nn.Sequential(nn.Dropout(0.5), nn.ReLU()).eval()
    assert not seq[0].training
    seq.train()
    assert seq[0].training


def test_module_double_float():
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    assert m.double()[0].weight.dtype == np.float64
    assert m.float()[0].bias.dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        m.astype(np.int32)


def test_grouped_conv2d_loads_torch_weights_and_matches_it():
    nn.manual_seed(0)
    ours = nn.Conv2d(6, 4, (3, 2), stride=(2, 1), padding=1, dtype=np.float64, groups=2)
    assert ours.weight.data.shape == (4, 3, 3, 2)
    assert "groups=2" in repr(ours)
    theirs = torch.nn.Conv2d(6, 4, (3, 2), stride=(2, 1), padding=1, groups=2).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = x4((2, 6, 5, 4))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = x4(y.shape, seed=1)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-12)
    check_module_gradients(nn.Conv2d(4, 2, 2, dtype=np.float64, groups=2), x4((1, 4, 3, 3), seed=2))
    with pytest.raises(ValueError, match="groups=4 must divide in_channels=6 and out_channels=2"):
        nn.Conv2d(6, 2, 3, groups=4)
    with pytest.raises(TypeError, match="bias must be a bool, got 2 .pass groups by keyword"):
        nn.Conv2d(96, 256, 5, 1, 2, 1, 2)  # torch's positional groups
