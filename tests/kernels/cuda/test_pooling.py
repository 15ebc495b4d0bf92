"""CUDA pooling against the Cython twins (simulator): values, indices and gradients, exactly.

Every kernel visits taps and sums in the CPU twin's order, so results are compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnncore.functional as F
from cnncore_kernels import _pooling
from cnncore_kernels.cuda import pooling as G
from tests.kernels.cuda.sim import dev, host, launch_config

# (shape, kernel, stride, padding, dilation): overlapping windows (stride < kernel), padding,
# dilation, odd sizes
CASES = [
    ((2, 3, 7, 6), (2, 2), (2, 2), (0, 0), (1, 1)),
    ((1, 2, 7, 7), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 1, 6, 7), (3, 2), (2, 1), (1, 1), (2, 2)),
    ((1, 2, 5, 7), (2, 3), (1, 2), (0, 1), (2, 1)),
]
IDS = ["2x2/2", "3x3/1-pad", "dilated", "mixed"]


def tricky(shape, seed=0):
    """Small integers (many ties), a NaN, -inf and +inf."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(np.float32)
    x.flat[3] = np.nan
    x.flat[-2] = -np.inf
    x.flat[len(x.flat) // 2] = np.inf
    return x


def same(got, expect):
    np.testing.assert_array_equal(host(got), expect)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool_forward_backward(launch, case):
    shape, k, s, p, d = case
    x = tricky(shape)
    y, idx = G.max_pool2d(dev(x), k, s, p, d)
    ey, eidx = _pooling.max_pool2d(x, k, s, p, d)
    same(y, ey)
    same(idx, eidx)
    assert idx.dtype == np.int64
    same(G.max_pool2d_values(dev(x), k, s, p, d), ey)
    dy = np.random.default_rng(1).standard_normal(ey.shape).astype(np.float32)
    same(
        G.max_pool2d_backward(dev(dy), dev(eidx), shape),
        _pooling.max_pool2d_backward(dy, eidx, shape),
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_forward_backward(small_launch, case, include_pad):
    shape, k, s, p, d = case
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    y = G.avg_pool2d(dev(x), k, s, p, d, include_pad)
    ey = _pooling.avg_pool2d(x, k, s, p, d, include_pad)
    same(y, ey)
    dy = np.random.default_rng(3).standard_normal(ey.shape).astype(np.float32)
    dx = G.avg_pool2d_backward(dev(dy), shape, k, s, p, d, include_pad)
    same(dx, _pooling.avg_pool2d_backward(dy, shape, k, s, p, d, include_pad))


def test_max_pool_backward_with_arbitrary_indices(small_launch):
    """The gather derives its candidate windows from the indices, so any in-range indices work:
    repeated picks, picks far from any window, a whole plane choosing one element."""
    rng = np.random.default_rng(4)
    shape, out = (2, 2, 5, 6), (2, 2, 3, 4)
    idx = rng.integers(0, 30, size=out).astype(np.int64)
    idx[1, 1] = 7
    dy = rng.standard_normal(out).astype(np.float32)
    same(
        G.max_pool2d_backward(dev(dy), dev(idx), shape),
        _pooling.max_pool2d_backward(dy, idx, shape),
    )


@given(
    n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)), pad=st.booleans(), seed=st.integers(0, 9),
)  # fmt: skip
@settings(max_examples=12, deadline=None)
def test_max_pool_random_geometry(n, c, h, w, k, s, d, pad, seed):
    p = (k[0] // 2, k[1] // 2) if pad else (0, 0)
    if any(d[a] * (k[a] - 1) + 1 > (h, w)[a] + 2 * p[a] for a in range(2)):
        return
    x = tricky((n, c, h, w), seed) if n * c * h * w > 4 else np.zeros((n, c, h, w), np.float32)
    try:  # geometries whose windows can lie in the padding are refused by the public function
        ey, eidx = F.max_pool2d(x, k, s, p, d)
    except ValueError:
        return
    with launch_config(threads=16, max_blocks=2):
        y, idx = G.max_pool2d(dev(x), k, s, p, d)
        same(y, ey)
        same(idx, eidx)
        dy = np.random.default_rng(seed).standard_normal(ey.shape).astype(np.float32)
        dx = G.max_pool2d_backward(dev(dy), dev(eidx), x.shape)
    edx = _pooling.max_pool2d_backward(dy, eidx, x.shape)
    same(dx, edx)


def test_max_pool_backward_checked_twins_agree(small_launch):
    # the GPU twin checks the indices first (a device pass), the CPU twin as it scatters: the
    # same first offending (flat position, value), and the same dx when all are in range
    x = tricky((2, 3, 6, 5), seed=4)
    y, idx = _pooling.max_pool2d(x, (2, 2), (1, 1), (0, 0), (1, 1))
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    dx, bad = G.max_pool2d_backward_checked(dev(dy), dev(idx), x.shape)
    edx, ebad = _pooling.max_pool2d_backward_checked(dy, idx, x.shape)
    assert bad is None and ebad is None
    same(dx, edx)
    wrong = idx.copy()
    wrong[1, 0, 2, 3] = 30
    wrong[1, 2, 0, 0] = -1
    dx, bad = G.max_pool2d_backward_checked(dev(dy), dev(wrong), x.shape)
    assert dx is None and bad == (3 * 20 + 2 * 4 + 3, 30)
    assert _pooling.max_pool2d_backward_checked(dy, wrong, x.shape)[1] == bad


def test_max_pool_default_launch():
    """256 threads per block, one thread per element, a partial last block (300 outputs)."""
    x = tricky((2, 3, 10, 20), seed=5)
    y, idx = G.max_pool2d(dev(x), (2, 2), (1, 2), (1, 0), (1, 1))
    ey, eidx = _pooling.max_pool2d(x, (2, 2), (1, 2), (1, 0), (1, 1))
    assert ey.size == 2 * 3 * 11 * 10
    same(y, ey)
    same(idx, eidx)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_channel_max_pool(launch, k):
    x = tricky((2, 3 * k, 3, 4), seed=6)
    y, idx = G.channel_max_pool(dev(x), k)
    ey, eidx = _pooling.channel_max_pool(x, k)
    same(y, ey)
    same(idx, eidx)
    dy = np.random.default_rng(7).standard_normal(ey.shape).astype(np.float32)
    dx = G.channel_max_pool_backward(dev(dy), dev(eidx), x.shape)
    same(dx, _pooling.channel_max_pool_backward(dy, eidx, x.shape))


def test_global_avg_pool(launch):
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(
        host(G.global_avg_pool2d(dev(x))), _pooling.global_avg_pool2d(x), rtol=1e-6, atol=1e-7
    )  # float32 tree sum vs float64 sum
    dy = np.random.default_rng(9).standard_normal((2, 3, 1, 1)).astype(np.float32)
    same(
        G.global_avg_pool2d_backward(dev(dy), x.shape),
        _pooling.global_avg_pool2d_backward(dy, x.shape),
    )


def test_dispatch_through_cnncore_functional(small_launch):
    """cnncore.functional pooling on device arrays runs the CUDA twins, returns device arrays."""
    x = tricky((2, 2, 6, 5), seed=10)
    y, idx = F.max_pool2d(dev(x), 3, stride=2, padding=1)
    ey, eidx = F.max_pool2d(x, 3, stride=2, padding=1)
    same(y, ey)
    same(idx, eidx)
    dy = np.random.default_rng(11).standard_normal(ey.shape).astype(np.float32)
    same(F.max_pool2d_backward(dev(dy), idx, x.shape), F.max_pool2d_backward(dy, eidx, x.shape))
    same(F.avg_pool2d(dev(x), 2, padding=1), F.avg_pool2d(x, 2, padding=1))
    same(F.max_pool2d_values(dev(x), 2), F.max_pool2d_values(x, 2))
