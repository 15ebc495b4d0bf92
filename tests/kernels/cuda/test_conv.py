"""CUDA im2col / col2im / conv2d (forward and backward) against the Cython twins (simulator)."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore_kernels import _conv
from cnncore_kernels.cuda import conv as G
from tests.kernels.cuda.sim import GPU_TILES, dev, host, launch_config, use_tiles

# (N, C, H, W, K, kernel, stride, padding, dilation): odd sizes, every geometry feature
CASES = [
    (2, 3, 7, 6, 4, (3, 2), (1, 1), (0, 0), (1, 1)),
    (1, 2, 7, 7, 3, (3, 3), (2, 1), (1, 2), (1, 2)),
    (2, 1, 5, 7, 2, (2, 3), (3, 2), (2, 0), (2, 1)),
    (1, 3, 6, 5, 5, (1, 1), (1, 1), (0, 0), (1, 1)),  # pointwise path: one GEMM on x itself
    (2, 2, 5, 4, 3, (1, 1), (2, 1), (1, 0), (1, 1)),  # 1x1 with stride/padding: im2col path
]
IDS = ["3x2", "stride-pad-dil", "big-stride", "pointwise", "1x1-strided"]


def make(case, seed=0):
    N, C, H, W, K, k, s, p, d = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C) + k).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    return x, w, b, s, p, d


def close(got, expect):
    np.testing.assert_allclose(host(got), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES[:3], ids=IDS[:3])
def test_im2col_and_col2im(launch, case):
    x, w, _, s, p, d = make(case)
    k = w.shape[2:]
    col = G.im2col(dev(x[0]), k, s, p, d)
    np.testing.assert_array_equal(host(col), _conv.im2col(x[0], k, s, p, d))
    c = np.random.default_rng(1).standard_normal(col.shape).astype(np.float32)
    got = G.col2im(dev(c), x.shape[1:], k, s, p, d)
    close(got, _conv.col2im(c, x.shape[1:], k, s, p, d))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_forward_and_backward(small_launch, case):
    x, w, b, s, p, d = make(case)
    y = G.conv2d_forward(dev(x), dev(w), dev(b), s, p, d)
    close(y, _conv.conv2d_forward(x, w, b, s, p, d))
    close(
        G.conv2d_forward(dev(x), dev(w), None, s, p, d), _conv.conv2d_forward(x, w, None, s, p, d)
    )
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    got = G.conv2d_backward(dev(dy), dev(x), dev(w), s, p, d)
    for g, e in zip(got, _conv.conv2d_backward(dy, x, w, s, p, d), strict=True):
        close(g, e)


@pytest.mark.parametrize("threads, blocks", [(1, 3), (96, 1)])
def test_conv2d_launch_configurations(threads, blocks):
    x, w, b, s, p, d = make(CASES[1])
    dy = (
        np.random.default_rng(3)
        .standard_normal(_conv.conv2d_forward(x, w, b, s, p, d).shape)
        .astype(np.float32)
    )
    with launch_config(threads=threads, max_blocks=blocks):
        close(
            G.conv2d_forward(dev(x), dev(w), dev(b), s, p, d),
            _conv.conv2d_forward(x, w, b, s, p, d),
        )
        dx, dw, db = G.conv2d_backward(dev(dy), dev(x), dev(w), s, p, d)
    ex, ew, eb = _conv.conv2d_backward(dy, x, w, s, p, d)
    close(dx, ex), close(dw, ew), close(db, eb)


def test_conv2d_with_gpu_tiles_and_default_launch(monkeypatch):
    """The real configuration: 64 x 64 SGEMM tiles, 256 threads per block, uncapped grids."""
    use_tiles(monkeypatch, GPU_TILES)
    x, w, b, s, p, d = make((1, 2, 5, 6, 3, (2, 2), (1, 1), (1, 0), (1, 2)))
    y = G.conv2d_forward(dev(x), dev(w), dev(b), s, p, d)
    close(y, _conv.conv2d_forward(x, w, b, s, p, d))
    dy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    for g, e in zip(G.conv2d_backward(dev(dy), dev(x), dev(w), s, p, d),
                    _conv.conv2d_backward(dy, x, w, s, p, d), strict=True):  # fmt: skip
        close(g, e)


@pytest.mark.parametrize("budget", [1, 40, 300], ids=["row-by-row", "row-chunks", "two-images"])
def test_column_buffer_chunks(small_launch, monkeypatch, budget):
    """Chunks of output rows of one image, and several images per chunk, give the same result."""
    x, w, b, s, p, d = make((3, 2, 6, 5, 3, (2, 2), (1, 2), (1, 1), (2, 1)))
    Ho, Wo = 6, 3
    R, P = 2 * 2 * 2, Ho * Wo
    monkeypatch.setattr(G, "COL_BUDGET", budget)
    plan = list(G._chunks(3, Ho, Wo, R))
    if budget < R * P:
        assert all(nb == 1 for _, nb, _, _ in plan) and len(plan) > 3  # row chunks
    else:
        assert len(plan) == 2 and plan[0][1] == 2  # two images, then one
    y = G.conv2d_forward(dev(x), dev(w), dev(b), s, p, d)
    close(y, _conv.conv2d_forward(x, w, b, s, p, d))
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    for g, e in zip(G.conv2d_backward(dev(dy), dev(x), dev(w), s, p, d),
                    _conv.conv2d_backward(dy, x, w, s, p, d), strict=True):  # fmt: skip
        close(g, e)


@pytest.mark.parametrize("need", [(True, False, False), (False, True, False), (False, False, True)])
def test_backward_computes_only_what_is_asked(small_launch, need):
    x, w, _, s, p, d = make(CASES[0])
    dy = np.random.default_rng(6).standard_normal((2, 4, 5, 5)).astype(np.float32)
    got = G.conv2d_backward(dev(dy), dev(x), dev(w), s, p, d, *need)
    expect = _conv.conv2d_backward(dy, x, w, s, p, d, *need)
    for flag, g, e in zip(need, got, expect, strict=True):
        assert (g is None) == (not flag) == (e is None)
        if flag:
            close(g, e)


def test_non_contiguous_device_input(small_launch):
    x, w, b, s, p, d = make(CASES[0])
    big = np.random.default_rng(7).standard_normal((2, 3, 7, 12)).astype(np.float32)
    view = dev(big)[:, :, :, ::2]  # strided on the device: copied there, never via the host
    close(G.conv2d_forward(view, dev(w), dev(b), s, p, d),
          _conv.conv2d_forward(np.ascontiguousarray(big[..., ::2]), w, b, s, p, d))  # fmt: skip


def test_dispatch_through_cnncore_functional(small_launch):
    """cnncore.functional.conv2d on device arrays runs the CUDA twin and returns a device array."""
    x, w, b, s, p, d = make(CASES[1])
    y = F.conv2d(dev(x), dev(w), dev(b), stride=s, padding=p, dilation=d)
    assert hasattr(y, "__cuda_ndarray__")
    close(y, F.conv2d(x, w, b, stride=s, padding=p, dilation=d))
    dy = np.random.default_rng(8).standard_normal(y.shape).astype(np.float32)
    got = F.conv2d_backward(dev(dy), dev(x), dev(w), stride=s, padding=p, dilation=d)
    expect = F.conv2d_backward(dy, x, w, stride=s, padding=p, dilation=d)
    for g, e in zip(got, expect, strict=True):
        assert hasattr(g, "__cuda_ndarray__")
        close(g, e)


def test_gpu_arrays_must_be_float32():
    x, w, b, *_ = make(CASES[0])
    with pytest.raises(TypeError, match="float32"):
        F.conv2d(dev(x.astype(np.float64)), dev(w.astype(np.float64)))
    with pytest.raises(TypeError, match="GPU"):
        F.conv2d(dev(x), w)


def test_grouped_conv2d_on_device_matches_cpu(small_launch):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 5, 4)).astype(np.float32)
    w = rng.standard_normal((6, 2, 2, 3)).astype(np.float32)  # 2 groups: 2 channels -> 3 filters
    b = rng.standard_normal(6).astype(np.float32)
    args = ((1, 2), (1, 0), (2, 1), 2)
    y = F.conv2d(x, w, b, *args)
    yd = F.conv2d(dev(x), dev(w), dev(b), *args)
    close(yd, y)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(
        F.conv2d_backward(dev(dy), dev(x), dev(w), *args),
        F.conv2d_backward(dy, x, w, *args),
        strict=True,
    ):
        close(got, want)
