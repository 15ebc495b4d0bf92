"""CUDA linear layer and softmax cross-entropy against the CPU twins (simulator)."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore_kernels import _loss
from cnncore_kernels import linear as cpu_linear
from cnncore_kernels.cuda import linear as GL
from cnncore_kernels.cuda import loss as GC
from tests.kernels.cuda.sim import GPU_TILES, dev, host, use_tiles


def close(got, expect):
    np.testing.assert_allclose(host(got), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("N, fin, fout", [(1, 1, 1), (3, 7, 5), (9, 4, 10)])
def test_linear_forward_backward(small_launch, N, fin, fout):
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, fin)).astype(np.float32)
    w = rng.standard_normal((fout, fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    dy = rng.standard_normal((N, fout)).astype(np.float32)
    close(GL.linear(dev(x), dev(w), dev(b)), cpu_linear.linear(x, w, b))
    close(GL.linear(dev(x), dev(w), None), cpu_linear.linear(x, w, None))
    for need in [(True, True, True), (False, True, False), (True, False, True)]:
        got = GL.linear_backward(dev(dy), dev(x), dev(w), *need)
        expect = cpu_linear.linear_backward(dy, x, w, *need)
        for flag, g, e in zip(need, got, expect, strict=True):
            assert (g is None) == (not flag)
            if flag:
                close(g, e)


def test_linear_gpu_tiles(monkeypatch):
    use_tiles(monkeypatch, GPU_TILES)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 9)).astype(np.float32), rng.standard_normal((66, 9))
    w = w.astype(np.float32)
    b = rng.standard_normal(66).astype(np.float32)
    close(GL.linear(dev(x), dev(w), dev(b)), cpu_linear.linear(x, w, b))


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("tdtype", [np.int64, np.int32])
def test_cross_entropy(launch, dense, tdtype):
    rng = np.random.default_rng(2)
    shape = (2, 4, 3, 5) if dense else (7, 4)
    logits = (3 * rng.standard_normal(shape)).astype(np.float32)
    tshape = (shape[0],) + shape[2:]
    t = rng.integers(0, 4, size=tshape).astype(np.int64)
    t.flat[::3] = -100  # the error mask: ignored positions
    loss, d = GC.cross_entropy(dev(logits), dev(t.astype(tdtype)), -100)
    eloss, ed = _loss.cross_entropy(logits, t, -100)
    assert isinstance(loss, float)
    assert loss == pytest.approx(eloss, rel=1e-6)
    close(d, ed)
    assert np.all(host(d).transpose(0, *range(2, len(shape)), 1)[t == -100] == 0)


def test_cross_entropy_nothing_counted(small_launch):
    logits = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    loss, d = GC.cross_entropy(dev(logits), dev(np.full(3, 7, np.int64)), 7)
    assert np.isnan(loss)
    np.testing.assert_array_equal(host(d), np.zeros((3, 4), np.float32))


def test_dispatch_through_cnncore_functional(small_launch):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 5)).astype(np.float32), rng.standard_normal((3, 5))
    w = w.astype(np.float32)
    y = F.linear(dev(x), dev(w))
    assert hasattr(y, "__cuda_ndarray__")
    close(y, F.linear(x, w))
    logits = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    t = rng.integers(0, 3, size=(2, 2, 2))
    loss, d = F.cross_entropy(dev(logits), dev(t.astype(np.int64)))
    eloss, ed = F.cross_entropy(logits, t)
    assert loss == pytest.approx(eloss, rel=1e-6)
    close(d, ed)
