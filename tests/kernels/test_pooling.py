"""Pooling kernels against float64 loop references and PyTorch: max (values, indices, gradients),
average, channel max (maxout), global average; hypothesis over geometries; ties, NaN, -inf; many
Python threads at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import cnncore.functional as cf
from cnncore_kernels import _pooling
from tests.reference import tol

torch.set_num_threads(1)
TF = torch.nn.functional


# ----------------------------------------------------------------------------------------------
# float64 loop references (deliberately naive: loops over outputs and taps, vectorised over N, C)


def _out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _taps(o, k, s, p, d, size):
    """Input positions of the window of output o along one axis, in window order, in range."""
    return [o * s - p + t * d for t in range(k) if 0 <= o * s - p + t * d < size]


def max_pool_ref(x, k, s, p, d):
    """torch's rule: start at -inf on the first valid tap, replace when greater or NaN."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    Ho, Wo = _out(H, k[0], s[0], p[0], d[0]), _out(W, k[1], s[1], p[1], d[1])
    y = np.empty((N, C, Ho, Wo))
    idx = np.empty((N, C, Ho, Wo), np.int64)
    for oh in range(Ho):
        rows = _taps(oh, k[0], s[0], p[0], d[0], H)
        for ow in range(Wo):
            cols = _taps(ow, k[1], s[1], p[1], d[1], W)
            best = np.full((N, C), -np.inf)
            arg = np.full((N, C), rows[0] * W + cols[0], np.int64)
            for h in rows:
                for w in cols:
                    v = x[:, :, h, w]
                    take = (v > best) | np.isnan(v)
                    best = np.where(take, v, best)
                    arg = np.where(take, h * W + w, arg)
            y[:, :, oh, ow] = best
            idx[:, :, oh, ow] = arg
    return y, idx


def max_pool_backward_ref(dy, idx, shape):
    N, C, H, W = shape
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], idx[n, c].ravel(), np.asarray(dy[n, c], np.float64).ravel())
    return dx.reshape(shape)


def avg_pool_ref(x, k, s, p, d, include_pad):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    Ho, Wo = _out(H, k[0], s[0], p[0], d[0]), _out(W, k[1], s[1], p[1], d[1])
    y = np.empty((N, C, Ho, Wo))
    for oh in range(Ho):
        rows = _taps(oh, k[0], s[0], p[0], d[0], H)
        for ow in range(Wo):
            cols = _taps(ow, k[1], s[1], p[1], d[1], W)
            total = np.zeros((N, C))
            for h in rows:
                for w in cols:
                    total += x[:, :, h, w]
            y[:, :, oh, ow] = total / (k[0] * k[1] if include_pad else len(rows) * len(cols))
    return y


def avg_pool_backward_ref(dy, shape, k, s, p, d, include_pad):
    N, C, H, W = shape
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(shape)
    for oh in range(dy.shape[2]):
        rows = _taps(oh, k[0], s[0], p[0], d[0], H)
        for ow in range(dy.shape[3]):
            cols = _taps(ow, k[1], s[1], p[1], d[1], W)
            div = k[0] * k[1] if include_pad else len(rows) * len(cols)
            for h in rows:
                for w in cols:
                    dx[:, :, h, w] += dy[:, :, oh, ow] / div
    return dx


def channel_max_ref(x, pool):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    y = np.empty((N, C // pool, H, W))
    idx = np.empty((N, C // pool, H, W), np.int64)
    for g in range(C // pool):
        best = x[:, g * pool]
        arg = np.full(best.shape, g * pool, np.int64)
        for c in range(g * pool + 1, (g + 1) * pool):
            v = x[:, c]
            take = (v > best) | np.isnan(v)
            best = np.where(take, v, best)
            arg = np.where(take, c, arg)
        y[:, g], idx[:, g] = best, arg
    return y, idx


def channel_max_backward_ref(dy, idx, shape):
    dx = np.zeros(shape)
    N, G, H, W = dy.shape
    for n in range(N):
        for g in range(G):
            for h in range(H):
                for w in range(W):
                    dx[n, idx[n, g, h, w], h, w] += dy[n, g, h, w]
    return dx


# ----------------------------------------------------------------------------------------------
# geometries


@st.composite
def pool_cases(draw, max_hw=11):
    """A valid pooling geometry (padding <= k//2, kernel inside the padded input, no window
    entirely in the padding) with its input shape and dtype."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    hw = []
    for a in range(2):
        eff = d[a] * (k[a] - 1) + 1
        hw.append(draw(st.integers(max(1, eff - 2 * p[a]), max(max_hw, eff))))
    H, W = hw
    for a, size in enumerate(hw):  # rare: a dilated window that lies entirely in the padding
        n_out = _out(size, k[a], s[a], p[a], d[a])
        assume(all(_taps(o, k[a], s[a], p[a], d[a], size) for o in range(n_out)))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (N, C, H, W), k, s, p, d, dtype


def tricky(shape, dtype, seed):
    """Small integers (many ties) with some NaN, -inf and +inf."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.random(flat.size) < 0.08] = np.nan
    flat[rng.random(flat.size) < 0.08] = -np.inf
    flat[rng.random(flat.size) < 0.04] = np.inf
    return x


def assert_same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------------------------
# max pooling


@given(pool_cases(), st.integers(0, 2**16), st.booleans())
def test_max_pool_matches_reference_and_torch(case, seed, with_specials):
    shape, k, s, p, d, dtype = case
    if with_specials:
        x = tricky(shape, dtype, seed)
    else:
        x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y, idx = cf.max_pool2d(x, k, s, p, d)
    assert y.dtype == dtype and idx.dtype == np.int64
    ey, eidx = max_pool_ref(x, k, s, p, d)
    assert_same(y, ey.astype(dtype))
    assert_same(idx, eidx)
    assert_same(cf.max_pool2d_values(x, k, s, p, d), y)
    ty, tidx = TF.max_pool2d(torch.from_numpy(x), k, s, p, d, return_indices=True)
    assert_same(y, ty.numpy())
    assert_same(idx, tidx.numpy())


@given(pool_cases(), st.integers(0, 2**16))
def test_max_pool_backward_matches_reference_and_torch(case, seed):
    shape, k, s, p, d, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = cf.max_pool2d(x, k, s, p, d)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = cf.max_pool2d_backward(dy, idx, shape)
    assert dx.dtype == dtype and dx.shape == shape
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(dx, max_pool_backward_ref(dy, idx, shape), rtol=rtol, atol=atol)
    xt = torch.from_numpy(x).requires_grad_()
    TF.max_pool2d(xt, k, s, p, d).backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "k, s, p, d",
    [(2, 1, 1, 1), (3, 1, 1, 2), (2, 1, 0, 4), (3, 2, 1, 1), ((3, 2), (1, 3), (1, 1), (2, 1))],
)
def test_max_pool_overlapping_windows_torch(dtype, k, s, p, d):
    """Stride 1 and dilation (the dense-inference case): many windows share each element."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 19, 23)).astype(dtype)
    y, idx = cf.max_pool2d(x, k, s, p, d)
    xt = torch.from_numpy(x).requires_grad_()
    ty, tidx = TF.max_pool2d(xt, k, s, p, d, return_indices=True)
    assert_same(y, ty.detach().numpy())
    assert_same(idx, tidx.numpy())
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(
        cf.max_pool2d_backward(dy, idx, x.shape), xt.grad.numpy(), rtol=rtol, atol=atol
    )


def test_max_pool_ties_pick_first_in_window_order():
    x = np.zeros((1, 1, 4, 4), np.float32)
    y, idx = cf.max_pool2d(x, 2, 1)
    assert_same(idx[0, 0], [[0, 1, 2], [4, 5, 6], [8, 9, 10]])  # each window's top-left
    x = np.array([[[[1, 5, 5], [5, 2, 5]]]], np.float64)
    y, idx = cf.max_pool2d(x, (2, 3))
    assert y[0, 0, 0, 0] == 5 and idx[0, 0, 0, 0] == 1  # row-major window order


def test_max_pool_nan_propagates_with_torchs_index():
    nan = np.nan
    x = np.array([[[[1, nan, 3, nan], [7, 2, nan, 0]]]], np.float32)
    for k in [(1, 4), (2, 2), (2, 4), (1, 2)]:
        y, idx = cf.max_pool2d(x, k, 1)
        ty, tidx = TF.max_pool2d(torch.from_numpy(x), k, 1, return_indices=True)
        assert_same(y, ty.numpy())
        assert_same(idx, tidx.numpy())
    y, idx = cf.max_pool2d(x, (2, 4))
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 6  # the last NaN, as torch
    assert np.isnan(cf.max_pool2d_values(x, (2, 4))[0, 0, 0, 0])


def test_max_pool_all_minus_inf_and_padding():
    x = np.full((1, 2, 5, 6), -np.inf, np.float32)
    for k, s, p, d in [(3, 1, 1, 1), (2, 2, 1, 2), ((3, 1), 1, (1, 0), 1)]:
        y, idx = cf.max_pool2d(x, k, s, p, d)
        ty, tidx = TF.max_pool2d(torch.from_numpy(x), k, s, p, d, return_indices=True)
        assert np.all(y == -np.inf)
        assert_same(idx, tidx.numpy())  # the first valid tap, never the padding


@pytest.mark.parametrize(
    "W, k, s, p, d", [(2100, 3, 1, 1, 2), (2300, 2, 2, 1, 1), (1100, 3, 1, 0, 1)]
)
def test_max_pool_long_rows(W, k, s, p, d):
    """Rows longer than the kernel's chunk of outputs (1024)."""
    x = tricky((1, 2, 4, W), np.float32, 5)
    y, idx = cf.max_pool2d(x, k, s, p, d)
    ty, tidx = TF.max_pool2d(torch.from_numpy(x), k, s, p, d, return_indices=True)
    assert_same(y, ty.numpy())
    assert_same(idx, tidx.numpy())


def test_max_pool_backward_adds_repeated_indices():
    dy = np.arange(1, 7, dtype=np.float64).reshape(1, 1, 2, 3)
    idx = np.array([[[[0, 0, 4], [4, 4, 5]]]])
    dx = cf.max_pool2d_backward(dy, idx, (1, 1, 2, 3))
    assert_same(dx, [[[[3, 0, 0], [0, 3 + 4 + 5, 6]]]])


@given(
    planes=st.tuples(st.integers(1, 3), st.integers(1, 5)), hw=st.integers(1, 40),
    m=st.integers(1, 30), n_bad=st.integers(0, 3), seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)  # fmt: skip
def test_max_pool_backward_checks_each_index_as_it_scatters(planes, hw, m, n_bad, seed, dtype):
    # the CPU kernel checks the indices inside its scatter (no pass of its own): the first
    # offending flat position and its value, as the separate range check reports them, and the
    # same dx as the reference when every index is in range; one thread per plane, so the planes
    # after the first offending one are still scattered (and those before must be)
    from tests.kernels.test_checks import reference

    rng = np.random.default_rng(seed)
    N, C = planes
    shape = (N, C, 1, hw)
    idx = rng.integers(0, hw, size=(N, C, 1, m))
    for _ in range(n_bad):
        idx.flat[rng.integers(idx.size)] = rng.choice([-1, hw, hw + 7, -(2**62), 2**62])
    dy = rng.standard_normal(idx.shape).astype(dtype)
    dx, bad = _pooling.max_pool2d_backward_checked(dy, idx, shape)
    assert bad == reference(idx, hw)
    rtol, atol = tol(dtype)
    if bad is None:
        np.testing.assert_allclose(dx, max_pool_backward_ref(dy, idx, shape), rtol=rtol, atol=atol)
        assert_same(_pooling.max_pool2d_backward(dy, idx, shape), dx)
    else:
        first = bad[0] // m
        want = max_pool_backward_ref(dy, np.where((idx >= 0) & (idx < hw), idx, 0), shape)
        np.testing.assert_allclose(
            dx.reshape(N * C, hw)[:first], want.reshape(N * C, hw)[:first], rtol=rtol, atol=atol
        )
        with pytest.raises(ValueError, match=f"index {bad[1]} at flat position {bad[0]} lies"):
            _pooling.max_pool2d_backward(dy, idx, shape)
    with pytest.raises(ValueError, match="do not match"):
        _pooling.max_pool2d_backward_checked(dy, np.concatenate([idx, idx], axis=3), shape)


# ----------------------------------------------------------------------------------------------
# average pooling


@given(pool_cases(), st.integers(0, 2**16), st.booleans())
def test_avg_pool_matches_reference(case, seed, include_pad):
    shape, k, s, p, d, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = cf.avg_pool2d(x, k, s, p, d, include_pad)
    assert y.dtype == dtype
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(y, avg_pool_ref(x, k, s, p, d, include_pad), rtol=rtol, atol=atol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = cf.avg_pool2d_backward(dy, shape, k, s, p, d, include_pad)
    assert dx.dtype == dtype
    expect = avg_pool_backward_ref(dy, shape, k, s, p, d, include_pad)
    np.testing.assert_allclose(dx, expect, rtol=rtol, atol=atol)


@given(pool_cases(), st.integers(0, 2**16), st.booleans())
def test_avg_pool_matches_torch_without_dilation(case, seed, include_pad):
    shape, k, s, p, _, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = cf.avg_pool2d(x, k, s, p, 1, include_pad)
    xt = torch.from_numpy(x).requires_grad_()
    ty = TF.avg_pool2d(xt, k, s, p, count_include_pad=include_pad)
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx = cf.avg_pool2d_backward(dy, shape, k, s, p, 1, include_pad)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=atol)


def test_avg_pool_dilated_window_takes_every_dth_element():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    y = cf.avg_pool2d(x, 2, 1, 0, 3)  # taps (h, w), (h, w+3), (h+3, w), (h+3, w+3)
    expect = (x[..., :2, :2] + x[..., :2, 3:] + x[..., 3:, :2] + x[..., 3:, 3:]) / 4
    np.testing.assert_allclose(y, expect)


# ----------------------------------------------------------------------------------------------
# channel max pooling and global average pooling


@given(
    st.integers(1, 2),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 6),
    st.integers(1, 6),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**16),
    st.booleans(),
)
def test_channel_max_pool_matches_reference(N, G, pool, H, W, dtype, seed, with_specials):
    shape = (N, G * pool, H, W)
    if with_specials:
        x = tricky(shape, dtype, seed)
    else:
        x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y, idx = cf.channel_max_pool(x, pool)
    assert y.dtype == dtype and idx.dtype == np.int64
    ey, eidx = channel_max_ref(x, pool)
    assert_same(y, ey.astype(dtype))
    assert_same(idx, eidx)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    dx = cf.channel_max_pool_backward(dy, idx, shape)
    assert_same(dx, channel_max_backward_ref(dy, idx, shape).astype(dtype))


def test_channel_max_pool_matches_torch_max():
    x = np.random.default_rng(0).standard_normal((2, 12, 5, 7)).astype(np.float32)
    y, idx = cf.channel_max_pool(x, 3)
    tv, targ = torch.from_numpy(x).reshape(2, 4, 3, 5, 7).max(dim=2)
    assert_same(y, tv.numpy())
    assert_same(idx, targ.numpy() + 3 * np.arange(4).reshape(1, 4, 1, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 1), (1, 1, 37, 41)])
def test_global_avg_pool(dtype, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    y = cf.global_avg_pool2d(x)
    assert y.shape == shape[:2] + (1, 1) and y.dtype == dtype
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(
        y[:, :, 0, 0], x.astype(np.float64).mean((2, 3)), rtol=rtol, atol=atol
    )
    tx = torch.from_numpy(x).requires_grad_()
    ty = TF.adaptive_avg_pool2d(tx, 1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(dy))
    dx = cf.global_avg_pool2d_backward(dy, shape)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, np.broadcast_to(dy / (shape[2] * shape[3]), shape), rtol=rtol)


def test_global_avg_pool_float32_sums_accurately():
    x = np.full((1, 1, 1000, 1000), 0.1, np.float32)
    assert abs(float(cf.global_avg_pool2d(x)[0, 0, 0, 0]) - float(np.float32(0.1))) < 1e-8


# ----------------------------------------------------------------------------------------------
# threads: the kernels release the GIL and keep no shared state


def test_kernels_from_many_python_threads_agree():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 8, 48, 40)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 47, 39)).astype(np.float32)

    def run():
        y, idx = _pooling.max_pool2d(x, (2, 2), (1, 1), (0, 0), (2, 1))
        return (
            y,
            idx,
            _pooling.max_pool2d_values(x, (3, 3), (1, 1), (1, 1), (1, 1)),
            _pooling.max_pool2d_backward(np.ascontiguousarray(dy[:, :, :46]), idx, x.shape),
            _pooling.avg_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), False),
            _pooling.avg_pool2d_backward(dy, x.shape, (2, 2), (1, 1), (0, 0), (1, 1), True),
            _pooling.channel_max_pool(x, 4)[1],
            _pooling.global_avg_pool2d(x),
        )

    expect = run()
    results = [None] * 6
    barrier = threading.Barrier(len(results))

    def worker(i):
        barrier.wait()
        results[i] = [run() for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for per_thread in results:
        for got in per_thread:
            for a, b in zip(got, expect, strict=True):
                assert_same(a, b)
