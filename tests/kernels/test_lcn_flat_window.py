"""LCN's gradient where a window is flat (``s = sqrt(E[v*v]) = 0``): PyTorch's autograd of the
very same formula gives NaN there (``d sqrt(q)/dq`` is infinite at ``q = 0``, and ``0 * inf`` is
NaN even where ``max`` picked another branch); cnncore lets nothing flow through ``sqrt`` at
``q = 0``, which is the limit of central differences.  Everywhere else the two gradients agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnncore.functional import local_contrast_norm, local_contrast_norm_backward
from tests.reference import numerical_grad


def torch_lcn(x, size, sigma, threshold, divisor):
    """SPEC.md's LCN written with torch ops (autograd gives its gradient)."""
    N, C, H, W = x.shape
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / (2 * sigma**2))
    g = (g / (C * g.sum())).expand(1, C, size, size)
    pad = ((size - 1) // 2, size // 2, (size - 1) // 2, size // 2)

    def window_sum(z):
        return torch.nn.functional.conv2d(torch.nn.functional.pad(z, pad), g)

    e1 = window_sum(torch.ones_like(x))
    v = x - window_sum(x) / e1
    s = torch.sqrt(window_sum(v * v) / e1)
    if divisor == "mean":
        c = s.mean(dim=(2, 3), keepdim=True)
        den = torch.maximum(torch.maximum(s, c), torch.tensor(threshold, dtype=torch.float64))
    else:
        den = torch.where(s > threshold, s, torch.ones_like(s))
    return v / den


def grads(x, dy, args):
    xt = torch.tensor(x, requires_grad=True)
    torch_lcn(xt, *args).backward(torch.tensor(dy))
    return local_contrast_norm_backward(dy, x, *args), xt.grad.numpy()


@pytest.mark.parametrize("divisor", ["mean", "fixed"])
def test_gradient_agrees_with_torch_away_from_flat_windows(divisor):
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((2, 3, 7, 6))
    args = (3, 1.0, 1e-4, divisor)
    y = torch_lcn(torch.tensor(x), *args).numpy()
    np.testing.assert_allclose(local_contrast_norm(x, *args), y, rtol=1e-10, atol=1e-12)
    ours, theirs = grads(x, dy, args)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("divisor", ["mean", "fixed"])
def test_flat_window_gradient_is_finite_where_torch_gives_nan(divisor):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 8, 8)) * 0.1
    x[0, :, :4, :4] = 0.5  # flat: s == 0 wherever the 3x3 window lies inside this block
    dy = rng.standard_normal(x.shape)
    args = (3, 1.0, 1e-4, divisor)
    ours, theirs = grads(x, dy, args)
    assert np.isnan(theirs).any()  # the autograd of the formula
    assert np.isfinite(ours).all()
    g = numerical_grad(lambda z: float((local_contrast_norm(z, *args) * dy).sum()), x)
    np.testing.assert_allclose(ours, g, rtol=1e-5, atol=1e-6)
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-6, atol=1e-8)


def test_constant_image_gradient():
    # a constant image: v == 0 and s == 0 everywhere, so y == 0 and den is the threshold
    # ("mean") or 1 ("fixed"); the gradient is that of v / den, finite, as central differences say
    x = np.full((1, 2, 5, 5), 0.7)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    for divisor in ("mean", "fixed"):
        args = (3, 1.0, 1e-2, divisor)
        np.testing.assert_allclose(local_contrast_norm(x, *args), 0, atol=1e-12)
        ours = local_contrast_norm_backward(dy, x, *args)
        g = numerical_grad(lambda z, a=args: float((local_contrast_norm(z, *a) * dy).sum()), x)
        np.testing.assert_allclose(ours, g, rtol=1e-5, atol=1e-6)
