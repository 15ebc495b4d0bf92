"""Cross-entropy with infinite (and NaN) logits: loss and gradient as PyTorch's
``cross_entropy``, NaN where PyTorch gives NaN, for (N, K) and (N, K, H, W) logits with ignored
targets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cnncore.functional import cross_entropy

INF = np.inf
ROWS = [
    [INF, 0, 0],
    [0, INF, 0],
    [-INF, 0, 0],
    [0, -INF, 1],
    [-INF, -INF, -INF],
    [INF, INF, 0],
    [INF, -INF, 0],
    [-INF, 0, INF],
    [np.nan, 0, 0],
    [1e38, -1e38, 0],
]


def torch_ce(x, t, ignore_index=-100):
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(xt, torch.tensor(t), ignore_index=ignore_index)
    loss.backward()
    return loss.item(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row, target", list(itertools.product(range(len(ROWS)), (0, 1, 2))))
def test_single_rows_match_torch(row, target, dtype):
    x = np.array([ROWS[row], [0.5, -1.0, 2.0]], dtype=dtype)
    t = np.array([target, 2])
    loss, d = cross_entropy(x, t)
    want_loss, want_d = torch_ce(x, t)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(d, want_d, rtol=1e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spatial_logits_with_infinities_and_ignored_pixels_match_torch(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    t = rng.integers(0, 3, (2, 4, 5))
    x[0, 1, 0, 0] = INF  # an infinite logit on an ignored pixel: no effect on the loss
    t[0, 0, 0] = -100
    x[1, :, 2, 3] = [-INF, 0, 1]  # -inf on a class that is not the target: fine
    t[1, 2, 3] = 2
    loss, d = cross_entropy(x, t)
    want_loss, want_d = torch_ce(x, t)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    # the one difference, deliberate: an ignored pixel gets exactly zero gradient (it is masked
    # out), where torch multiplies its NaN softmax gradient by zero and keeps the NaN
    assert np.isnan(want_d[0, :, 0, 0]).any()
    np.testing.assert_array_equal(d[0, :, 0, 0], 0)
    want_d[0, :, 0, 0] = 0
    np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-7)
    x[1, 0, 1, 1], t[1, 1, 1] = INF, 1  # +inf on a counted pixel: NaN, as torch
    loss, d = cross_entropy(x, t)
    want_loss, want_d = torch_ce(x, t)
    np.testing.assert_allclose(loss, want_loss, equal_nan=True)
    assert np.isnan(loss)
    want_d[0, :, 0, 0] = 0
    np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-7, equal_nan=True)
