"""linear and linear_backward against float64 loops, PyTorch and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore.functional import linear, linear_backward
from tests.reference import numerical_grad

torch.set_num_threads(1)


def linear_loop(x, w, b):
    """y[n, o] = sum_i x[n, i] w[o, i] + b[o], by loops (float64)."""
    N, I = x.shape
    O = w.shape[0]
    y = np.zeros((N, O))
    for n in range(N):
        for o in range(O):
            s = 0.0 if b is None else float(b[o])
            for i in range(I):
                s += float(x[n, i]) * float(w[o, i])
            y[n, o] = s
    return y


def torch_linear(x, w, b, dy):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    bt = None if b is None else torch.tensor(np.asarray(b, np.float64), requires_grad=True)
    yt = torch.nn.functional.linear(xt, wt, bt)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    db = None if bt is None else bt.grad.numpy()
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 9),
    i=st.integers(1, 40),
    o=st.integers(1, 12),
    dtype=st.sampled_from([np.float32, np.float64]),
    has_bias=st.booleans(),
    transposed=st.booleans(),
)
def test_linear_matches_torch_and_loops(n, i, o, dtype, has_bias, transposed):
    rng = np.random.default_rng(n * 1000 + i * 10 + o)
    x = rng.standard_normal((n, i)).astype(dtype)
    if transposed:  # a non-contiguous view with the same values
        x = np.ascontiguousarray(x.T).T
    w = rng.standard_normal((o, i)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if has_bias else None
    dy = rng.standard_normal((n, o)).astype(dtype)
    y = linear(x, w, b)
    dx, dw, db = linear_backward(dy, x, w, need_dbias=has_bias)
    assert y.dtype == dtype and dx.dtype == dtype and dw.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, linear_loop(x, w, b), **tol)
    yt, dxt, dwt, dbt = torch_linear(x, w, b, dy)
    np.testing.assert_allclose(y, yt, **tol)
    np.testing.assert_allclose(dx, dxt, **tol)
    np.testing.assert_allclose(dw, dwt, **tol)
    if has_bias:
        np.testing.assert_allclose(db, dbt, **tol)
    else:
        assert db is None


def test_linear_backward_finite_differences_and_flags():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    dy = rng.standard_normal((3, 4))
    dx, dw, db = linear_backward(dy, x, w)
    np.testing.assert_allclose(
        dx, numerical_grad(lambda z: (linear(z, w, b) * dy).sum(), x), rtol=1e-7
    )
    np.testing.assert_allclose(
        dw, numerical_grad(lambda z: (linear(x, z, b) * dy).sum(), w), rtol=1e-7
    )
    np.testing.assert_allclose(
        db, numerical_grad(lambda z: (linear(x, w, z) * dy).sum(), b), rtol=1e-7
    )
    assert linear_backward(dy, x, w, need_dx=False, need_dweight=False, need_dbias=False) == (
        None,
        None,
        None,
    )
    only_dw = linear_backward(dy, x, w, need_dx=False, need_dbias=False)
    assert only_dw[0] is None and only_dw[2] is None
    np.testing.assert_allclose(only_dw[1], dw, rtol=1e-15)


X = np.zeros((2, 3), np.float32)
Wt = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (
            lambda: linear(X, np.zeros((4, 5), np.float32)),
            ValueError,
            "x has 3 features but weight expects 5",
        ),
        (lambda: linear(X[None], Wt), ValueError, "x must have 2 dimensions"),
        (lambda: linear(X, Wt[0]), ValueError, "weight must have 2 dimensions"),
        (
            lambda: linear(X, Wt.astype(np.float64)),
            TypeError,
            "weight dtype float64 does not match",
        ),
        (
            lambda: linear(X, Wt, np.zeros(3, np.float32)),
            ValueError,
            r"bias must have shape \(4,\)",
        ),
        (
            lambda: linear(X, Wt, np.zeros((4, 1), np.float32)),
            ValueError,
            "bias must have 1 dimensions",
        ),
        (lambda: linear(X.astype(np.int32), Wt), TypeError, "x must be float32 or float64"),
        (
            lambda: linear_backward(np.zeros((2, 5), np.float32), X, Wt),
            ValueError,
            r"dy must have the output shape \(2, 4\)",
        ),
        (lambda: linear_backward(np.zeros((2, 4)), X, Wt), TypeError, "dy dtype float64"),
        (lambda: linear(np.zeros((0, 3), np.float32), Wt), ValueError, "x must not be empty"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
