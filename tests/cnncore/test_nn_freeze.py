"""Freezing and layer transfer (Yosinski et al.: AnB, AnB+, BnB)."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.nn as nn
from cnncore.optim import SGD


def net(seed):
    nn.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.MaxPool2d(2), nn.Conv2d(3, 4, 2), nn.Conv2d(4, 2, 2)
    ).double()


def test_copy_layers_copies_prefix_only():
    a, b = net(0), net(1)
    before = b.state_dict()
    nn.copy_layers(a, b, 3)
    sa, sb = a.state_dict(), b.state_dict()
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        np.testing.assert_array_equal(sb[name], sa[name])
    np.testing.assert_array_equal(sb["3.weight"], before["3.weight"])
    assert b[0].weight.data is not a[0].weight.data  # copies, not shared arrays
    assert all(p.requires_grad for p in b.parameters())  # AnB+: everything trains


def test_anb_freezes_copied_layers_no_grad_no_update():
    a, b = net(0), net(1)
    nn.copy_layers(a, b, 3, freeze=True)
    assert [p.requires_grad for p in b.parameters()] == [False] * 4 + [True] * 2
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    y = b(x)
    b.backward(np.ones_like(y))
    assert b[0].weight.grad is None and b[2].bias.grad is None  # not computed, not stored
    assert b[3].weight.grad is not None
    frozen = b[0].weight.data.copy()
    opt = SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    opt.step()
    np.testing.assert_array_equal(b[0].weight.data, frozen)
    nn.unfreeze_all(b)
    assert all(p.requires_grad for p in b.parameters())
    nn.freeze_all(b)
    assert not any(p.requires_grad for p in b.parameters())


def test_frozen_conv_input_gradient_still_flows():
    m = net(0)
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8))
    y = m(x)
    dx_all = m.backward(np.ones_like(y))
    nn.freeze_layers(m, 4)
    m(x)
    dx_frozen = m.backward(np.ones_like(y))
    np.testing.assert_allclose(dx_frozen, dx_all)
    assert all(p.grad is None for p in m.parameters())


def test_copy_layers_refuses_mismatch_and_leaves_target_untouched():
    a = net(0)
    nn.manual_seed(3)
    c = nn.Sequential(nn.Conv2d(1, 3, 3), nn.MaxPool2d(2), nn.Conv2d(3, 5, 2)).double()
    before = c.state_dict()
    with pytest.raises(ValueError, match="2.weight"):
        nn.copy_layers(a, c, 3)
    for k, arr in c.state_dict().items():
        np.testing.assert_array_equal(arr, before[k])
    with pytest.raises(ValueError, match="n must be"):
        nn.copy_layers(a, c, 7)


def test_children_for_weight_layers():
    m = net(0)
    assert nn.children_for_weight_layers(m, 0) == 0
    assert nn.children_for_weight_layers(m, 1) == 2  # conv1 + its pool
    assert nn.children_for_weight_layers(m, 3) == 4
    with pytest.raises(ValueError):
        nn.children_for_weight_layers(m, 4)
