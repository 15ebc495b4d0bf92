"""Losses: CrossEntropyLoss against torch (ignore_index, dense (N,K,H,W) logits), the ranking
hinge loss against a loop reference, finite differences for both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnncore.nn as nn
from tests.cnncore.nn_gradcheck import check_loss_gradient


def torch_ce(logits, targets, ignore_index):
    lt = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(lt, torch.tensor(targets), ignore_index=ignore_index)
    loss.backward()
    return loss.item(), lt.grad.numpy()


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4, 5)])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_cross_entropy_matches_torch(shape, ignore_index):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape) * 3
    t_shape = (shape[0],) + shape[2:]
    targets = rng.integers(0, shape[1], size=t_shape)
    targets.flat[::3] = ignore_index  # masked-out samples / pixels
    loss = nn.CrossEntropyLoss(ignore_index=ignore_index)
    value = loss(logits, targets)
    ref, ref_grad = torch_ce(logits, targets, ignore_index)
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), ref_grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(loss.backward(2.0), 2 * ref_grad, rtol=1e-10, atol=1e-14)


def test_cross_entropy_masked_pixels_get_zero_gradient():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((1, 3, 4, 4))
    targets = np.full((1, 4, 4), -1)
    targets[0, 1, 2], targets[0, 3, 0] = 2, 0
    loss = nn.CrossEntropyLoss(ignore_index=-1)
    loss(logits, targets)
    g = loss.backward()
    mask = targets[:, None] != -1
    assert np.all(g[~np.broadcast_to(mask, g.shape)] == 0)
    check_loss_gradient(loss, logits, targets)


def test_cross_entropy_gradcheck_float32_input_and_no_grad():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 3))
    targets = rng.integers(0, 3, 4)
    check_loss_gradient(nn.CrossEntropyLoss(), logits, targets)
    loss = nn.CrossEntropyLoss()
    with nn.no_grad():
        loss(logits.astype(np.float32), targets)
    with pytest.raises(RuntimeError, match="gradients enabled"):
        loss.backward()


def ranking_ref(s, pos, margin):
    total, images = 0.0, 0
    for i in range(s.shape[0]):
        P = [k for k in range(s.shape[1]) if pos[i, k]]
        N = [k for k in range(s.shape[1]) if not pos[i, k]]
        if not P or not N:
            continue
        images += 1
        total += sum(max(0.0, margin - s[i, p] + s[i, n]) for p in P for n in N) / (len(P) * len(N))
    return total / images if images else 0.0


@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_ranking_hinge_loss_reference_and_gradient(margin):
    rng = np.random.default_rng(3)
    s = rng.standard_normal((6, 5))
    labels = (rng.random((6, 5)) < 0.4).astype(np.int64)
    labels[0] = 1  # no negatives: left out
    loss = nn.RankingHingeLoss(margin)
    assert loss(s, labels) == pytest.approx(ranking_ref(s, labels > 0, margin), rel=1e-12)
    check_loss_gradient(loss, s, labels)
    pm = np.where(labels > 0, 1, -1)  # +1/-1 labels mean the same
    assert loss(s, pm) == pytest.approx(loss(s, labels), rel=1e-15)
    single = rng.integers(0, 5, 6)
    assert loss(s, single) == pytest.approx(ranking_ref(s, np.eye(5)[single] > 0, margin))
    with pytest.raises(ValueError, match="targets"):
        loss(s, np.zeros((6, 4)))
