"""Pooling layers: outputs and gradients against torch.nn, finite differences, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnncore.nn as nn
from tests.cnncore.nn_gradcheck import check_module_gradients

torch.set_num_threads(1)


def torch_run(tmod, x, dy):
    xt = torch.tensor(x, requires_grad=True)
    yt = tmod(xt)
    yt.backward(torch.tensor(dy))
    return yt.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize(
    "k,s,p,d", [(2, None, 0, 1), (3, 1, 1, 1), (3, 2, 1, 2), ((2, 3), (1, 2), (1, 0), (2, 1))]
)
def test_maxpool_matches_torch(k, s, p, d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 10))
    layer = nn.MaxPool2d(k, s, p, d)
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    ty, tdx = torch_run(torch.nn.MaxPool2d(k, s, p, d), x, dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_allclose(layer.backward(dy), tdx, rtol=1e-12, atol=1e-12)
    assert layer.kernel_size == nn.MaxPool2d(k).kernel_size
    check_module_gradients(layer, x[:1, :2])


def test_maxpool_no_grad_caches_nothing_and_matches():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    layer = nn.MaxPool2d(2, 1)
    y = layer(x)
    with nn.no_grad():
        y2 = layer(x)
    np.testing.assert_array_equal(y, y2)
    assert layer._indices is None
    with pytest.raises(RuntimeError, match="gradients enabled"):
        layer.backward(np.ones_like(y))


def test_maxpool_attributes():
    layer = nn.MaxPool2d(3, 2, 1)
    assert layer.kernel_size == (3, 3) and layer.stride == (2, 2)
    assert layer.padding == (1, 1) and layer.dilation == (1, 1)
    assert nn.MaxPool2d(2).stride == (2, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.MaxPool2d(0)


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 1))])
def test_avgpool_matches_torch(k, s, p, cip):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 7, 8))
    layer = nn.AvgPool2d(k, s, p, count_include_pad=cip)
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    ty, tdx = torch_run(torch.nn.AvgPool2d(k, s, p, count_include_pad=cip), x, dy)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), tdx, rtol=1e-12, atol=1e-12)


def test_avgpool_dilated_gradcheck():
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 7))
    check_module_gradients(nn.AvgPool2d(2, 1, 1, dilation=2, count_include_pad=False), x)


def test_channel_max_pool_is_maxout():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 3, 4))
    layer = nn.ChannelMaxPool(3)
    y = layer(x)
    np.testing.assert_array_equal(y, x.reshape(2, 2, 3, 3, 4).max(axis=2))
    check_module_gradients(layer, x)


def test_global_avg_pool_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 5))
    layer = nn.GlobalAvgPool2d()
    y = layer(x)
    assert y.shape == (2, 3, 1, 1)
    dy = rng.standard_normal(y.shape)
    ty, tdx = torch_run(torch.nn.AdaptiveAvgPool2d(1), x, dy)
    np.testing.assert_allclose(y, ty, rtol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), tdx, rtol=1e-12)
    check_module_gradients(layer, x[:1])
