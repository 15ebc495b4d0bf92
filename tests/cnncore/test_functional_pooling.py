"""Public pooling functions: finite-difference gradients, argument forms, layouts, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnncore.functional as cf
from tests.reference import numerical_grad

TF = torch.nn.functional


# ----------------------------------------------------------------------------------------------
# finite differences (float64): d/dx of sum(forward(x) * g) against the backward


def _check_grad(forward, backward, x, seed=0):
    g = np.random.default_rng(seed).standard_normal(forward(x).shape)
    numeric = numerical_grad(lambda z: float(np.sum(forward(z) * g)), x)
    np.testing.assert_allclose(backward(g), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize(
    "k, s, p, d", [(3, 1, 1, 1), (2, 2, 1, 1), (3, 1, 1, 2), ((2, 3), (1, 2), (1, 1), (2, 1))]
)
def test_avg_pool_gradient_finite_differences(k, s, p, d, include_pad):
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 7))
    _check_grad(
        lambda z: cf.avg_pool2d(z, k, s, p, d, include_pad),
        lambda g: cf.avg_pool2d_backward(g, x.shape, k, s, p, d, include_pad),
        x,
    )


def test_global_avg_pool_gradient_finite_differences():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    _check_grad(cf.global_avg_pool2d, lambda g: cf.global_avg_pool2d_backward(g, x.shape), x)


@pytest.mark.parametrize(
    "k, s, p, d", [(2, 1, 0, 1), (3, 1, 1, 2), (3, 2, 1, 1), ((2, 3), 1, (1, 0), (3, 1))]
)
def test_max_pool_gradient_finite_differences(k, s, p, d):
    # distinct values at least 0.01 apart: no ties, so eps=1e-6 never changes the argmax
    rng = np.random.default_rng(3)
    shape = (2, 2, 7, 6)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01
    _, idx = cf.max_pool2d(x, k, s, p, d)
    _check_grad(
        lambda z: cf.max_pool2d(z, k, s, p, d)[0],
        lambda g: cf.max_pool2d_backward(g, idx, x.shape),
        x,
    )


def test_channel_max_pool_gradient_finite_differences():
    rng = np.random.default_rng(4)
    shape = (2, 6, 3, 4)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01
    _, idx = cf.channel_max_pool(x, 3)
    _check_grad(
        lambda z: cf.channel_max_pool(z, 3)[0],
        lambda g: cf.channel_max_pool_backward(g, idx, shape),
        x,
    )


# ----------------------------------------------------------------------------------------------
# argument forms and layouts


def test_int_and_pair_arguments_agree():
    x = np.random.default_rng(5).standard_normal((1, 2, 9, 9)).astype(np.float32)
    a = cf.max_pool2d(x, 3, 2, 1, 2)
    b = cf.max_pool2d(x, (3, 3), [2, 2], np.array([1, 1]), (2, 2))
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(
        cf.avg_pool2d(x, 3, 2, 1, 2), cf.avg_pool2d(x, (3, 3), (2, 2), (1, 1), (2, 2))
    )


def test_stride_defaults_to_kernel_size():
    x = np.random.default_rng(6).standard_normal((1, 1, 6, 9))
    np.testing.assert_array_equal(cf.max_pool2d(x, (2, 3))[0], cf.max_pool2d(x, (2, 3), (2, 3))[0])
    np.testing.assert_array_equal(cf.avg_pool2d(x, 3), cf.avg_pool2d(x, 3, 3))
    assert cf.max_pool2d_values(x, 2).shape == (1, 1, 3, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_and_read_only_inputs(dtype):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((2, 3, 10, 12)).astype(dtype)
    views = [base[:, :, ::2, 1::2], base.transpose(0, 1, 3, 2), base[:, ::-1]]
    ro = base.copy()
    ro.setflags(write=False)
    views.append(ro)
    for x in views:
        c = np.ascontiguousarray(x)
        for u, v in zip(cf.max_pool2d(x, 2, 1, 1, 2), cf.max_pool2d(c, 2, 1, 1, 2), strict=True):
            np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(cf.max_pool2d_values(x, 2), cf.max_pool2d_values(c, 2))
        np.testing.assert_array_equal(cf.avg_pool2d(x, 3, 1, 1), cf.avg_pool2d(c, 3, 1, 1))
        np.testing.assert_array_equal(cf.global_avg_pool2d(x), cf.global_avg_pool2d(c))
        if x.shape[1] == 3:
            for u, v in zip(cf.channel_max_pool(x, 3), cf.channel_max_pool(c, 3), strict=True):
                np.testing.assert_array_equal(u, v)
    y, idx = cf.max_pool2d(base, 2)
    dy = np.ones((2, 3, 10, 12), dtype)[:, :, ::2, ::2]  # non-contiguous gradient and indices
    dx = cf.max_pool2d_backward(dy, np.asfortranarray(idx), base.shape)
    np.testing.assert_array_equal(
        dx, cf.max_pool2d_backward(np.ascontiguousarray(dy), idx, base.shape)
    )
    assert dx.sum() == y.size


def test_torch_cpu_tensors_and_small_integer_indices_are_accepted():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    y, idx = cf.max_pool2d(x, 2)
    ty, tidx = TF.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    dy = np.ones_like(y)
    dx = cf.max_pool2d_backward(torch.from_numpy(dy), tidx.to(torch.int32), x.shape)
    np.testing.assert_array_equal(dx, cf.max_pool2d_backward(dy, idx, x.shape))


# ----------------------------------------------------------------------------------------------
# bad input: the type of the error and the argument named in the message

X = np.zeros((1, 2, 6, 6), np.float32)


def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


@pytest.mark.parametrize("fn", [cf.max_pool2d, cf.max_pool2d_values, cf.avg_pool2d])
def test_bad_pool_arguments(fn):
    _raises(ValueError, "x", fn, np.zeros((2, 6, 6), np.float32), 2)
    _raises(ValueError, "x", fn, np.zeros((1, 0, 6, 6), np.float32), 2)
    _raises(TypeError, "x", fn, np.zeros((1, 2, 6, 6), np.int32), 2)
    _raises(TypeError, "x", fn, np.zeros((1, 2, 6, 6), np.float16), 2)
    _raises(ValueError, "kernel_size", fn, X, 0)
    _raises(ValueError, "kernel_size", fn, X, (2, -1))
    _raises(ValueError, "kernel_size", fn, X, (2, 2, 2))
    _raises(TypeError, "kernel_size", fn, X, 2.0)
    _raises(TypeError, "kernel_size", fn, X, True)
    _raises(ValueError, "stride", fn, X, 2, 0)
    _raises(ValueError, "padding", fn, X, 2, 1, -1)
    _raises(ValueError, "padding", fn, X, 3, 1, 2)  # more than half the kernel
    _raises(ValueError, "padding", fn, X, (1, 3), 1, (1, 0))
    _raises(ValueError, "dilation", fn, X, 2, 1, 0, 0)
    _raises(ValueError, "kernel", fn, X, 7)  # larger than the input
    _raises(ValueError, "kernel", fn, X, 3, 1, 0, 3)  # dilated: effective size 7
    # a window entirely in the padding (taps at -1 and 5 of a 5-wide input): nothing to choose
    if fn is not cf.avg_pool2d:
        _raises(ValueError, "padding", fn, np.zeros((1, 1, 5, 5)), 2, 1, 1, 6)


def test_bad_avg_pool_arguments():
    _raises(TypeError, "count_include_pad", cf.avg_pool2d, X, 2, count_include_pad=1)
    # an empty window divides by zero without the padding counted; with it, it averages zeros
    _raises(ValueError, "padding", cf.avg_pool2d, np.ones((1, 1, 5, 5)), 2, 1, 1, 6, False)
    y = cf.avg_pool2d(np.ones((1, 1, 5, 5)), 2, 1, 1, (6, 1), True)
    np.testing.assert_array_equal(y, np.zeros((1, 1, 1, 6)))
    dy = np.zeros((1, 2, 5, 5), np.float32)
    _raises(ValueError, "dy", cf.avg_pool2d_backward, dy, X.shape, 2)
    _raises(ValueError, "input_shape", cf.avg_pool2d_backward, dy, (2, 6, 6), 2)
    _raises(ValueError, "input_shape", cf.avg_pool2d_backward, dy, (1, 2, 0, 6), 2)
    _raises(TypeError, "input_shape", cf.avg_pool2d_backward, dy, (1, 2, 6.0, 6), 2)
    _raises(ValueError, "kernel", cf.avg_pool2d_backward, dy, (1, 2, 3, 3), 4)
    _raises(TypeError, "dy", cf.avg_pool2d_backward, dy.astype(np.int64), X.shape, 2)


def test_bad_max_pool_backward_arguments():
    y, idx = cf.max_pool2d(X, 2)
    dy = np.ones_like(y)
    for bad in (-1, 36):
        wrong = idx.copy()
        wrong[0, 1, 2, 0] = bad
        _raises(ValueError, "indices", cf.max_pool2d_backward, dy, wrong, X.shape)
    huge = idx.astype(np.uint64)
    huge[0, 0, 0, 0] = 2**63 + 5
    _raises(ValueError, "indices", cf.max_pool2d_backward, dy, huge, X.shape)
    _raises(TypeError, "indices", cf.max_pool2d_backward, dy, idx.astype(np.float64), X.shape)
    _raises(ValueError, "indices", cf.max_pool2d_backward, dy, idx[:, :, :2], X.shape)
    _raises(ValueError, "dy", cf.max_pool2d_backward, dy, idx, (1, 3, 6, 6))
    _raises(ValueError, "dy", cf.max_pool2d_backward, dy[0], idx, X.shape)
    _raises(ValueError, "input_shape", cf.max_pool2d_backward, dy, idx, (1, 2, 6))
    _raises(TypeError, "input_shape", cf.max_pool2d_backward, dy, idx, 36)
    # indices valid for a smaller plane only: out of range for a 3x3 input
    _raises(ValueError, "indices", cf.max_pool2d_backward, dy, idx, (1, 2, 3, 3))


def test_bad_channel_and_global_pool_arguments():
    _raises(ValueError, "pool_size", cf.channel_max_pool, X, 3)
    _raises(ValueError, "pool_size", cf.channel_max_pool, X, 0)
    _raises(TypeError, "pool_size", cf.channel_max_pool, X, 2.0)
    _raises(ValueError, "x", cf.channel_max_pool, X[0], 2)
    x = np.random.default_rng(8).standard_normal((1, 4, 3, 3))
    y, idx = cf.channel_max_pool(x, 2)
    wrong = idx.copy()
    wrong[0, 1, 0, 0] = 1  # a channel of the first group chosen for the second
    _raises(ValueError, "indices", cf.channel_max_pool_backward, y, wrong, x.shape)
    _raises(ValueError, "dy", cf.channel_max_pool_backward, y, idx, (1, 5, 3, 3))
    _raises(ValueError, "dy", cf.channel_max_pool_backward, y, idx, (1, 4, 3, 4))
    _raises(ValueError, "indices", cf.channel_max_pool_backward, y, idx[:, :1], x.shape)
    _raises(ValueError, "x", cf.global_avg_pool2d, np.zeros((2, 3)))
    _raises(ValueError, "dy", cf.global_avg_pool2d_backward, np.zeros((1, 4, 1, 2)), x.shape)
    _raises(
        ValueError, "input_shape", cf.global_avg_pool2d_backward, np.zeros((1, 4, 1, 1)), (1, 4)
    )
