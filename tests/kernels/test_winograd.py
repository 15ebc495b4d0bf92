"""Winograd convolution against float64 loops, PyTorch and finite differences; its error bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnncore.functional import conv2d, conv2d_backward
from cnncore_kernels import _conv, _winograd
from cnncore_kernels import winograd as wg
from tests.reference import conv2d_ref, numerical_grad, tol

torch.set_num_threads(1)


@pytest.mark.parametrize("tile", sorted(wg.TILES))
def test_cook_toom_matrices_compute_the_1d_correlation(tile):
    m, r, _ = wg.TILES[tile]
    AT, G, BT = wg.tile_matrices(tile)
    assert AT.shape == (m, m + r - 1) and G.shape == (m + r - 1, r) and BT.shape == (m + r - 1,) * 2
    rng = np.random.default_rng(0)
    for _ in range(5):
        g, d = rng.standard_normal(r), rng.standard_normal(m + r - 1)
        want = np.array([g @ d[i : i + r] for i in range(m)])
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, atol=1e-13)


def test_cook_toom_rejects_repeated_points():
    with pytest.raises(ValueError, match="distinct"):
        wg.cook_toom(2, 3, (0, 1, 1))


@pytest.mark.parametrize("n,m,d", [(7, 2, 1), (8, 4, 1), (13, 2, 3), (16, 3, 8), (1, 4, 2)])
def test_tile_origins_cover_every_output_once(n, m, d):
    covered = np.concatenate([o + d * np.arange(m) for o in wg.tile_origins(n, m, d)])
    covered = covered[covered < n]
    assert sorted(covered) == list(range(n))


@st.composite
def winograd_cases(draw):
    r = draw(st.sampled_from([3, 5]))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    H = draw(st.integers(max(1, dh * (r - 1) + 1 - 2 * ph), 14))
    W = draw(st.integers(max(1, dw * (r - 1) + 1 - 2 * pw), 14))
    groups = draw(st.integers(1, 2))
    N, C, K = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return N, C * groups, H, W, K * groups, r, (ph, pw), (dh, dw), groups, dtype


def _make(case, seed=0):
    N, C, H, W, K, r, p, d, groups, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, r, r)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


@given(winograd_cases())
def test_forward_matches_float64_loops(case):
    x, w, b = _make(case)
    p, d, groups = case[6], case[7], case[8]
    y = conv2d(x, w, b, 1, p, d, groups, algorithm="winograd")
    want = conv2d_ref(x, w, b, (1, 1), p, d)
    assert y.dtype == x.dtype and y.shape == want.shape
    rtol, atol = tol(x.dtype)
    np.testing.assert_allclose(y, want, rtol=rtol, atol=atol * (1 + np.abs(want).max()))


@given(winograd_cases(), st.sampled_from(sorted(wg.TILES)), st.booleans())
def test_every_tile_matches_float64_loops(case, tile, fused):
    # fused: the element-wise stage by vector loops instead of GEMMs (forward and dx)
    m, r, _ = wg.TILES[tile]
    case = case[:5] + (r,) + case[6:8] + (1, np.float64)
    x, w, b = _make(case)
    N, C, H, W = x.shape
    p, d = case[6], case[7]
    if H + 2 * p[0] < d[0] * (r - 1) + 1 or W + 2 * p[1] < d[1] * (r - 1) + 1:
        return  # the kernel drawn for the other size does not fit this input
    want = conv2d_ref(x, w, b, (1, 1), p, d)
    y = wg.conv2d_forward(x, w, b, p, d, tile, fused=fused)
    np.testing.assert_allclose(y, want, atol=1e-11 * (1 + np.abs(want).max()))
    dy = np.random.default_rng(1).standard_normal(want.shape)
    dx = wg.conv2d_backward_input(dy, w, (H, W), p, d, tile, fused=fused)
    dw = wg.conv2d_backward_weight(x, dy, w.shape, p, d, tile)
    _, dxt, dwt, _ = _torch(x, w, b, p, d, 1, dy)
    np.testing.assert_allclose(dx, dxt, atol=1e-11 * (1 + np.abs(dxt).max()))
    np.testing.assert_allclose(dw, dwt, atol=1e-11 * (1 + np.abs(dwt).max()))


def _torch(x, w, b, p, d, groups, dy):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    bt = torch.tensor(np.asarray(b, np.float64), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, 1, p, d, groups)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@given(winograd_cases())
def test_forward_backward_match_torch(case):
    x, w, b = _make(case)
    p, d, groups = case[6], case[7], case[8]
    y = conv2d(x, w, b, 1, p, d, groups, algorithm="winograd")
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    grads = conv2d_backward(dy, x, w, 1, p, d, groups, algorithm="winograd")
    want = _torch(x, w, b, p, d, groups, dy)
    rtol, atol = tol(x.dtype)
    for got, ref in zip((y, *grads), want, strict=True):
        assert got.dtype == x.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


@pytest.mark.parametrize("r,p,d", [(3, 1, 1), (3, 0, 2), (5, 2, 1), (5, 3, 2)])
def test_input_gradient_by_finite_differences(r, p, d):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 7, 6))
    w = rng.standard_normal((3, 2, r, r))
    y = conv2d(x, w, None, 1, p, d, algorithm="winograd")
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = conv2d_backward(dy, x, w, 1, p, d, algorithm="winograd", need_dbias=False)

    def loss_x(xv):
        return float((conv2d(xv, w, None, 1, p, d, algorithm="winograd") * dy).sum())

    def loss_w(wv):
        return float((conv2d(x, wv, None, 1, p, d, algorithm="winograd") * dy).sum())

    np.testing.assert_allclose(dx, numerical_grad(loss_x, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw, numerical_grad(loss_w, w), rtol=1e-6, atol=1e-6)


def _relative_errors(tile, C, K, size, seed):
    """float32 Winograd forward, dx and dweight against float64 im2col: relative Frobenius norms
    (standard-normal data, padding 1)."""
    m, r, _ = wg.TILES[tile]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, C, size, size))
    w = rng.standard_normal((K, C, r, r))
    y = _conv.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
    dy = rng.standard_normal(y.shape)
    _, dx, dw = (None, *_conv.conv2d_backward(dy, x, w, (1, 1), (1, 1), (1, 1), True, True, False))[
        :3
    ]
    x32, w32, dy32 = x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32)
    got = (
        wg.conv2d_forward(x32, w32, None, (1, 1), (1, 1), tile),
        wg.conv2d_backward_input(dy32, w32, (size, size), (1, 1), (1, 1), tile),
        wg.conv2d_backward_weight(x32, dy32, w.shape, (1, 1), (1, 1), tile),
    )
    return [
        np.linalg.norm(g - e) / np.linalg.norm(e) for g, e in zip(got, (y, dx, dw), strict=True)
    ]


@pytest.mark.parametrize("tile", sorted(wg.TILES))
@pytest.mark.parametrize("C", [64, 512, 2048])
def test_measured_float32_error_within_documented_bound(tile, C):
    errs = _relative_errors(tile, C, 8, 12, seed=C)
    assert max(errs) < wg.ERROR_BOUND[tile], (tile, C, errs)
    # the bound is a measurement, not a loose guess: within 10x of what it bounds
    assert errs[0] > wg.ERROR_BOUND[tile] / 10 or C < 512, (tile, C, errs)


def test_default_tiles_stay_within_1e_5():
    for tile in wg.DEFAULT_TILE.values():
        assert wg.ERROR_BOUND[tile] <= 1e-5


def test_specialised_transforms_are_reached_for_the_default_tiles():
    from cnncore_kernels import _winograd

    kind = _winograd.transform_kind
    generic = kind(np.eye(7))
    for tile in sorted(wg.TILES):
        m, r, _ = wg.TILES[tile]
        AT, G, BT = wg.tile_matrices(tile)
        A = AT.T  # the backward's dy transform (weight gradient and fused backward)
        for T in (AT, BT, A):
            assert kind(T, False) == generic
        if tile in wg.DEFAULT_TILE.values():
            assert kind(AT) != generic and kind(BT) != generic and kind(A) != generic
        if tile in ("F(4,3)", "F(2,5)", "F(6,3)", "F(4,5)"):
            assert kind(BT) != generic  # shared with the default tile of the same alpha
    assert kind(wg.tile_matrices("F(4,3)")[2] * 2) == generic  # not the hard-coded matrix


@pytest.mark.parametrize("tile", sorted(wg.TILES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_specialised_and_generic_transforms_agree_over_many_blocks(tile, dtype):
    # 2 x 3 x 23 x 21 outputs over dilation (2, 1): hundreds of tiles, several blocks of 32, with
    # partial chunks, edge tiles (padding) and the tail of the last block
    from cnncore_kernels import _winograd

    m, r, _ = wg.TILES[tile]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 23, 21)).astype(dtype)
    w = rng.standard_normal((7, 5, r, r)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    p, d = (r // 2 + 1, r // 2), (2, 1)
    Ho = 23 + 2 * p[0] - d[0] * (r - 1)
    Wo = 21 + 2 * p[1] - d[1] * (r - 1)
    AT, G, BT = wg.tile_matrices(tile)
    U = wg.transform_weight(w, G)
    oh0, ow0 = wg.tile_origins(Ho, m, d[0]), wg.tile_origins(Wo, m, d[1])
    scratch = np.zeros(_winograd.scratch_size(5, 7, BT.shape[0], 32), dtype)
    # the weight gradient's scratch holds its accumulators too: filled with garbage, which the
    # kernel must clear
    wscratch = np.full(_winograd.scratch_size(5, 7, BT.shape[0], 32, True), 1e30, dtype)
    ys = []
    for specialise in (True, False):
        y = np.full((3, 7, Ho, Wo), np.nan, dtype)
        _winograd.winograd_conv(
            x,
            U,
            BT.astype(dtype),
            AT.astype(dtype),
            oh0,
            ow0,
            p,
            d,
            y,
            b,
            32,
            scratch,
            False,
            specialise,
        )
        ys.append(y)
    want = conv2d_ref(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), p, d
    )
    tol_ = 1e-4 if dtype == np.float32 else 1e-11
    for y in ys:
        np.testing.assert_allclose(y, want, atol=tol_ * (1 + np.abs(want).max()))
    np.testing.assert_allclose(ys[0], ys[1], atol=tol_ * (1 + np.abs(want).max()))
    # weight gradient as the adjoint of the forward tile, specialised and generic
    dy = rng.standard_normal(want.shape).astype(dtype)
    dws = []
    for specialise in (True, False):
        dwv = np.empty(w.shape, dtype)
        _winograd.winograd_weight_grad(
            x,
            dy,
            BT.astype(dtype),
            np.ascontiguousarray(AT.T, dtype=dtype),
            np.ascontiguousarray(G.T),
            oh0,
            ow0,
            p,
            d,
            32,
            wscratch,
            dwv,
            specialise,
        )
        dws.append(dwv)
    _, _, dwt, _ = _torch(x, w, b, p, d, 1, dy)
    for dwv in dws:
        np.testing.assert_allclose(dwv, dwt, atol=tol_ * (1 + np.abs(dwt).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("C", [3, 17])  # the fused element-wise stage, the GEMM stage
def test_fused_relu_in_the_output_transform_equals_relu_after(dtype, r, with_bias, C):
    # bias and ReLU are applied in the last pass of the output transform (WG_EPI)
    from cnncore.functional import relu
    from cnncore.functional.fused import conv2d_relu

    assert (C <= wg.FUSED_MAX_CHANNELS) == (C == 3)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, C, 13, 14)).astype(dtype)
    x[0, 0, 5, 5] = np.nan  # NaN propagates through the ReLU, as torch.relu
    w = rng.standard_normal((18, C, r, r)).astype(dtype)
    b = rng.standard_normal(18).astype(dtype) if with_bias else None
    plain = conv2d(x, w, b, 1, 1, 2, algorithm="winograd")
    fused = conv2d_relu(x, w, b, 1, 1, 2, algorithm="winograd")
    want = relu(plain)
    assert np.isnan(want).any() and (want == 0).any()
    np.testing.assert_array_equal(fused, want)
    assert not np.signbit(fused[fused == 0]).any()  # +0, never -0, as relu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "r,p,d",
    [
        (3, (1, 1), (1, 1)),
        (3, (0, 2), (1, 1)),
        (5, (2, 0), (1, 1)),
        (3, (4, 5), (4, 5)),
        (5, (8, 3), (2, 8)),
        (3, (0, 0), (6, 4)),
        (3, (2, 2), (2, 2)),
        (5, (3, 4), (1, 2)),
        (3, (0, 1), (3, 2)),
    ],
)
def test_four_tile_vector_moves_match_float64_loops(dtype, r, p, d):
    # maps wide enough for groups of four tiles wholly inside the image and the output, so the
    # gather and the scatter move them by vector transposes (dilation 1), copies (column
    # dilation >= 4, tiles on neighbouring sub-grids) or as two interleaved pairs (column
    # dilation 2), beside edge tiles and partial groups; with
    # and without the fused element-wise stage; forward, dx and dweight
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 45, 51)).astype(dtype)
    w = rng.standard_normal((5, 3, r, r)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    xd, wd, bd = (a.astype(np.float64) for a in (x, w, b))
    want = conv2d_ref(xd, wd, bd, (1, 1), p, d)
    dy = rng.standard_normal(want.shape).astype(dtype)
    _, dx_want, dw_want, _ = _torch(xd, wd, bd, p, d, 1, dy)
    rtol, atol = tol(dtype)
    tile = wg.DEFAULT_TILE[r]
    for fused in (False, True):
        y = wg.conv2d_forward(x, w, b, p, d, tile, fused=fused)
        dx = wg.conv2d_backward_input(dy, w, x.shape[2:], p, d, tile, fused=fused)
        for got, ref in ((y, want), (dx, dx_want)):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))
    dw = wg.conv2d_backward_weight(x, dy, w.shape, p, d, tile)
    np.testing.assert_allclose(dw, dw_want, rtol=rtol, atol=atol * (1 + np.abs(dw_want).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    "hw,d", [((15, 15), (1, 1)), ((18, 21), (1, 1)), ((17, 30), (2, 1)), ((29, 14), (3, 1))]
)
def test_groups_of_four_output_tiles_over_the_edge_match_float64_loops(dtype, fused, hw, d):
    # 4x4 output tiles of column dilation 1 whose group of four reaches past the output's right
    # or bottom edge (15x15: the fourth tile of every row keeps 3 columns, the last tile row 3
    # rows; row dilation 2 and 3: rows dh apart) are written four at a time, the clipped rows
    # and columns element by element: the float64 loops' values, forward and dx
    rng = np.random.default_rng(17)
    x = rng.standard_normal((3, 5, *hw)).astype(dtype)
    w = rng.standard_normal((7, 5, 3, 3)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    p = (d[0], d[1])
    xd, wd, bd = (a.astype(np.float64) for a in (x, w, b))
    want = conv2d_ref(xd, wd, bd, (1, 1), p, d)
    assert want.shape[2:] == hw
    dy = rng.standard_normal(want.shape).astype(dtype)
    _, dx_want, _, _ = _torch(xd, wd, bd, p, d, 1, dy)
    rtol, atol = tol(dtype)
    y = wg.conv2d_forward(x, w, b, p, d, "F(4,3)", fused=fused)
    dx = wg.conv2d_backward_input(dy, w, hw, p, d, "F(4,3)", fused=fused)
    for got, ref in ((y, want), (dx, dx_want)):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    "shape,r",
    [
        ((2, 3, 32, 32), 5),  # every group of four tiles on whole lines
        ((1, 3, 20, 32), 3),  # blocks of 10 tiles: groups off the lines or across tile rows
        ((1, 16, 24, 64), 3),
        ((2, 3, 30, 30), 5),  # rows not on lines: ordinary stores only
    ],
)
@pytest.mark.parametrize("d", [(1, 1), (1, 2), (2, 2)])
def test_streamed_output_tiles_equal_ordinary_stores(monkeypatch, fused, shape, r, d):
    # with STREAM_MIN_BYTES 0, the float32 4x4 tiles of column dilation 1 or 2 are written by
    # non-temporal stores where four fill a 64-byte line of each row (side by side, or two
    # interleaved pairs 8 columns apart; the others as before): the same values bit for bit,
    # and the float64 loops' within float32 tolerance
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((6, shape[1], r, r)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    p = (r // 2 * d[0], r // 2 * d[1])
    tile = wg.DEFAULT_TILE[r]
    plain = wg.conv2d_forward(x, w, b, p, d, tile, fused=fused)
    monkeypatch.setattr(wg, "STREAM_MIN_BYTES", 0)
    assert wg.streams_output(plain.shape, np.float32, 4, d) == (d[0] * shape[3] % 16 == 0)
    streamed = wg.conv2d_forward(x, w, b, p, d, tile, fused=fused)
    assert streamed.ctypes.data % 64 == 0
    np.testing.assert_array_equal(streamed, plain)
    want = conv2d_ref(*(a.astype(np.float64) for a in (x, w, b)), (1, 1), p, d)
    rtol, atol = tol(np.float32)
    np.testing.assert_allclose(streamed, want, rtol=rtol, atol=atol * (1 + np.abs(want).max()))


def test_outputs_stream_only_where_whole_lines_are_written():
    big = (64, 64, 32, 32)  # 16.8 MB
    assert wg.STREAM_MIN_BYTES <= 64 * 64 * 32 * 32 * 4
    assert wg.streams_output(big, np.float32, 4, (1, 1))
    assert wg.streams_output((64, 64, 32, 48), np.float32, 4, (2, 1))
    assert not wg.streams_output(big, np.float64, 4, (1, 1))  # float32 only
    assert not wg.streams_output(big, np.float32, 2, (1, 1))  # 2x2 tiles: half lines
    assert wg.streams_output(big, np.float32, 4, (1, 2))  # two pairs of tiles fill 16 columns
    assert not wg.streams_output(big, np.float32, 4, (1, 3))  # columns apart
    assert not wg.streams_output((64, 64, 32, 56), np.float32, 4, (1, 1))  # rows off the lines
    assert not wg.streams_output((1, 8, 32, 32), np.float32, 4, (1, 1))  # stays in the caches


def test_scratch_and_outputs_start_on_cache_lines():
    for n in (10, 100_000, 3_000_000):
        for dt in (np.float32, np.float64):
            assert wg._aligned(np.zeros, n, dt).ctypes.data % 64 == 0
            assert wg._aligned(np.empty, n, dt).shape == (n,)
    x = np.ones((1, 64, 40, 40), np.float32)
    y = wg.conv2d_forward(x, np.ones((64, 64, 3, 3), np.float32), None, (1, 1), (1, 1), "F(4,3)")
    assert y.ctypes.data % 64 == 0 and y.flags.c_contiguous and y.shape == (1, 64, 40, 40)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,r,p,d",
    [
        ((2, 3, 32, 32), 5, (2, 2), (1, 1)),  # every chunk has edge tiles: all from strips
        ((2, 3, 15, 15), 5, (2, 2), (1, 1)),  # strip rows of 20: two vectors, the second part
        ((3, 2, 9, 7), 3, (3, 1), (1, 1)),  # small maps: a chunk's segments span images
        ((1, 2, 21, 90), 3, (1, 9), (1, 9)),  # column dilation >= 4: sub-grid copies from strips
        ((1, 2, 12, 210), 3, (2, 100), (1, 100)),  # strips beyond STRIP: tile by tile
        ((1, 2, 12, 200), 5, (3, 40), (2, 48)),
    ],
)
def test_edge_chunks_gathered_from_padded_strips_match_float64_loops(dtype, shape, r, p, d):
    # a chunk with tiles over the image's edge is gathered from zero-padded copies of its input
    # rows (``gather_strips``), unless they exceed its 3072-element buffer (dilation 100: 16
    # tiles on one row span 6 rows of 516 columns): then tile by tile; forward (GEMM and fused
    # stage), dx and dweight.  (In the x86-64-v4 build, float32 chunks with column dilation 1
    # move by runs of tiles instead, ``gather_runs``, with masked loads at the edges.)
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((4, shape[1], r, r)).astype(dtype)
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    bd = np.zeros(4)
    want = conv2d_ref(xd, wd, bd, (1, 1), p, d)
    dy = rng.standard_normal(want.shape).astype(dtype)
    _, dx_want, dw_want, _ = _torch(xd, wd, bd, p, d, 1, dy)
    rtol, atol = tol(dtype)
    tile = wg.DEFAULT_TILE[r]
    got = [wg.conv2d_backward_weight(x, dy, w.shape, p, d, tile)]
    refs = [dw_want]
    for fused in (False, True):
        got += [
            wg.conv2d_forward(x, w, None, p, d, tile, fused=fused),
            wg.conv2d_backward_input(dy, w, shape[2:], p, d, tile, fused=fused),
        ]
        refs += [want, dx_want]
    for g, ref in zip(got, refs, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


def test_small_inputs_take_the_fused_element_wise_stage():
    # the rule, and that its result equals the GEMM stage's (float64: up to summation order)
    rng = np.random.default_rng(12)
    w = rng.standard_normal((6, wg.FUSED_MAX_CHANNELS, 3, 3))
    x = rng.standard_normal((2, wg.FUSED_MAX_CHANNELS, 19, 18))
    auto = wg.conv2d_forward(x, w, None, (1, 1), (1, 1), "F(4,3)")
    fused = wg.conv2d_forward(x, w, None, (1, 1), (1, 1), "F(4,3)", fused=True)
    gemm = wg.conv2d_forward(x, w, None, (1, 1), (1, 1), "F(4,3)", fused=False)
    np.testing.assert_array_equal(auto, fused)
    np.testing.assert_allclose(fused, gemm, rtol=1e-12, atol=1e-12)
    wide = np.concatenate([w, w[:, :1]], axis=1), np.concatenate([x, x[:, :1]], axis=1)
    auto = wg.conv2d_forward(wide[1], wide[0], None, (1, 1), (1, 1), "F(4,3)")
    gemm = wg.conv2d_forward(wide[1], wide[0], None, (1, 1), (1, 1), "F(4,3)", fused=False)
    np.testing.assert_array_equal(auto, gemm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", ["F(4,3)", "F(4,5)", "F(2,3)", "F(3,5)"])
@pytest.mark.parametrize("C", [1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_fused_stage_matches_float64_loops_for_every_channel_count(dtype, tile, C):
    # the fused element-wise stage: code unrolled for 1-8 channels, a loop beyond; for F(4,3) and
    # F(4,5) the products summed straight into the output transform (up to 8 channels), through
    # the products' buffer otherwise (other tiles, 9 channels), two filters at a time in the
    # AVX-512 build (C + 1 filters: a last one alone for even C); forward and dx (whose input
    # channels are the forward's filters)
    m, r, _ = wg.TILES[tile]
    rng = np.random.default_rng(C)
    x = rng.standard_normal((2, C, 13, 14)).astype(dtype)
    w = rng.standard_normal((C + 1, C, r, r)).astype(dtype)
    b = rng.standard_normal(C + 1).astype(dtype)
    xd, wd, bd = (a.astype(np.float64) for a in (x, w, b))
    want = conv2d_ref(xd, wd, bd, (1, 1), (2, 1), (1, 1))
    dy = rng.standard_normal(want.shape).astype(dtype)
    _, dx_want, _, _ = _torch(xd, wd, bd, (2, 1), (1, 1), 1, dy)
    y = wg.conv2d_forward(x, w, b, (2, 1), (1, 1), tile, fused=True)
    dx = wg.conv2d_backward_input(dy, w, x.shape[2:], (2, 1), (1, 1), tile, fused=True)
    scale = 10 * wg.ERROR_BOUND[tile] if dtype == np.float32 else 1e-12
    for got, ref in ((y, want), (dx, dx_want)):
        assert got.dtype == dtype
        assert np.linalg.norm(got - ref) <= scale * np.linalg.norm(ref)


def test_block_size_follows_the_channel_count():
    assert [wg.tiles_per_block(c, 3) for c in (1, 64, 65, 96, 128, 256, 2048)] == [
        64,
        64,
        80,
        96,
        128,
        256,
        256,
    ]
    assert wg.tiles_per_block(3, 200) == wg.tiles_per_block(200, 3) == 208
    # the weight gradient: the longest blocks from 128 channels up
    assert [wg.tiles_per_block(c, 3, weight_grad=True) for c in (1, 64, 112, 127, 128, 2048)] == [
        64,
        64,
        112,
        128,
        256,
        256,
    ]
    assert wg.tiles_per_block(3, 128, weight_grad=True) == 256


@pytest.mark.parametrize("C,K", [(256, 24), (20, 300)])
def test_long_blocks_of_wide_layers_match_torch(C, K):
    # wide layers run 208-256 tiles per block: 7 x 11 x 10 tiles of 4x4 make blocks of 192 and
    # a last one of 194 (ending inside a chunk) on two threads; forward, dx and dweight
    rng = np.random.default_rng(13)
    x = rng.standard_normal((7, C, 41, 38)).astype(np.float32)
    w = (rng.standard_normal((K, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    assert wg.tiles_per_block(C, K) >= 208
    y = conv2d(x, w, b, 1, 1, 1, algorithm="winograd")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = conv2d_backward(dy, x, w, 1, 1, 1, algorithm="winograd")
    want = _torch(x, w, b, 1, 1, 1, dy)
    rtol, atol = tol(np.float32)
    for got, ref in zip((y, *grads), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


@pytest.mark.parametrize(
    "tiles,tb,parts",
    [
        (1568, 64, 2),
        (392, 128, 2),
        (770, 256, 2),
        (5, 64, 2),
        (4096, 16, 2),
        (17, 16, 1),
        (1000, 64, 3),
        (64, 64, 4),
    ],
)
def test_blocks_cover_the_tiles_on_chunk_edges(tiles, tb, parts):
    # every tile in exactly one block of at most tb; every block but the last starts and ends on
    # a chunk of 16 tiles; as many blocks per thread where there are chunks enough
    bounds = _winograd.block_bounds(tiles, tb, parts)
    assert bounds[0][0] == 0 and bounds[-1][1] == tiles
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert all(0 < e - s <= tb for s, e in bounds)
    assert all(s % 16 == 0 for s, _ in bounds)
    chunks = -(-tiles // 16)
    if chunks >= parts * -(-tiles // (parts * tb)):
        assert len(bounds) % parts == 0
    sizes = [e - s for s, e in bounds[:-1]]
    assert not sizes or max(sizes) - min(sizes) <= 16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("specialise", [True, False])
def test_weight_gradient_by_runs_of_dy_tiles_matches_float64(dtype, r, specialise):
    # outputs 70 wide: 18 tiles per row, so most chunks of 16 dy tiles are two runs of eight
    # side by side inside the output, which the float32 weight gradient moves from dy's rows
    # as a whole (``eight_tile_runs``, ``dy_chunk``), beside chunks across rows and edge
    # tiles; with the forward's A (straight-line pair sums) and through the generic passes
    rng = np.random.default_rng(19)
    x = rng.standard_normal((2, 3, 21, 70)).astype(dtype)
    w = rng.standard_normal((6, 3, r, r))
    p = (r // 2, r // 2)
    dy = rng.standard_normal((2, 6, 21, 70)).astype(dtype)
    _, _, dw_want, _ = _torch(x, w, np.zeros(6), p, (1, 1), 1, dy)
    m, _, _ = wg.TILES[wg.DEFAULT_TILE[r]]
    AT, G, BT = wg.tile_matrices(wg.DEFAULT_TILE[r])
    tb = 64
    scratch = np.full(_winograd.scratch_size(3, 6, BT.shape[0], tb, True), np.nan, dtype)
    dw = np.empty(w.shape, dtype)
    _winograd.winograd_weight_grad(
        x,
        dy,
        BT.astype(dtype),
        np.ascontiguousarray(AT.T, dtype=dtype),
        np.ascontiguousarray(G.T),
        wg.tile_origins(21, m, 1),
        wg.tile_origins(70, m, 1),
        p,
        (1, 1),
        tb,
        scratch,
        dw,
        specialise,
    )
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(dw, dw_want, rtol=rtol, atol=atol * (1 + np.abs(dw_want).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,K,r", [(9, 13, 3), (300, 7, 3), (17, 6, 5), (40, 25, 5)])
def test_element_wise_gemms_match_float64(dtype, C, K, r):
    # the GEMM stage of the forward and the input gradient (float32 in the x86-64-v3 build: its
    # own 6 x 16 kernel on filters packed by six, as transform_weight writes them): filter counts
    # off multiples of six, more than SUMC = 256 channels (two sums added), blocks whose tile
    # counts are off multiples of 16
    rng = np.random.default_rng(23)
    x = rng.standard_normal((2, C, 13, 11)).astype(dtype)
    w = rng.standard_normal((K, C, r, r)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    p = (r // 2, r // 2)
    xd, wd, bd = (a.astype(np.float64) for a in (x, w, b))
    want = conv2d_ref(xd, wd, bd, (1, 1), p, (1, 1))
    dy = rng.standard_normal(want.shape).astype(dtype)
    _, dx_want, _, _ = _torch(xd, wd, bd, p, (1, 1), 1, dy)
    tile = wg.DEFAULT_TILE[r]
    y = wg.conv2d_forward(x, w, b, p, (1, 1), tile, fused=False)
    dx = wg.conv2d_backward_input(dy, w, x.shape[2:], p, (1, 1), tile, fused=False)
    rtol, atol = tol(dtype)
    for got, ref in ((y, want), (dx, dx_want)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


def test_pack_filters_lays_out_panels_of_six_filters():
    U = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    out = np.full((2, 12, 3), np.nan, np.float32)
    _winograd.pack_filters(U, out)
    padded = np.zeros((2, 12, 3), np.float32)
    padded[:, :7] = U
    want = padded.reshape(2, 2, 6, 3).transpose(0, 1, 3, 2).reshape(2, 12, 3)
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="do not match"):
        _winograd.pack_filters(U, np.zeros((2, 7, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,K,r", [(13, 7, 3), (9, 11, 5), (64, 64, 3), (130, 128, 3)])
def test_weight_gradient_gemm_forms_match_float64(dtype, C, K, r):
    # the weight gradient's per-point GEMMs run "NN" on V's point transposed (4x4 register
    # blocks, scalar edges: channel and tile counts off multiples of 4) up to
    # SMALL_GEMM_MNK multiply-adds, "TN" on V as it is above (130 x 128 x 120-240 tiles)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((3, C, 39, 35)).astype(dtype)
    w = rng.standard_normal((K, C, r, r)).astype(dtype)
    p = (r // 2, r // 2)
    dy = rng.standard_normal((3, K, 39, 35)).astype(dtype)
    b = np.zeros(K)
    _, _, dw_want, _ = _torch(x, w, b, p, (1, 1), 1, dy)
    dw = wg.conv2d_backward_weight(x, dy, w.shape, p, (1, 1), wg.DEFAULT_TILE[r])
    assert dw.dtype == dtype
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(dw, dw_want, rtol=rtol, atol=atol * (1 + np.abs(dw_want).max()))


def test_tile_and_block_size_are_checked():
    from cnncore_kernels import _winograd

    with pytest.raises(ValueError, match="alpha"):
        _winograd.check_tile(9, 128)
    with pytest.raises(ValueError, match="tb"):
        _winograd.check_tile(6, 24)
    with pytest.raises(ValueError, match="tb"):
        _winograd.check_tile(6, 2048)
    _winograd.check_tile(8, 1024)


@pytest.mark.parametrize("K,C", [(64, 3), (7, 5), (5, 130), (13, 1), (1, 8)])
@pytest.mark.parametrize("tile", ["F(4,3)", "F(4,5)"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_weight_matches_reference_and_each_filter_alone(K, C, tile, dtype):
    # U = G w G^T per filter against a float64 einsum; the filters run in groups (at least
    # TW_PAIRS (filter, channel) pairs per vector loop, the last group shorter), and grouping must
    # not change a value: each filter transformed alone gives the same bits
    m, r, pts = wg.TILES[tile]
    _, G, _ = wg.tile_matrices(tile)
    rng = np.random.default_rng(K * 100 + C)
    w = rng.standard_normal((K, C, r, r)).astype(dtype)
    U = wg.transform_weight(w, G)
    alpha = G.shape[0]
    ref = np.einsum("ai,kcij,bj->abkc", G, w.astype(np.float64), G).reshape(alpha**2, K, C)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(U, ref, rtol=tol, atol=tol * np.abs(ref).max())
    for k in range(K):
        np.testing.assert_array_equal(U[:, k : k + 1], wg.transform_weight(w[k : k + 1], G))
    # the input gradient's transform: the (C, K) view of the filters, not copied, with G's
    # columns reversed equals the rotated kernel's transform (up to float64 summation order)
    wt = w.transpose(1, 0, 2, 3)
    rot = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    ref_rot = np.einsum("ai,kcij,bj->abkc", G, rot.astype(np.float64), G).reshape(alpha**2, C, K)
    U_rot = wg.transform_weight(wt, wg._rotated_kernel_G(tile))
    np.testing.assert_allclose(U_rot, ref_rot, rtol=tol, atol=tol * np.abs(ref_rot).max())
    np.testing.assert_allclose(
        U_rot, wg.transform_weight(rot, G), rtol=tol, atol=tol * np.abs(ref_rot).max()
    )
    # packed for the own GEMMs (groups of whole panels of six filters): the same bits, laid out
    # as pack_filters lays them out, zero filters past the last
    from cnncore_kernels import _winograd

    for filters, Uu in ((w, U), (wt, U_rot)):
        G_ = G if filters is w else wg._rotated_kernel_G(tile)
        want = np.full((alpha**2, -(-Uu.shape[1] // 6) * 6, Uu.shape[2]), np.nan, dtype)
        _winograd.pack_filters(Uu, want)
        np.testing.assert_array_equal(wg.transform_weight(filters, G_, packed=True), want)


def test_unchecked_kernels_refuse_mismatched_shapes():
    from cnncore_kernels import _winograd

    _, G, _ = wg.tile_matrices("F(4,3)")
    w = np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match="do not match"):
        _winograd.transform_weight(w, G, np.zeros((36, 4, 2)))
    with pytest.raises(ValueError, match="K rounded up to 6"):  # packed: 4 filters take 6 rows
        _winograd.transform_weight(w, G, np.zeros((36, 4, 3)), True)
    # each filter's r x r values must be contiguous (the kernel reads them through a pointer)
    for bad in (np.zeros((4, 3, 6, 3))[:, :, ::2], np.zeros((4, 3, 3, 6))[..., ::2]):
        with pytest.raises(ValueError, match="must be contiguous"):
            _winograd.transform_weight(bad, G, np.zeros((36, 4, 3)))
    m, r, pts = wg.TILES["F(4,3)"]
    AT, Gw, BT = wg.cook_toom(r, m, pts)
    x, dy = np.zeros((1, 3, 8, 8)), np.zeros((1, 4, 8, 8))
    o = wg.tile_origins(8, m, 1)
    with pytest.raises(ValueError, match="do not match"):
        _winograd.winograd_weight_grad(
            x, dy, BT, Gw, AT, o, o, (1, 1), (1, 1), 16, np.zeros(10**5), np.zeros((4, 3, 5, 5))
        )
    # a scratch buffer too small for the blocks (or, for the weight gradient, the accumulators)
    need = _winograd.scratch_size(3, 4, 6, 16, True)
    with pytest.raises(ValueError, match=f"needs {need}"):
        _winograd.winograd_weight_grad(
            x, dy, BT, Gw, AT, o, o, (1, 1), (1, 1), 16, np.zeros(need - 1), np.zeros((4, 3, 3, 3))
        )
    ATf, _, BTf = wg.tile_matrices("F(4,3)")
    U = wg.transform_weight(np.zeros((4, 3, 3, 3)), G)
    need = _winograd.scratch_size(3, 4, 6, 16)
    with pytest.raises(ValueError, match=f"needs {need}"):
        _winograd.winograd_conv(
            x,
            U,
            BTf,
            ATf,
            o,
            o,
            (1, 1),
            (1, 1),
            np.zeros((1, 4, 8, 8)),
            None,
            16,
            np.zeros(need - 1),
        )
    # U, x and y must agree (K from y); packed filters only where the own GEMMs read them
    args = (BTf, ATf, o, o, (1, 1), (1, 1))
    for y in (np.zeros((1, 5, 8, 8)), np.zeros((2, 4, 8, 8))):
        with pytest.raises(ValueError, match="do not match"):
            _winograd.winograd_conv(x, U, *args, y, None, 16, np.zeros(need))
    with pytest.raises(ValueError, match="do not match"):
        _winograd.winograd_conv(
            x, U, *args, np.zeros((1, 4, 8, 8)), np.zeros(3), 16, np.zeros(need)
        )
    with pytest.raises(ValueError, match="only the float32"):
        _winograd.winograd_conv(
            x, U, *args, np.zeros((1, 4, 8, 8)), None, 16, np.zeros(need), u_packed=True
        )


@st.composite
def tile_chunks(draw):
    # a chunk of up to 16 consecutive tiles of a grid four columns apart (F(4, r)'s), raster
    # order over images, tile rows and tile columns, from offsets that put tiles over every edge
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 40)), draw(st.integers(1, 75))
    size, dh = draw(st.sampled_from([4, 6, 8])), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    rows = [-ph + 4 * dh * a for a in range((H + 2 * ph) // (4 * dh) + 1)]
    cols = [-pw + 4 * b for b in range((W + 2 * pw) // 4 + 1)]
    grid = [(n, a, b) for n in range(N) for a in rows for b in cols]
    t0 = draw(st.integers(0, len(grid) - 1))
    tiles = np.array(grid[t0 : t0 + draw(st.integers(1, 16))], dtype=np.intp)
    return (N, C, H, W), size, dh, tiles


@given(
    tile_chunks(),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([1, 2]),
    st.integers(0, 2**16),
)
def test_chunk_gathers_by_runs_and_by_moves_equal_the_tiles(case, dtype, dw, seed):
    # the two ways a chunk of input tiles is gathered: by runs of tiles side by side (masked
    # loads and permutations; float32 in the x86-64-v4 build) and by groups of four or tile by
    # tile (transposes, padded strips): each equal to the tiles cut from the zero-padded map
    shape, size, dh, tiles = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    c = seed % shape[1]
    tn, tih, tiw = (np.ascontiguousarray(tiles[:, i]) for i in range(3))
    runs, moves = _winograd.gather_chunk_both(x, c, tn, tih, tiw, size, dh, dw)
    pad = 2 * size * max(dh, dw) + 12
    xp = np.pad(x[:, c], ((0, 0), (pad, pad), (pad, pad)))
    want = np.zeros((size * size, 16), dtype)
    for t, (n, ih, iw) in enumerate(tiles):
        patch = xp[n, pad + ih :: dh, pad + iw :: dw][:size, :size]
        want[:, t] = patch.reshape(-1)
    np.testing.assert_array_equal(moves, want)
    if runs is not None:
        np.testing.assert_array_equal(runs, want)
    pieces, run = 1, 1  # runs of tiles side by side, split after eight
    for a, b in zip(tiles[:-1], tiles[1:], strict=True):
        run = run + 1 if a[0] == b[0] and a[1] == b[1] and b[2] == a[2] + 4 and run < 8 else 1
        pieces += run == 1
    applies = dtype == np.float32 and dw == 1 and size in (6, 8) and 2 * pieces <= len(tiles)
    assert (runs is not None) == (applies and _winograd.RUNS_GATHER)
