"""LRN and LCN against float64 loop/direct references, PyTorch (LRN), finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore.functional import (
    local_contrast_norm,
    local_contrast_norm_backward,
    local_response_norm,
    local_response_norm_backward,
)
from tests.reference import numerical_grad

torch.set_num_threads(1)

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-11, atol=1e-11)}


def non_contiguous(a):
    """Same values, a strided layout (not C-contiguous unless the last two axes are trivial)."""
    out = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    assert not out.flags.c_contiguous or min(a.shape[-2:]) == 1
    return out


# ----------------------------------------------------------------------------------------------
# References


def lrn_loop(x, size, alpha, beta, k):
    """LRN by loops over every output element (float64)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    y = np.empty_like(x)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    acc = 0.0
                    for j in range(c - size // 2, c + (size - 1) // 2 + 1):
                        if 0 <= j < C:
                            acc += x[n, j, h, w] ** 2
                    y[n, c, h, w] = x[n, c, h, w] / (k + alpha / size * acc) ** beta
    return y


def lcn_direct(x, size=9, sigma=2.0, threshold=1e-4, divisor="mean"):
    """SPEC.md's LCN with a direct 2-D window over all channels (float64, not separable)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    i = np.arange(size) - (size - 1) / 2
    g = np.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / (2 * sigma**2))
    g = g / (C * g.sum())
    pb, pa = (size - 1) // 2, size // 2

    def window_sum(z):  # same-size zero-padded filter, summed over channels: (N, H, W)
        zp = np.pad(z, ((0, 0), (0, 0), (pb, pa), (pb, pa)))
        out = np.zeros((N, H, W))
        for a in range(size):
            for b in range(size):
                out += g[a, b] * zp[:, :, a : a + H, b : b + W].sum(axis=1)
        return out

    e1 = window_sum(np.ones_like(x))

    def E(z):
        return (window_sum(z) / e1)[:, None]

    v = x - E(x)
    s = np.sqrt(E(v * v))
    if divisor == "mean":
        c = s.mean(axis=(2, 3), keepdims=True)
        den = np.maximum(np.maximum(s, c), threshold)
    else:
        den = np.where(s > threshold, s, 1.0)
    return v / den


def torch_lrn(x, dy, size, alpha, beta, k):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    return yt.detach().numpy(), xt.grad.numpy()


# ----------------------------------------------------------------------------------------------
# LRN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.3, 0.0])
def test_lrn_matches_torch(dtype, size, beta):
    rng = np.random.default_rng(size)
    x = (3 * rng.standard_normal((2, 7, 4, 5))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    alpha, k = 0.05, 1.5
    y = local_response_norm(x, size, alpha, beta, k)
    dx = local_response_norm_backward(dy, x, size, alpha, beta, k)
    assert y.dtype == dtype and dx.dtype == dtype
    yt, dxt = torch_lrn(x, dy, size, alpha, beta, k)
    np.testing.assert_allclose(y, yt, **TOL[dtype])
    np.testing.assert_allclose(dx, dxt, **TOL[dtype])


@pytest.mark.parametrize("size", [1, 4, 5])
def test_lrn_loop_reference(size):
    x = np.random.default_rng(0).standard_normal((2, 6, 3, 4)) * 4
    args = (size, 0.1, 0.75, 2.0)
    np.testing.assert_allclose(local_response_norm(x, *args), lrn_loop(x, *args), rtol=1e-12)


@pytest.mark.parametrize("size,beta", [(3, 0.75), (4, 0.6), (6, 1.0)])
def test_lrn_backward_finite_differences(size, beta):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((1, 5, 3, 2)) * 2
    dy = rng.standard_normal(x.shape)
    args = (size, 0.3, beta, 1.2)
    dx = local_response_norm_backward(dy, x, *args)
    g = numerical_grad(lambda z: float((local_response_norm(z, *args) * dy).sum()), x)
    np.testing.assert_allclose(dx, g, rtol=1e-6, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 9),
    h=st.integers(1, 5),
    w=st.integers(1, 70),
    size=st.integers(1, 12),
    beta=st.sampled_from([0.75, 0.5, 1.0, 0.9]),
    dtype=st.sampled_from([np.float32, np.float64]),
    contiguous=st.booleans(),
)
def test_lrn_hypothesis(n, c, h, w, size, beta, dtype, contiguous):
    rng = np.random.default_rng(c * 100 + w)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    if not contiguous:
        x, dy = non_contiguous(x), non_contiguous(dy)
    y = local_response_norm(x, size, 1e-2, beta, 1.0)
    dx = local_response_norm_backward(dy, x, size, 1e-2, beta, 1.0)
    yt, dxt = torch_lrn(x, dy, size, 1e-2, beta, 1.0)
    np.testing.assert_allclose(y, yt, **TOL[dtype])
    np.testing.assert_allclose(dx, dxt, **TOL[dtype])


# ----------------------------------------------------------------------------------------------
# LCN


@pytest.mark.parametrize("divisor", ["mean", "fixed"])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 9, 30])
def test_lcn_matches_direct_window(size, divisor):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 3, 9, 11)) + 5 * rng.random((2, 3, 1, 1))
    for sigma in (0.7, 2.0):
        y = local_contrast_norm(x, size, sigma, 1e-4, divisor)
        np.testing.assert_allclose(
            y, lcn_direct(x, size, sigma, 1e-4, divisor), rtol=1e-11, atol=1e-12
        )


def test_lcn_float32_and_layouts():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 13, 10)).astype(np.float32)
    ref = lcn_direct(x, 5, 1.5, 1e-4, "mean")
    y = local_contrast_norm(non_contiguous(x), 5, 1.5)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx32 = local_contrast_norm_backward(non_contiguous(dy), x, 5, 1.5)
    dx64 = local_contrast_norm_backward(dy.astype(np.float64), x.astype(np.float64), 5, 1.5)
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4)


def test_lcn_thresholds_and_flat_regions():
    # A flat image has s = 0 everywhere: "mean" divides by the threshold, "fixed" by 1.
    x = np.full((1, 2, 5, 6), 3.0)
    x[0, 1] = 1.0
    for divisor in ("mean", "fixed"):
        np.testing.assert_allclose(
            local_contrast_norm(x, 3, 1.0, 0.5, divisor),
            lcn_direct(x, 3, 1.0, 0.5, divisor),
            atol=1e-14,
        )
    # A large threshold makes the constant branch win in "mean" for every pixel
    z = np.random.default_rng(0).standard_normal((1, 2, 5, 6))
    np.testing.assert_allclose(
        local_contrast_norm(z, 3, 1.0, 100.0), lcn_direct(z, 3, 1.0, 100.0), rtol=1e-12
    )


def test_lcn_images_are_independent():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 6, 7)) * np.array([1.0, 10.0, 0.1])[:, None, None, None]
    y = local_contrast_norm(x, 4, 1.2)
    for n in range(3):
        np.testing.assert_allclose(
            y[n : n + 1], local_contrast_norm(x[n : n + 1], 4, 1.2), rtol=1e-13
        )


@pytest.mark.parametrize("divisor", ["mean", "fixed"])
@pytest.mark.parametrize("size,shape", [(3, (1, 2, 5, 6)), (4, (2, 3, 4, 5)), (9, (1, 1, 6, 4))])
def test_lcn_backward_finite_differences(size, shape, divisor):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    # thresholds chosen so that every branch occurs: "fixed" with threshold 0.8 sends some pixels
    # to the constant 1; "mean" mixes s and c (random data: s varies around its mean)
    thr = 0.8 if divisor == "fixed" else 1e-4
    args = (size, 1.3, thr, divisor)
    dx = local_contrast_norm_backward(dy, x, *args)
    g = numerical_grad(lambda z: float((local_contrast_norm(z, *args) * dy).sum()), x)
    np.testing.assert_allclose(dx, g, rtol=1e-6, atol=1e-7)
    # the reference forward gives the same finite differences (the backward is of SPEC's formula)
    g_ref = numerical_grad(lambda z: float((lcn_direct(z, *args) * dy).sum()), x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-7)


def test_lcn_backward_threshold_branch_of_mean_and_flat_window():
    # threshold 0.15 above c (about 0.105): pixels with s below it get the constant; a flat block
    # has s == 0 where the 3x3 window lies inside it
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 8, 8)) * 0.1
    x[0, :, :4, :4] = 0.5  # flat block: s == 0 at pixels whose 3x3 window lies inside it
    dy = rng.standard_normal(x.shape)
    for thr, divisor in ((0.15, "mean"), (1e-4, "mean"), (0.05, "fixed")):
        args = (3, 1.0, thr, divisor)
        dx = local_contrast_norm_backward(dy, x, *args)
        g = numerical_grad(lambda z, a=args: float((local_contrast_norm(z, *a) * dy).sum()), x)
        np.testing.assert_allclose(dx, g, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    size=st.integers(1, 12),
    sigma=st.floats(0.3, 4.0),
    divisor=st.sampled_from(["mean", "fixed"]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_lcn_hypothesis(n, c, h, w, size, sigma, divisor, dtype):
    rng = np.random.default_rng(h * 10 + w)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = local_contrast_norm(x, size, sigma, 1e-4, divisor)
    assert y.dtype == dtype
    ref = lcn_direct(x, size, sigma, 1e-4, divisor)
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(y, ref, **tol)
    # the backward is the adjoint of the Jacobian: <dy, J dx> == <J^T dy, dx> (float64)
    x64 = x.astype(np.float64)
    dy = rng.standard_normal(x.shape)
    u = rng.standard_normal(x.shape)
    eps = 1e-6
    jd = (
        local_contrast_norm(x64 + eps * u, size, sigma, 1e-4, divisor)
        - local_contrast_norm(x64 - eps * u, size, sigma, 1e-4, divisor)
    ) / (2 * eps)
    jt = local_contrast_norm_backward(dy, x64, size, sigma, 1e-4, divisor)
    lhs, rhs = float((dy * jd).sum()), float((jt * u).sum())
    assert abs(lhs - rhs) <= 1e-5 * (1 + abs(lhs))


def test_lcn_parallel_sizes():
    # planes of more than one chunk (2048 pixels) and many rows: the chunked parallel passes
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 5, 70, 90)).astype(np.float32)
    ref = lcn_direct(x, 9, 2.0)
    np.testing.assert_allclose(local_contrast_norm(x, 9, 2.0), ref, rtol=1e-4, atol=1e-5)
    # backward: directional derivatives <dy, J u> against <J^T dy, u> (float64)
    x64 = rng.standard_normal((2, 3, 50, 60))
    dy = rng.standard_normal(x64.shape)
    for divisor in ("mean", "fixed"):
        jt = local_contrast_norm_backward(dy, x64, 6, 1.5, 0.9, divisor)
        for _ in range(2):
            u = rng.standard_normal(x64.shape)
            eps = 1e-6
            jd = (
                local_contrast_norm(x64 + eps * u, 6, 1.5, 0.9, divisor)
                - local_contrast_norm(x64 - eps * u, 6, 1.5, 0.9, divisor)
            ) / (2 * eps)
            lhs, rhs = float((dy * jd).sum()), float((jt * u).sum())
            assert abs(lhs - rhs) <= 1e-6 * (1 + abs(lhs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lrn_planes_of_several_chunks(dtype):
    rng = np.random.default_rng(4)
    x = (2 * rng.standard_normal((2, 40, 50, 61))).astype(dtype)  # 3050 pixels per plane
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = local_response_norm(x, 5, 0.01, 0.75, 1.0)
    dx = local_response_norm_backward(dy, x, 5, 0.01, 0.75, 1.0)
    yt, dxt = torch_lrn(x, dy, 5, 0.01, 0.75, 1.0)
    np.testing.assert_allclose(y, yt, **TOL[dtype])
    np.testing.assert_allclose(dx, dxt, **TOL[dtype])


# ----------------------------------------------------------------------------------------------
# Bad input

X = np.zeros((1, 2, 3, 3), np.float32)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: local_response_norm(X[0], 3), ValueError, "x must have 4 dimensions"),
        (lambda: local_response_norm(X.astype(np.int32), 3), TypeError, "float32 or float64"),
        (lambda: local_response_norm(X, 0), ValueError, "size must be >= 1"),
        (lambda: local_response_norm(X, 2.5), TypeError, "size must be an int"),
        (lambda: local_response_norm(X, 3, alpha=-1.0), ValueError, "alpha must be >= 0"),
        (lambda: local_response_norm(X, 3, k=0.0), ValueError, "k must be > 0"),
        (lambda: local_response_norm(X, 3, beta=float("nan")), ValueError, "beta must be finite"),
        (lambda: local_response_norm(X, 3, beta="a"), TypeError, "beta must be a real"),
        (lambda: local_response_norm(np.zeros((1, 0, 3, 3)), 3), ValueError, "must not be empty"),
        (
            lambda: local_response_norm_backward(X[:, :1], X, 3),
            ValueError,
            r"dy must have the shape of x \(1, 2, 3, 3\), got \(1, 1, 3, 3\)",
        ),
        (
            lambda: local_response_norm_backward(X.astype(np.float64), X, 3),
            TypeError,
            "dy dtype float64 does not match x dtype float32",
        ),
        (lambda: local_contrast_norm(X, 0), ValueError, "size must be >= 1"),
        (lambda: local_contrast_norm(X, 3, sigma=0.0), ValueError, "sigma must be > 0"),
        (lambda: local_contrast_norm(X, 3, threshold=0.0), ValueError, "threshold must be > 0"),
        (lambda: local_contrast_norm(X, 3, divisor="max"), ValueError, "divisor must be"),
        (lambda: local_contrast_norm(X, 3, divisor=None), TypeError, "divisor must be"),
        (lambda: local_contrast_norm(X[0, 0]), ValueError, "x must have 4 dimensions"),
        (
            lambda: local_contrast_norm_backward(X[..., :2], X),
            ValueError,
            r"dy must have the shape of x \(1, 2, 3, 3\)",
        ),
        (lambda: local_contrast_norm(X.astype(np.float16)), TypeError, "float32 or float64"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
