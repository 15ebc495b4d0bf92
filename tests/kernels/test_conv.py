"""conv2d, its backward, im2col and col2im against float64 loops, PyTorch, finite differences."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnncore.functional import col2im, conv2d, conv2d_backward, im2col
from cnncore_kernels import _conv
from tests.reference import conv2d_ref, numerical_grad, tol

torch.set_num_threads(1)


def torch_conv(x, w, b, s, p, d, dy):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    bt = torch.tensor(np.asarray(b, np.float64), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, s, p, d)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@st.composite
def conv_cases(draw, max_c=6):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 12))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 12))
    N, C, K = draw(st.integers(1, 3)), draw(st.integers(1, max_c)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    contiguous = draw(st.booleans())
    return (N, C, H, W, K, (kh, kw), (sh, sw), (ph, pw), (dh, dw), dtype, contiguous)


def make(case, seed=0):
    N, C, H, W, K, k, s, p, d, dtype, contiguous = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    if not contiguous:  # same values, non-contiguous layout
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    w = rng.standard_normal((K, C) + k).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


@given(conv_cases())
def test_forward_backward_matches_torch(case):
    x, w, b = make(case)
    s, p, d = case[6], case[7], case[8]
    y = conv2d(x, w, b, s, p, d)
    assert y.dtype == x.dtype
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    dx, dw, db = conv2d_backward(dy, x, w, s, p, d)
    yt, dxt, dwt, dbt = torch_conv(x, w, b, s, p, d, dy)
    rtol, atol = tol(x.dtype)
    scale = 1 + np.abs(yt).max()
    np.testing.assert_allclose(y, yt, rtol=rtol, atol=atol * scale)
    np.testing.assert_allclose(dx, dxt, rtol=rtol, atol=atol * (1 + np.abs(dxt).max()))
    np.testing.assert_allclose(dw, dwt, rtol=rtol, atol=atol * (1 + np.abs(dwt).max()))
    np.testing.assert_allclose(db, dbt, rtol=rtol, atol=atol * (1 + np.abs(dbt).max()))
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape


@pytest.mark.parametrize(
    "C,K,k,s,p,d",
    [
        (3, 4, (3, 3), (1, 1), (1, 1), (1, 1)),  # im2col path
        (40, 20, (3, 3), (1, 1), (2, 2), (2, 2)),  # shifted-GEMM path (C >= 16), padded
        (33, 17, (2, 3), (1, 1), (0, 0), (3, 1)),  # shifted-GEMM path, no padding
        (5, 6, (1, 1), (1, 1), (0, 0), (1, 1)),  # 1x1 fast path
        (3, 2, (2, 3), (2, 1), (1, 2), (1, 2)),  # strided, non-square
    ],
)
@pytest.mark.parametrize("path", ["auto", "im2col", "shifted", "batched"])
def test_every_path_against_float64_loops(C, K, k, s, p, d, path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, C, 9, 8))
    w = rng.standard_normal((K, C) + k)
    b = rng.standard_normal(K)
    # the GEMM kernel with the strategy forced (stride-1 layers take it)
    y = _conv.conv2d_forward(x, w, b, s, p, d, path=path)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = _conv.conv2d_backward(dy, x, w, s, p, d, path=path)
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, s, p, d), atol=1e-10)
    _, dxt, dwt, dbt = torch_conv(x, w, b, s, p, d, dy)
    np.testing.assert_allclose(dx, dxt, atol=1e-10)
    np.testing.assert_allclose(dw, dwt, atol=1e-10)
    np.testing.assert_allclose(db, dbt, atol=1e-10)


def torch_grouped(x, w, b, s, p, d, g, dy):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    bt = torch.tensor(np.asarray(b, np.float64), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, s, p, d, g)
    yt.backward(torch.tensor(np.asarray(dy, np.float64)))
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@given(conv_cases(max_c=3), st.integers(1, 3))
def test_grouped_forward_backward_matches_torch(case, groups):
    N, C, H, W, K, k, s, p, d, dtype, contiguous = case
    case = (N, C * groups, H, W, K * groups, k, s, p, d, dtype, contiguous)
    x, w, b = make(case)
    w = np.ascontiguousarray(w[:, :C])  # (K, C // groups, kh, kw)
    y = conv2d(x, w, b, s, p, d, groups)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
    dx, dw, db = conv2d_backward(dy, x, w, s, p, d, groups)
    rtol, atol = tol(x.dtype)
    for got, want in zip((y, dx, dw, db), torch_grouped(x, w, b, s, p, d, groups, dy), strict=True):
        assert got.shape == want.shape and got.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * (1 + np.abs(want).max()))


def test_grouped_against_float64_loops_and_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 6))
    w = rng.standard_normal((4, 3, 3, 2))  # 2 groups of 3 channels -> 2 filters each
    b = rng.standard_normal(4)
    s, p, d = (2, 1), (1, 0), (1, 2)
    y = conv2d(x, w, b, s, p, d, 2)
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, s, p, d), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, x, w, s, p, d, 2)
    loss = lambda xx, ww, bb: float((conv2d(xx, ww, bb, s, p, d, 2) * dy).sum())  # noqa: E731
    np.testing.assert_allclose(dx, numerical_grad(lambda t: loss(t, w, b), x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw, numerical_grad(lambda t: loss(x, t, b), w), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, numerical_grad(lambda t: loss(x, w, t), b), rtol=1e-6, atol=1e-6)
    # partial gradients come back as None per request
    got = conv2d_backward(dy, x, w, s, p, d, 2, need_dx=False, need_dbias=False)
    assert got[0] is None and got[2] is None
    np.testing.assert_array_equal(got[1], dw)


@pytest.mark.parametrize(
    "x_shape, w_shape, groups, match",
    [
        ((1, 6, 4, 4), (4, 3, 1, 1), 4, "groups=4 must divide"),
        ((1, 6, 4, 4), (3, 3, 1, 1), 2, "groups=2 must divide"),
        (
            (1, 6, 4, 4),
            (4, 2, 1, 1),
            2,
            r"weight has 2 input channels but x has 6 \(3 per group of 2\)",
        ),
        ((1, 6, 4, 4), (4, 3, 1, 1), 0, "groups must be >= 1"),
    ],
)
def test_grouped_bad_input(x_shape, w_shape, groups, match):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        conv2d(x, w, None, 1, 0, 1, groups)
    with pytest.raises(ValueError, match=match):
        conv2d_backward(np.zeros((1, w_shape[0], 4, 4), np.float32), x, w, 1, 0, 1, groups)
    with pytest.raises(TypeError, match="groups"):
        conv2d(x, w, None, 1, 0, 1, 2.0)


@pytest.mark.parametrize(
    "C,K,k,s,p,d",
    [
        (2, 3, (3, 2), (2, 1), (1, 0), (1, 2)),
        (32, 16, (2, 2), (1, 1), (1, 1), (2, 1)),  # shifted path
        (3, 2, (1, 1), (1, 1), (0, 0), (1, 1)),
    ],
)
def test_gradients_by_finite_differences(C, K, k, s, p, d):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, C, 5, 6))
    w = rng.standard_normal((K, C) + k)
    b = rng.standard_normal(K)
    y = conv2d(x, w, b, s, p, d)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, x, w, s, p, d)

    def loss_x(xx):
        return float((conv2d(xx, w, b, s, p, d) * dy).sum())

    def loss_w(ww):
        return float((conv2d(x, ww, b, s, p, d) * dy).sum())

    def loss_b(bb):
        return float((conv2d(x, w, bb, s, p, d) * dy).sum())

    if C <= 3:  # keep the number of forward passes small
        np.testing.assert_allclose(dx, numerical_grad(loss_x, x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dw, numerical_grad(loss_w, w), rtol=1e-6, atol=1e-6)
    else:
        sub = (slice(0, 2),)  # first two filters' weights only
        num = numerical_grad(lambda w2: loss_w(np.concatenate([w2, w[2:]])), w[sub])
        np.testing.assert_allclose(dw[sub], num, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, numerical_grad(loss_b, b), rtol=1e-6, atol=1e-6)


def test_partial_gradients_and_large_chunks():
    """need_* flags skip work; a layer whose im2col needs several row chunks stays exact."""
    rng = np.random.default_rng(4)
    # C*kh*kw*Wo*rows > 4M elements forces several chunks of output rows
    x = rng.standard_normal((1, 16, 300, 300)).astype(np.float32)
    w = rng.standard_normal((4, 16, 5, 5)).astype(np.float32)
    y = conv2d(x, w, None, 2, 2, 1)
    yt = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), None, 2, 2, 1).numpy()
    np.testing.assert_allclose(y, yt, rtol=1e-4, atol=1e-3)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(dy, x, w, 2, 2, 1, need_dx=False, need_dbias=False)
    assert dx is None and db is None and dw.shape == w.shape


@given(conv_cases(max_c=3))
def test_col2im_is_adjoint_of_im2col(case):
    x, _, _ = make(case)
    x = x[0].astype(np.float64)
    k, s, p, d = case[5], case[6], case[7], case[8]
    col = im2col(x, k, s, p, d)
    c = np.random.default_rng(5).standard_normal(col.shape)
    lhs = float((col * c).sum())
    rhs = float((x * col2im(c, x.shape, k, s, p, d)).sum())
    assert abs(lhs - rhs) <= 1e-9 * (1 + abs(lhs))


def test_im2col_matches_torch_unfold():
    x = np.random.default_rng(6).standard_normal((3, 7, 9))
    for k, s, p, d in [((3, 2), (1, 2), (1, 0), (2, 1)), ((1, 1), (1, 1), (0, 0), (1, 1))]:
        ref = torch.nn.functional.unfold(torch.tensor(x)[None], k, d, p, s)[0].numpy()
        np.testing.assert_array_equal(im2col(x, k, s, p, d), ref)


@pytest.mark.parametrize(
    "shape,k,s,p,d",
    [
        ((3, 19, 227), (11, 11), (4, 4), (0, 0), (1, 1)),  # AlexNet's conv1 rows
        ((2, 9, 30), (3, 7), (1, 2), (1, 3), (1, 1)),  # padding past one phase: t0 = -2
        ((2, 8, 31), (2, 5), (2, 3), (0, 4), (1, 2)),  # dilation with stride, t0 = -2
        ((1, 5, 13), (3, 4), (2, 3), (1, 1), (2, 3)),  # kw*dw beyond the row, stride 3
        ((2, 7, 3000), (3, 3), (1, 2), (1, 1), (1, 1)),  # phases over PHASE_MAX: tap by tap
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_rows_by_phases_match_torch_unfold_and_fold(shape, k, s, p, d, dtype):
    # strided rows with more taps than the stride go through the row's phases (phases_to_columns,
    # phase_col2im_row): the columns are copies (bit for bit torch's unfold), and col2im is
    # torch's fold (its adjoint)
    x = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    col = im2col(x, k, s, p, d)
    ref = torch.nn.functional.unfold(torch.tensor(x)[None], k, d, p, s)[0].numpy()
    np.testing.assert_array_equal(col, ref)
    c = np.random.default_rng(10).standard_normal(col.shape).astype(dtype)
    want = torch.nn.functional.fold(
        torch.tensor(c, dtype=torch.float64)[None], shape[1:], k, d, p, s
    )
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(col2im(c, shape, k, s, p, d), want[0].numpy(), rtol=rtol, atol=atol)


def test_kernels_release_the_gil_and_are_thread_safe():
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((2, 8, 20, 20)).astype(np.float32) for _ in range(4)]
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    serial = [conv2d(x, w, None, 1, 1, 2) for x in xs]
    results: list = [None] * len(xs)

    def work(i):
        for _ in range(3):
            results[i] = conv2d(xs[i], w, None, 1, 1, 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_inputs_give_numpy_outputs_equal_to_float64_loops(dtype):
    """The dispatcher's CPU branch: NumPy in, NumPy out of the same dtype, equal to the naive
    float64 loops (an independent computation, not the twin called directly)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = conv2d(x, w, b, (2, 1), (1, 0), (1, 2))
    assert type(y) is np.ndarray and y.dtype == dtype
    ref = conv2d_ref(x, w, b, (2, 1), (1, 0), (1, 2))
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()))


def test_both_openblas_libraries_give_the_same_convolution(tmp_path):
    """The GEMMs call scipy-openblas32, SciPy's cython_blas with CNNCORE_BLAS=scipy (or as the
    warned fallback): the fallback must compute the same results."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 20, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 20, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "dy.npy", dy)
    script = (
        "import sys, numpy as np, cnncore\n"
        "from cnncore.functional import conv2d, conv2d_backward\n"
        "from cnncore_kernels import _conv\n"
        "d = sys.argv[1]\n"
        "x, w, dy = (np.load(f'{d}/{n}.npy') for n in ('x', 'w', 'dy'))\n"
        "np.save(f'{d}/y.npy', conv2d(x, w, None, 1, 1))\n"
        "np.save(f'{d}/dx.npy', conv2d_backward(dy, x, w, 1, 1)[0])\n"
        "print(_conv.blas_info()['library'])\n"
    )
    env = dict(os.environ, CNNCORE_BLAS="scipy")
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scipy.linalg.cython_blas"
    info = _conv.blas_info()
    assert info["threads_local"]
    assert info["library"] == "scipy-openblas32", info  # the default (see test_blas.py)
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), conv2d(x, w, None, 1, 1), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "dx.npy"), conv2d_backward(dy, x, w, 1, 1)[0], rtol=1e-5, atol=1e-5
    )


def test_gemm_path_is_an_argument_checked_and_thread_local():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20, 9, 9))
    w = rng.standard_normal((6, 20, 3, 3))
    with pytest.raises(ValueError, match="path must be"):
        _conv.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), path="winograd")
    with pytest.raises(ValueError, match="path must be"):
        _conv.conv2d_backward(np.ones((2, 6, 9, 9)), x, w, (1, 1), (1, 1), (1, 1), path=None)
    assert not hasattr(_conv, "set_path") and not hasattr(_conv, "_path")
    assert _conv.use_shifted(20, 6, (3, 3), (1, 1), (1, 1), (1, 1), 9, "shifted")
    assert not _conv.use_shifted(20, 6, (3, 3), (1, 1), (1, 1), (1, 1), 9, "im2col")
    assert _conv.use_batched(1, 10**6, False, "batched")
    assert not _conv.use_batched(64, 4, True, "im2col")
    # concurrent calls with different forced paths give their own path's result
    want = {
        p: _conv.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), path=p)
        for p in ("im2col", "shifted", "batched")
    }
    ref = conv2d_ref(x, w, None, (1, 1), (1, 1))
    for got in want.values():
        np.testing.assert_allclose(got, ref, atol=1e-10)
    errors = []

    def run(p):
        for _ in range(20):
            got = _conv.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), path=p)
            if not np.array_equal(got, want[p]):
                errors.append(p)

    threads = [threading.Thread(target=run, args=(p,)) for p in want]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
