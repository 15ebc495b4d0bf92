"""cross_entropy against a float64 loop, PyTorch (loss and autograd grad), finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore.functional import cross_entropy
from tests.reference import numerical_grad

torch.set_num_threads(1)


def cross_entropy_loop(logits, targets, ignore_index):
    """Mean of -log softmax(logits)[target] over the counted targets, by loops (float64)."""
    x = np.moveaxis(np.asarray(logits, np.float64), 1, -1)  # (N, ..., K)
    total, count = 0.0, 0
    for idx in np.ndindex(np.shape(targets)):
        t = int(targets[idx])
        if t == ignore_index:
            continue
        row = [float(v) for v in x[idx]]
        m = max(row)
        total += m + math.log(sum(math.exp(v - m) for v in row)) - row[t]
        count += 1
    return total / count if count else float("nan")


def torch_cross_entropy(logits, targets, ignore_index):
    xt = torch.tensor(np.asarray(logits, np.float64), requires_grad=True)
    loss = torch.nn.functional.cross_entropy(
        xt, torch.tensor(np.asarray(targets, np.int64)), ignore_index=ignore_index
    )
    loss.backward()
    return float(loss.detach()), xt.grad.numpy()


def case(shape, dtype, ignore_index, frac_ignored, seed):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    tshape = (shape[0],) + shape[2:]
    targets = rng.integers(0, shape[1], tshape)
    targets[rng.random(tshape) < frac_ignored] = ignore_index
    return logits, targets


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(6, 5), (1, 1), (2, 4, 3, 5), (2, 3, 20, 30), (1, 21, 1, 300)], ids=str
)
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_matches_torch(shape, dtype, ignore_index):
    logits, targets = case(shape, dtype, ignore_index, 0.3, seed=sum(shape))
    if not (targets != ignore_index).any():
        targets.reshape(-1)[0] = 0 if ignore_index != 0 else 1
    loss, d = cross_entropy(logits, targets, ignore_index)
    assert isinstance(loss, float) and d.dtype == dtype and d.shape == logits.shape
    lt, dt = torch_cross_entropy(logits, targets, ignore_index)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert loss == pytest.approx(lt, rel=rtol, abs=rtol)
    np.testing.assert_allclose(d, dt, rtol=rtol * 10, atol=rtol * 0.1)
    # ignored pixels: exactly zero gradient
    mask = np.expand_dims(targets == ignore_index, 1) & np.ones_like(d, dtype=bool)
    assert (d[mask] == 0).all()


def test_loop_reference_and_finite_differences():
    logits, targets = case((2, 4, 3, 2), np.float64, -100, 0.25, seed=4)
    loss, d = cross_entropy(logits, targets)
    assert loss == pytest.approx(cross_entropy_loop(logits, targets, -100), rel=1e-13)
    g = numerical_grad(lambda z: cross_entropy(z, targets)[0], logits)
    np.testing.assert_allclose(d, g, rtol=1e-6, atol=1e-9)


def test_all_ignored_gives_nan_like_torch_and_zero_gradient():
    logits = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    targets = np.full((2, 2, 2), 7)
    loss, d = cross_entropy(logits, targets, ignore_index=7)
    assert math.isnan(loss) and math.isnan(torch_cross_entropy(logits, targets, 7)[0])
    assert d.dtype == np.float32 and d.shape == logits.shape and (d == 0).all()


def test_uint8_targets_with_ignore_255_and_layouts():
    logits, targets = case((2, 5, 4, 6), np.float32, 255, 0.3, seed=1)
    t8 = targets.astype(np.uint8)
    nc = np.ascontiguousarray(logits.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    loss, d = cross_entropy(nc, t8, ignore_index=255)
    lt, dt = torch_cross_entropy(logits, targets, 255)
    assert loss == pytest.approx(lt, rel=1e-6)
    np.testing.assert_allclose(d, dt, rtol=1e-5, atol=1e-7)
    loss_t, _ = cross_entropy(torch.tensor(logits), torch.tensor(targets), ignore_index=255)
    assert loss_t == pytest.approx(loss, rel=1e-7)


def test_large_logits_are_stable():
    logits = np.array([[1000.0, -1000.0, 0.0], [-5e4, -5e4 + 3, -5e4]], np.float32)
    targets = np.array([1, 1])
    loss, d = cross_entropy(logits, targets)
    lt, dt = torch_cross_entropy(logits, targets, -100)
    assert math.isfinite(loss) and loss == pytest.approx(lt, rel=1e-6)
    np.testing.assert_allclose(d, dt, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 7),
    spatial=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 6))),
    frac=st.sampled_from([0.0, 0.5, 1.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_hypothesis(n, k, spatial, frac, dtype):
    shape = (n, k) + (spatial or ())
    logits, targets = case(shape, dtype, -1, frac, seed=n * 100 + k)
    loss, d = cross_entropy(logits, targets, ignore_index=-1)
    lt, dt = torch_cross_entropy(logits, targets, -1)
    if math.isnan(lt):
        assert math.isnan(loss) and (d == 0).all()
    else:
        assert loss == pytest.approx(lt, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(d, dt, rtol=1e-5, atol=1e-7)


L2 = np.zeros((2, 3), np.float32)
L4 = np.zeros((2, 3, 4, 5), np.float32)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: cross_entropy(L2, np.array([0.0, 1.0])), TypeError, "targets must be an integer"),
        (
            lambda: cross_entropy(L2, np.array([True, False])),
            TypeError,
            "targets must be an integer",
        ),
        (
            lambda: cross_entropy(L2, np.array([0, 1, 2])),
            ValueError,
            r"targets must have shape \(2,\)",
        ),
        (lambda: cross_entropy(L4, np.zeros((2, 4), int)), ValueError, r"shape \(2, 4, 5\)"),
        (
            lambda: cross_entropy(L2, np.array([0, 3])),
            ValueError,
            r"in \[0, 3\).*got 3 at index \(1,\)",
        ),
        (lambda: cross_entropy(L2, np.array([-1, 0])), ValueError, "got -1 at index"),
        (
            lambda: cross_entropy(L2, np.array([0, 2**64 - 1], np.uint64)),
            ValueError,
            r"in \[0, 3\)",
        ),
        (
            lambda: cross_entropy(L2[0], np.array([0])),
            ValueError,
            r"logits must have shape \(N, K\)",
        ),
        (
            lambda: cross_entropy(L2, np.array([0, 1]), ignore_index=1.5),
            TypeError,
            "ignore_index must be an int",
        ),
        (
            lambda: cross_entropy(L2, np.array([0, 1]), ignore_index=2**70),
            ValueError,
            "fit in int64",
        ),
        (
            lambda: cross_entropy(L2.astype(np.int32), np.array([0, 1])),
            TypeError,
            "logits must be float32",
        ),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
