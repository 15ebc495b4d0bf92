"""ReLU, tanh, softmax and log-softmax against float64 loops, PyTorch and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore.functional import (
    dropout,
    dropout_backward,
    log_softmax,
    log_softmax_backward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)
from cnncore_kernels import _activation
from tests.reference import numerical_grad

torch.set_num_threads(1)

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def non_contiguous(a):
    """Same values, every other element of a wider array (positive strides, as torch needs)."""
    a = np.asarray(a)
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


# ----------------------------------------------------------------------------------------------
# Float64 loop references


def softmax_loop(x, axis, log=False):
    """Softmax along ``axis`` one 1-D slice at a time, with Python loops (float64)."""
    x = np.asarray(x, np.float64)
    xm = np.moveaxis(x, axis, -1)
    out = np.empty_like(xm)
    for idx in np.ndindex(xm.shape[:-1]):
        row = [float(v) for v in xm[idx]]
        m = max(row)
        s = sum(math.exp(v - m) for v in row)
        for j, v in enumerate(row):
            out[idx + (j,)] = (v - m) - math.log(s) if log else math.exp(v - m) / s
    return np.moveaxis(out, -1, axis)


def torch_grad(fn, x, dy):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    yt = fn(xt)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    return yt.detach().numpy(), xt.grad.numpy()


# ----------------------------------------------------------------------------------------------
# ReLU and tanh


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_tanh_loops_and_torch(dtype):
    rng = np.random.default_rng(0)
    # several parallel blocks (16384 elements each) and a ragged tail
    x = rng.standard_normal((3, 5, 41, 67)).astype(dtype)
    x.reshape(-1)[:7] = 0.0
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = relu(x)
    assert y.dtype == dtype and y.shape == x.shape
    flat = [max(float(v), 0.0) for v in x.reshape(-1)]
    np.testing.assert_array_equal(y.reshape(-1), np.array(flat, dtype))
    dx = relu_backward(dy, x)
    dflat = [
        float(g) if float(v) > 0 else 0.0
        for g, v in zip(dy.reshape(-1), x.reshape(-1), strict=True)
    ]
    np.testing.assert_array_equal(dx.reshape(-1), np.array(dflat, dtype))
    yt, dxt = torch_grad(torch.relu, x, dy)
    np.testing.assert_array_equal(y, yt.astype(dtype))
    np.testing.assert_array_equal(dx, dxt.astype(dtype))

    t = tanh(x)
    assert t.dtype == dtype
    np.testing.assert_allclose(
        t.reshape(-1), [math.tanh(float(v)) for v in x.reshape(-1)], **TOL[dtype]
    )
    dt = tanh_backward(dy, t)
    _, dtt = torch_grad(torch.tanh, x, dy)
    np.testing.assert_allclose(dt, dtt, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_relu_nan_and_layouts():
    x = np.array([[np.nan, -1.0, 2.0], [0.0, -0.0, 3.0]], np.float32)
    y = relu(x)
    assert np.isnan(y[0, 0]) and y[0, 1] == 0 and y[0, 2] == 2
    assert torch.isnan(torch.relu(torch.tensor(x))[0, 0])
    xt = non_contiguous(x.T)
    np.testing.assert_array_equal(relu(xt), relu(np.ascontiguousarray(xt)))
    # 0-d and 1-element arrays
    assert relu(np.array(-2.0)) == 0.0 and relu(np.array([5.0]))[0] == 5.0


def test_elementwise_backward_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the ReLU kink
    dy = rng.standard_normal(x.shape)
    g = numerical_grad(lambda z: float((relu(z) * dy).sum()), x)
    np.testing.assert_allclose(relu_backward(dy, x), g, rtol=1e-7, atol=1e-9)
    g = numerical_grad(lambda z: float((tanh(z) * dy).sum()), x)
    np.testing.assert_allclose(tanh_backward(dy, tanh(x)), g, rtol=1e-7, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Softmax and log-softmax

SHAPES = [
    ((5, 7), 1),
    ((4, 1000), 1),
    ((2, 5, 3, 4), 1),
    ((2, 3, 17, 31), 1),  # inner 527: several column units per image, a ragged last one
    ((3, 4, 5), 2),
    ((3, 4, 5), 0),
    ((3, 4, 5), -1),
    ((6,), 0),
    ((1, 1, 2, 2), 1),  # K = 1
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_softmax_matches_torch(shape, axis, dtype):
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for ours, bwd, ref in (
        (softmax, softmax_backward, torch.softmax),
        (log_softmax, log_softmax_backward, torch.log_softmax),
    ):
        y = ours(x, axis)
        dx = bwd(dy, y, axis)
        assert y.dtype == dtype and dx.dtype == dtype
        yt, dxt = torch_grad(lambda t, r=ref: r(t, axis), x, dy)
        np.testing.assert_allclose(y, yt, **TOL[dtype])
        np.testing.assert_allclose(
            dx, dxt, rtol=TOL[dtype]["rtol"] * 10, atol=TOL[dtype]["atol"] * 10
        )


@pytest.mark.parametrize("shape,axis", [((3, 4), 1), ((2, 3, 2, 2), 1), ((2, 3, 4), 0)])
def test_softmax_loops_and_finite_differences(shape, axis):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 3
    dy = rng.standard_normal(shape)
    for log, fwd, bwd in (
        (False, softmax, softmax_backward),
        (True, log_softmax, log_softmax_backward),
    ):
        y = fwd(x, axis)
        np.testing.assert_allclose(y, softmax_loop(x, axis, log), rtol=1e-13, atol=1e-15)
        g = numerical_grad(lambda z, f=fwd: float((f(z, axis) * dy).sum()), x)
        np.testing.assert_allclose(bwd(dy, y, axis), g, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_large_logits(dtype):
    x = np.array([[1000.0, 999.0, -1000.0], [-3e4, -3e4 + 1, -3e4 + 2]], dtype)
    y = softmax(x, 1)
    ly = log_softmax(x, 1)
    assert np.isfinite(y).all() and np.isfinite(ly).all()
    np.testing.assert_allclose(y, softmax_loop(x, 1), rtol=1e-6)
    np.testing.assert_allclose(ly, softmax_loop(x, 1, log=True), rtol=1e-6)
    assert y[0, 2] == 0.0  # exp(-2000) underflows to exactly 0


def test_softmax_nan_propagates_like_torch():
    x = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]], np.float32)
    y = softmax(x, 1)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    assert torch.isnan(torch.softmax(torch.tensor(x), 1)[0]).all()


def test_float32_exp_is_accurate():
    # the vectorised float32 exp behind softmax: within 2 ulp over the normal range, exact at the
    # edges (0 below FLT_MIN, inf above FLT_MAX, NaN kept)
    x = np.linspace(-104.0, 89.0, 400_001).astype(np.float32)
    e = _activation.exp_f32(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    f32 = np.finfo(np.float32)
    normal = (ref >= f32.tiny) & (ref <= float(f32.max))
    ulp = np.spacing(ref[normal].astype(np.float32)).astype(np.float64)
    assert (np.abs(e[normal] - ref[normal]) <= 2 * ulp).all()
    assert (e[ref < f32.tiny] < f32.tiny).all() and (e[ref < f32.tiny] >= 0).all()
    assert np.isinf(e[ref > float(f32.max)]).all()
    special = _activation.exp_f32(np.array([np.nan, np.inf, -np.inf, 0.0], np.float32))
    assert np.isnan(special[0]) and np.isinf(special[1]) and special[2] == 0 and special[3] == 1


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    axis_seed=st.integers(0, 100),
    scale=st.sampled_from([0.1, 3.0, 50.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    contiguous=st.booleans(),
)
def test_softmax_hypothesis(shape, axis_seed, scale, dtype, contiguous):
    axis = axis_seed % len(shape) - (axis_seed % 2) * len(shape)  # also negative axes
    rng = np.random.default_rng(axis_seed)
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if not contiguous:
        x, dy = non_contiguous(x), non_contiguous(dy)
    for fwd, bwd, ref in (
        (softmax, softmax_backward, torch.softmax),
        (log_softmax, log_softmax_backward, torch.log_softmax),
    ):
        y = fwd(x, axis)
        yt, dxt = torch_grad(lambda t, r=ref: r(t, axis), x, dy)
        np.testing.assert_allclose(y, yt, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
        np.testing.assert_allclose(bwd(dy, y, axis), dxt, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Dropout


def dropout_mask_reference(n, key, p):
    """The mask of ``dropout(x, p, key)`` for a flat array of ``n`` elements, from the definition
    (two rounds of MurmurHash3's fmix32 over the index and the key), in Python integers."""
    M = 0xFFFFFFFF

    def fmix32(h):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & M
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & M
        return h ^ (h >> 16)

    k0, k1, thr = key & M, (key >> 32) & M, math.ceil(p * 2**24)
    keep = []
    for i in range(n):
        h = fmix32(((i & M) * 0x9E3779B9 + k0) & M)
        h = fmix32(h ^ k1 ^ (i >> 32))
        keep.append((h >> 8) >= thr)
    return np.array(keep)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.93, 1.0])
def test_dropout_matches_its_definition_and_backward_reuses_the_mask(dtype, p):
    key = 0x0123456789ABCDEF
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 7)).astype(dtype)
    keep = dropout_mask_reference(x.size, key, p).reshape(x.shape)
    scale = dtype(0.0) if p == 1.0 else dtype(1.0 / (1.0 - p))
    y = dropout(x, p, key)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.where(keep, x * scale, 0))
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(dropout_backward(dy, p, key), np.where(keep, dy * scale, 0))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_keeps_the_right_fraction_independently(p):
    n = 1 << 18
    ones = np.ones(n, np.float32)
    masks = np.stack([dropout(ones, p, key) != 0 for key in (1, 2, 2**40 + 1, 2**63 - 1)])
    sigma = math.sqrt(p * (1 - p) / n)
    for m in masks:
        assert abs(m.mean() - (1 - p)) < 5 * sigma
        # neighbours and keys are uncorrelated (correlation ~ N(0, 1/sqrt(n)))
        assert abs(np.corrcoef(m[:-1], m[1:])[0, 1]) < 5 / math.sqrt(n)
    for a in range(len(masks)):
        for b in range(a):
            assert abs(np.corrcoef(masks[a], masks[b])[0, 1]) < 5 / math.sqrt(n)


def test_dropout_finite_differences():
    x = np.random.default_rng(2).standard_normal((4, 5))
    dy = np.random.default_rng(3).standard_normal(x.shape)
    num = numerical_grad(lambda t: float(np.sum(dropout(t, 0.4, 99) * dy)), x)
    np.testing.assert_allclose(dropout_backward(dy, 0.4, 99), num, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# Bad input

X = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: relu(X.astype(np.int64)), TypeError, "x must be float32 or float64"),
        (lambda: relu(np.zeros((2, 0))), ValueError, "x must not be empty"),
        (lambda: relu_backward(X[:, :2], X), ValueError, r"dy must have the shape of x \(2, 3\)"),
        (lambda: relu_backward(X.astype(np.float64), X), TypeError, "dy dtype float64"),
        (lambda: tanh_backward(X, X.T), ValueError, r"dy must have the shape of y \(3, 2\)"),
        (lambda: softmax(X, 2), ValueError, "axis 2 is out of range for x with 2 dimensions"),
        (lambda: softmax(X, -3), ValueError, "axis -3 is out of range"),
        (lambda: softmax(X, 1.0), TypeError, "axis must be an int"),
        (lambda: log_softmax(np.array(1.0)), ValueError, "at least one dimension"),
        (lambda: softmax_backward(X, X, 5), ValueError, "axis 5 is out of range for y"),
        (lambda: log_softmax_backward(X[:1], X), ValueError, "dy must have the shape of y"),
        (lambda: softmax("abc"), TypeError, "float32 or float64"),
        (lambda: dropout(X, 1.5, 0), ValueError, r"p must be in \[0, 1\], got 1.5"),
        (lambda: dropout(X, "a", 0), TypeError, "p must be a number"),
        (lambda: dropout(X, 0.5, -1), ValueError, "key must be in"),
        (lambda: dropout(X, 0.5, 2**64), ValueError, "key must be in"),
        (lambda: dropout(X, 0.5, 1.0), TypeError, "key must be an int"),
        (lambda: dropout_backward(X.astype(np.int32), 0.5, 1), TypeError, "dy must be float32"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
