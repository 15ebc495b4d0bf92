"""The fused Winograd backward for few input channels (``winograd.conv2d_backward_fused``: dx,
dweight and dbias as the adjoint of the forward's tiles) against float64 PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from cnncore.functional import conv2d_backward
from cnncore_kernels import _winograd
from cnncore_kernels import winograd as wg

torch.set_num_threads(1)


def _case(N, C, H, W, K, r, p, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, r, r)).astype(dtype)
    Ho = H + 2 * p[0] - d[0] * (r - 1)
    Wo = W + 2 * p[1] - d[1] * (r - 1)
    dy = rng.standard_normal((N, K, Ho, Wo)).astype(dtype)
    return x, w, dy


def _torch_grads(x, w, dy, p, d):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    bt = torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt, bt, 1, p, d).backward(torch.tensor(dy, dtype=torch.float64))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _check(got, want, dtype, tile):
    scale = 10 * wg.ERROR_BOUND[tile] if dtype == np.float32 else 1e-12
    for g, ref in zip(got, want, strict=True):
        assert g.dtype == dtype and g.shape == ref.shape
        assert np.linalg.norm(g - ref) <= scale * np.linalg.norm(ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", sorted(wg.TILES))
@pytest.mark.parametrize("C", [1, 2, 3, 5, 8, 9])
def test_every_tile_and_channel_count_matches_torch(dtype, tile, C):
    # the products' code unrolled for 1-8 channels (a loop beyond); F(4,3) and F(4,5) with the
    # specialised transforms, the other tiles with the generic ones; filters not a multiple of
    # the four per call
    m, r, _ = wg.TILES[tile]
    x, w, dy = _case(2, C, 13, 14, C + 2, r, (2, 1), (1, 1), dtype, seed=C)
    got = wg.conv2d_backward_fused(dy, x, w, (2, 1), (1, 1), tile)
    _check(got, _torch_grads(x, w, dy, (2, 1), (1, 1)), dtype, tile)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,K,r,p,d",
    [
        ((3, 2, 61, 47), 5, 3, (2, 4), (3, 2)),  # several blocks per image, both phases
        ((2, 3, 40, 70), 6, 5, (2, 2), (1, 1)),  # rows of eight 4x4 dy tiles inside the map
        ((1, 2, 44, 70), 5, 3, (2, 2), (2, 1)),  # the same on every other row (row dilation 2)
        ((1, 3, 150, 9), 4, 5, (0, 2), (2, 1)),  # one narrow image: many blocks of whole rows
        ((2, 1, 30, 30), 3, 5, (6, 7), (4, 4)),  # padding beyond the kernel's reach
        ((4, 3, 5, 6), 7, 3, (1, 1), (1, 1)),  # maps smaller than a tile
    ],
)
def test_blocks_phases_and_edges_match_torch(dtype, shape, K, r, p, d):
    # the input gradient adds overlapping tiles onto dx: blocks of whole tile rows run in two
    # phases so that no two threads add onto the same row; repeated calls are bit-identical
    x, w, dy = _case(*shape, K, r, p, d, dtype, seed=7)
    tile = wg.DEFAULT_TILE[r]
    got = wg.conv2d_backward_fused(dy, x, w, p, d, tile)
    _check(got, _torch_grads(x, w, dy, p, d), dtype, tile)
    for a, b in zip(got, wg.conv2d_backward_fused(dy, x, w, p, d, tile), strict=True):
        np.testing.assert_array_equal(a, b)


@given(
    N=st.integers(1, 3),
    C=st.integers(1, 4),
    H=st.integers(1, 30),
    W=st.integers(1, 75),
    K=st.integers(1, 6),
    tile=st.sampled_from(["F(4,3)", "F(4,5)", "F(2,3)"]),
    p=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 2)),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_padding_and_dilation_match_torch(N, C, H, W, K, tile, p, d, dtype, seed):
    # rows of tiles whose overlapping rows are summed before they are added onto dx (F(4,5)),
    # cut at both edges of the map, by chunks and by images; runs of eight dy tiles (maps of
    # 32 columns and more); blocks in two phases; every gradient against float64 PyTorch
    r = wg.TILES[tile][1]
    Ho, Wo = H + 2 * p[0] - d[0] * (r - 1), W + 2 * p[1] - d[1] * (r - 1)
    assume(Ho >= 1 and Wo >= 1)
    x, w, dy = _case(N, C, H, W, K, r, p, d, dtype, seed=seed)
    got = wg.conv2d_backward_fused(dy, x, w, p, d, tile)
    _check(got, _torch_grads(x, w, dy, p, d), dtype, tile)


def test_each_gradient_alone_equals_the_full_call():
    x, w, dy = _case(3, 3, 21, 19, 6, 5, (2, 2), (1, 1), np.float32)
    full = wg.conv2d_backward_fused(dy, x, w, (2, 2), (1, 1), "F(4,5)")
    for need in itertools.product((True, False), repeat=3):
        got = wg.conv2d_backward_fused(dy, x, w, (2, 2), (1, 1), "F(4,5)", *need)
        for g, f, n in zip(got, full, need, strict=True):
            if n:
                np.testing.assert_array_equal(g, f)
            else:
                assert g is None


@given(
    n_out=st.integers(1, 300),
    m=st.sampled_from([2, 3, 4, 6]),
    r=st.sampled_from([3, 5]),
    d=st.integers(1, 9),
    n_cols=st.integers(1, 100),
)
def test_rows_per_block_keep_blocks_two_apart_on_separate_input_rows(n_out, m, r, d, n_cols):
    oh0 = wg.tile_origins(n_out, m, d)
    alpha = m + r - 1
    R = wg.backward_rows_per_block(oh0, alpha, d, n_cols)
    n = len(oh0)
    assert 1 <= R <= n
    assert R * n_cols >= wg.FUSED_BACKWARD_BLOCK_TILES or R == n
    starts = list(range(0, n, R))
    for b in range(len(starts) - 2):
        last_row = oh0[starts[b + 1] - 1] + (alpha - 1) * d  # block b's last input row
        assert last_row < oh0[starts[b + 2]]


@pytest.mark.parametrize("tile", sorted(wg.TILES))
@pytest.mark.parametrize("K", [64, 512, 2048])
def test_float32_error_within_the_tile_bound(tile, K):
    # dx sums over the K filters in the transformed domain (64 at a time, then their totals),
    # dweight over the tiles
    m, r, _ = wg.TILES[tile]
    x, w, dy = _case(1, 3, 12, 12, K, r, (1, 1), (1, 1), np.float64, seed=K)
    want = _torch_grads(x, w, dy, (1, 1), (1, 1))
    f32 = (a.astype(np.float32) for a in (dy, x, w))
    got = wg.conv2d_backward_fused(*f32, (1, 1), (1, 1), tile)
    errs = [np.linalg.norm(g - e) / np.linalg.norm(e) for g, e in zip(got, want, strict=True)]
    assert max(errs) < wg.ERROR_BOUND[tile], (tile, K, errs)


def test_public_backward_runs_it_for_few_channels():
    x, w, dy = _case(2, 4, 11, 12, 5, 3, (1, 1), (1, 1), np.float32)
    got = conv2d_backward(dy, x, w, 1, 1, 1, algorithm="winograd")
    for a, b in zip(got, wg.conv2d_backward_fused(dy, x, w, (1, 1), (1, 1), "F(4,3)"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_public_backward_sums_dy_for_dbias_alone():
    # dbias alone skips the fused pass (it would transform every tile of dy for a plain sum)
    x, w, dy = _case(2, 3, 11, 12, 5, 3, (1, 1), (1, 1), np.float64)
    full = conv2d_backward(dy, x, w, 1, 1, 1, algorithm="winograd")
    got = conv2d_backward(
        dy, x, w, 1, 1, 1, need_dx=False, need_dweight=False, algorithm="winograd"
    )
    assert got[0] is None and got[1] is None
    np.testing.assert_allclose(got[2], dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(got[2], full[2], rtol=1e-12)


def test_unchecked_kernel_refuses_mismatched_shapes_and_small_scratch():
    x, w, dy = _case(1, 2, 8, 8, 3, 3, (1, 1), (1, 1), np.float64)
    AT, G, BT = wg.tile_matrices("F(4,3)")
    A = np.ascontiguousarray(AT.T)
    U = wg.transform_weight(w, G)
    o = wg.tile_origins(8, 4, 1)
    n = _winograd.fused_backward_scratch_size(2, 3, 6, 8)
    args = (x, dy, U, BT, A, np.ascontiguousarray(BT.T), np.ascontiguousarray(G.T), o, o)
    with pytest.raises(ValueError, match="do not match"):
        _winograd.winograd_backward_fused(
            *args, (1, 1), (1, 1), 1, np.zeros(n), np.zeros((1, 2, 8, 9)), None
        )
    with pytest.raises(ValueError, match="scratch"):
        _winograd.winograd_backward_fused(
            *args, (1, 1), (1, 1), 1, np.zeros(n - 1), np.zeros(x.shape), None
        )
    with pytest.raises(ValueError, match="do not match"):  # the row of ones is checked
        _winograd.winograd_backward_fused(
            *args, (1, 1), (1, 1), 1, np.zeros(n), None, None, np.zeros(3), 2
        )
