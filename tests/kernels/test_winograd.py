"""Winograd convolution against float64 loops, PyTorch and finite differences; its error bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnncore.functional import conv2d, conv2d_backward
from cnncore_kernels import _conv
from cnncore_kernels import winograd as wg
from tests.reference import conv2d_ref, numerical_grad, tol

torch.set_num_threads(1)


@pytest.mark.parametrize("tile", sorted(wg.TILES))
def test_cook_toom_matrices_compute_the_1d_correlation(tile):
    m, r, _ = wg.TILES[tile]
    AT, G, BT = wg.tile_matrices(tile)
    assert AT.shape == (m, m + r - 1) and G.shape == (m + r - 1, r) and BT.shape == (m + r - 1,) * 2
    rng = np.random.default_rng(0)
    for _ in range(5):
        g, d = rng.standard_normal(r), rng.standard_normal(m + r - 1)
        want = np.array([g @ d[i : i + r] for i in range(m)])
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, atol=1e-13)


def test_cook_toom_rejects_repeated_points():
    with pytest.raises(ValueError, match="distinct"):
        wg.cook_toom(2, 3, (0, 1, 1))


@pytest.mark.parametrize("n,m,d", [(7, 2, 1), (8, 4, 1), (13, 2, 3), (16, 3, 8), (1, 4, 2)])
def test_tile_origins_cover_every_output_once(n, m, d):
    covered = np.concatenate([o + d * np.arange(m) for o in wg.tile_origins(n, m, d)])
    covered = covered[covered < n]
    assert sorted(covered) == list(range(n))


@st.composite
def winograd_cases(draw):
    r = draw(st.sampled_from([3, 5]))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    H = draw(st.integers(max(1, dh * (r - 1) + 1 - 2 * ph), 14))
    W = draw(st.integers(max(1, dw * (r - 1) + 1 - 2 * pw), 14))
    groups = draw(st.integers(1, 2))
    N, C, K = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return N, C * groups, H, W, K * groups, r, (ph, pw), (dh, dw), groups, dtype


def _make(case, seed=0):
    N, C, H, W, K, r, p, d, groups, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, r, r)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


@given(winograd_cases())
def test_forward_matches_float64_loops(case):
    x, w, b = _make(case)
    p, d, groups = case[6], case[7], case[8]
    y = conv2d(x, w, b, 1, p, d, groups, algorithm="winograd")
    want = conv2d_ref(x, w, b, (1, 1), p, d)
    assert y.dtype == x.dtype and y.shape == want.shape
    rtol, atol = tol(x.dtype)
    np.testing.assert_allclose(y, want, rtol=rtol, atol=atol * (1 + np.abs(want).max()))


@given(winograd_cases(), st.sampled_from(sorted(wg.TILES)))
def test_every_tile_matches_float64_loops(case, tile):
    m, r, _ = wg.TILES[tile]
    case = case[:5] + (r,) + case[6:8] + (1, np.float64)
    x, w, b = _make(case)
    N, C, H, W = x.shape
    p, d = case[6], case[7]
    if H + 2 * p[0] < d[0] * (r - 1) + 1 or W + 2 * p[1] < d[1] * (r - 1) + 1:
        return  # the kernel drawn for the other size does not fit this input
    want = conv2d_ref(x, w, b, (1, 1), p, d)
    y = wg.conv2d_forward(x, w, b, p, d, tile)
    np.testing.assert_allclose(y, want, atol=1e-11 * (1 + np.abs(want).max()))
    dy = np.random.default_rng(1).standard_normal(want.shape)
    dx = wg.conv2d_backward_input(dy, w, (H, W), p, d, tile)
    dw = wg.conv2d_backward_weight(x, dy, w.shape, p, d, tile)
    _, dxt, dwt, _ = _torch(x, w, b, p, d, 1, dy)
    np.testing.assert_allclose(dx, dxt, atol=1e-11 * (1 + np.abs(dxt).max()))
    np.testing.assert_allclose(dw, dwt, atol=1e-11 * (1 + np.abs(dwt).max()))


def _torch(x, w, b, p, d, groups, dy):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    bt = torch.tensor(np.asarray(b, np.float64), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, 1, p, d, groups)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@given(winograd_cases())
def test_forward_backward_match_torch(case):
    x, w, b = _make(case)
    p, d, groups = case[6], case[7], case[8]
    y = conv2d(x, w, b, 1, p, d, groups, algorithm="winograd")
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    grads = conv2d_backward(dy, x, w, 1, p, d, groups, algorithm="winograd")
    want = _torch(x, w, b, p, d, groups, dy)
    rtol, atol = tol(x.dtype)
    for got, ref in zip((y, *grads), want, strict=True):
        assert got.dtype == x.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


@pytest.mark.parametrize("r,p,d", [(3, 1, 1), (3, 0, 2), (5, 2, 1), (5, 3, 2)])
def test_input_gradient_by_finite_differences(r, p, d):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 7, 6))
    w = rng.standard_normal((3, 2, r, r))
    y = conv2d(x, w, None, 1, p, d, algorithm="winograd")
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = conv2d_backward(dy, x, w, 1, p, d, algorithm="winograd", need_dbias=False)

    def loss_x(xv):
        return float((conv2d(xv, w, None, 1, p, d, algorithm="winograd") * dy).sum())

    def loss_w(wv):
        return float((conv2d(x, wv, None, 1, p, d, algorithm="winograd") * dy).sum())

    np.testing.assert_allclose(dx, numerical_grad(loss_x, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw, numerical_grad(loss_w, w), rtol=1e-6, atol=1e-6)


def _relative_errors(tile, C, K, size, seed):
    """float32 Winograd forward, dx and dweight against float64 im2col: relative Frobenius norms
    (standard-normal data, padding 1)."""
    m, r, _ = wg.TILES[tile]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, C, size, size))
    w = rng.standard_normal((K, C, r, r))
    y = _conv.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
    dy = rng.standard_normal(y.shape)
    _, dx, dw = (None, *_conv.conv2d_backward(dy, x, w, (1, 1), (1, 1), (1, 1), True, True, False))[
        :3
    ]
    x32, w32, dy32 = x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32)
    got = (
        wg.conv2d_forward(x32, w32, None, (1, 1), (1, 1), tile),
        wg.conv2d_backward_input(dy32, w32, (size, size), (1, 1), (1, 1), tile),
        wg.conv2d_backward_weight(x32, dy32, w.shape, (1, 1), (1, 1), tile),
    )
    return [
        np.linalg.norm(g - e) / np.linalg.norm(e) for g, e in zip(got, (y, dx, dw), strict=True)
    ]


@pytest.mark.parametrize("tile", sorted(wg.TILES))
@pytest.mark.parametrize("C", [64, 512])
def test_measured_float32_error_within_documented_bound(tile, C):
    errs = _relative_errors(tile, C, 8, 12, seed=C)
    assert max(errs) < wg.ERROR_BOUND[tile], (tile, C, errs)
    # the bound is a measurement, not a loose guess: within 10x of what it bounds
    assert errs[0] > wg.ERROR_BOUND[tile] / 10 or C < 512, (tile, C, errs)


def test_default_tiles_stay_within_1e_5():
    for tile in wg.DEFAULT_TILE.values():
        assert wg.ERROR_BOUND[tile] <= 1e-5
