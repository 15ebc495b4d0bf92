"""CUDA ReLU, tanh, softmax and log-softmax (forward and backward) against the Cython twins."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore_kernels import _activation
from cnncore_kernels.cuda import activation as G
from tests.kernels.cuda.sim import dev, host


def same(got, expect):
    np.testing.assert_array_equal(host(got), expect)


def close(got, expect):
    np.testing.assert_allclose(host(got), expect, rtol=1e-5, atol=1e-6)


def special(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x.flat[0], x.flat[1], x.flat[2], x.flat[3] = np.nan, 0.0, -0.0, np.inf
    return x


def test_relu_and_tanh(launch):
    x = special((2, 3, 5))
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    same(G.relu(dev(x)), _activation.relu(x))
    same(G.relu_backward(dev(dy), dev(x)), _activation.relu_backward(dy, x))
    close(G.tanh(dev(x)), _activation.tanh(x))
    y = np.tanh(x)
    close(G.tanh_backward(dev(dy), dev(y)), _activation.tanh_backward(dy, y))


@pytest.mark.parametrize("shape", [(3, 7), (2, 4, 3, 5), (5,)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_every_axis(small_launch, shape, log):
    rng = np.random.default_rng(len(shape))
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    fwd = "log_softmax" if log else "softmax"
    for axis in range(len(shape)):
        y = getattr(_activation, fwd)(x, axis)
        close(getattr(G, fwd)(dev(x), axis), y)
        close(getattr(G, fwd + "_backward")(dev(dy), dev(y), axis),
              getattr(_activation, fwd + "_backward")(dy, y, axis))  # fmt: skip


def test_softmax_large_logits_and_nan(launch):
    x = np.array([[1000.0, 999.0, -1000.0], [np.nan, 1.0, 2.0], [3.0, np.nan, 0.0]], np.float32)
    close(G.softmax(dev(x), 1), _activation.softmax(x, 1))
    close(G.log_softmax(dev(x), 1), _activation.log_softmax(x, 1))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf in the simulator
def test_dispatch_through_cnncore_functional(small_launch):
    x = special((2, 3, 4))
    y = F.relu(dev(x))
    assert hasattr(y, "__cuda_ndarray__")
    same(y, F.relu(x))
    close(F.softmax(dev(x[:, :, 1:].copy()), axis=-1), F.softmax(x[:, :, 1:].copy(), axis=-1))


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_mask_is_the_cpu_mask_bit_for_bit(launch, p):
    x = np.random.default_rng(5).standard_normal((3, 5, 7)).astype(np.float32)
    for key in (0, 12345, 2**63 + 2**35 + 7):
        want = F.dropout(x, p, key)
        np.testing.assert_array_equal(host(F.dropout(dev(x), p, key)), want)
        np.testing.assert_array_equal(host(F.dropout_backward(dev(x), p, key)), want)
