"""conv2d's batched-columns path (small maps) and its fused bias + ReLU epilogue, against PyTorch,
float64 loops and the unfused path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnncore.functional import conv2d, conv2d_backward, relu
from cnncore.functional.fused import conv2d_relu, relu_max_pool2d
from cnncore.functional.pooling import max_pool2d_values
from cnncore_kernels import _conv
from tests.kernels.test_conv import conv_cases, make, torch_conv
from tests.reference import conv2d_ref, tol

torch.set_num_threads(1)


@pytest.fixture
def batched_small_blocks():
    """A one-element budget for the batched path: one image per block, many blocks."""
    _conv._set_batch_budget(1)
    yield
    _conv._set_batch_budget(2097152)


def test_rule_takes_the_batched_path_for_small_maps_only():
    assert _conv.use_batched(64, 8 * 8) and _conv.use_batched(64, 8 * 8, backward=True)
    assert not _conv.use_batched(64, 15 * 15) and _conv.use_batched(64, 15 * 15, backward=True)
    assert not _conv.use_batched(128, 32 * 32, backward=True)
    assert not _conv.use_batched(1, 8 * 8)  # one image: nothing to batch


@settings(max_examples=40, deadline=None)
@given(conv_cases(), st.sampled_from([1, 2097152]), st.integers(1, 6))
def test_batched_path_matches_torch(case, budget, n):
    case = (n,) + case[1:]  # more images than the other tests: several blocks
    x, w, b = make(case)
    s, p, d = case[6], case[7], case[8]
    _conv._set_batch_budget(budget)
    try:
        y = conv2d(x, w, b, s, p, d, algorithm="batched")
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
        dx, dw, db = conv2d_backward(dy, x, w, s, p, d, algorithm="batched")
        dx_only = conv2d_backward(
            dy, x, w, s, p, d, algorithm="batched", need_dweight=False, need_dbias=False
        )[0]
        dw_only = conv2d_backward(
            dy, x, w, s, p, d, algorithm="batched", need_dx=False, need_dbias=False
        )[1]
    finally:
        _conv._set_batch_budget(2097152)
    yt, dxt, dwt, dbt = torch_conv(x, w, b, s, p, d, dy)
    rtol, atol = tol(x.dtype)
    for got, want in ((y, yt), (dx, dxt), (dw, dwt), (db, dbt), (dx_only, dxt), (dw_only, dwt)):
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * (1 + np.abs(want).max()))


def test_batched_path_on_the_training_shapes_against_float64(batched_small_blocks):
    # (64,64,15,15) k5 p2 and (128,256,8,8) k3 p1 scaled down in channels and batch
    rng = np.random.default_rng(3)
    for N, C, H, K, k, p in ((5, 6, 15, 7, 5, 2), (7, 9, 8, 5, 3, 1)):
        x = rng.standard_normal((N, C, H, H))
        w = rng.standard_normal((K, C, k, k))
        b = rng.standard_normal(K)
        y = conv2d(x, w, b, 1, p, algorithm="batched")
        np.testing.assert_allclose(y, conv2d_ref(x, w, b, (1, 1), (p, p)), atol=1e-10)
        dy = rng.standard_normal(y.shape)
        _, dxt, dwt, dbt = torch_conv(x, w, b, (1, 1), (p, p), (1, 1), dy)
        dx, dw, db = conv2d_backward(dy, x, w, 1, p, algorithm="batched")
        np.testing.assert_allclose(dx, dxt, atol=1e-10)
        np.testing.assert_allclose(dw, dwt, atol=1e-10)
        np.testing.assert_allclose(db, dbt, atol=1e-10)


def test_batched_backward_repeats_bit_for_bit():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((33, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((33, 24, 8, 8)).astype(np.float32)
    assert _conv.use_batched(33, 64, backward=True)
    first = conv2d_backward(dy, x, w, 1, 1)
    for _ in range(3):
        again = conv2d_backward(dy, x, w, 1, 1)
        for a, b in zip(first, again, strict=True):
            assert np.array_equal(a, b)


PATHS = ["auto", "im2col", "shifted", "batched"]
LAYERS = [
    # (N, C, H, K, k, stride, padding, dilation): every path of conv2d_forward
    (3, 1, 9, 4, 3, 1, 1, 1),  # im2col / batched (one channel: "auto" keeps the GEMM kernel)
    (2, 20, 11, 6, 3, 1, 2, 2),  # shifted GEMM, padded
    (2, 5, 7, 6, 1, 1, 0, 1),  # 1x1 one-GEMM path
    (1, 4, 10, 3, 2, 2, 1, 1),  # strided, one image
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_relu_epilogue_equals_unfused_bit_for_bit(path, layer, dtype, with_bias):
    N, C, H, K, k, s, p, d = layer
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, C, H, H)).astype(dtype)
    x[0, 0, 0, :3] = np.nan  # NaN propagates through the ReLU, as torch.relu
    w = rng.standard_normal((K, C, k, k)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if with_bias else None
    alg = "im2col" if path == "shifted" and s != 1 else path  # shifted: stride 1 only
    plain = conv2d(x, w, b, s, p, d, algorithm=alg)
    fused = conv2d_relu(x, w, b, s, p, d, algorithm=alg)
    kernel = _conv.conv2d_forward(x, w, b, (s, s), (p, p), (d, d), activation="relu", path=path)
    want = relu(plain)
    assert np.isnan(want).any()
    np.testing.assert_array_equal(fused, want)  # NaN in the same places, equal elsewhere
    np.testing.assert_array_equal(kernel, want)
    assert not np.signbit(fused[fused == 0]).any()  # +0, never -0, as relu


def test_fused_relu_grouped_and_against_float64():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 6, 7, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    y = conv2d_relu(x, w, b, 1, 1, 1, 2)
    np.testing.assert_array_equal(y, relu(conv2d(x, w, b, 1, 1, 1, 2)))
    ref = np.maximum(conv2d_ref(x, w, b, (1, 1), (1, 1)), 0)
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_fused_relu_rejects_bad_input_like_conv2d():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="bias"):
        conv2d_relu(x, np.zeros((2, 3, 3, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="channels"):
        conv2d_relu(x, np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(TypeError):
        conv2d_relu(x, np.zeros((2, 3, 3, 3), np.float64))
    with pytest.raises(ValueError, match="activation"):
        _conv.conv2d_forward(
            x, np.zeros((2, 3, 3, 3), np.float32), None, (1, 1), (0, 0), (1, 1), activation="tanh"
        )


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 1),
    st.integers(1, 2),
    st.sampled_from([np.float32, np.float64]),
)
def test_relu_max_pool_equals_pool_of_relu(k, s, d, p, n, dtype):
    rng = np.random.default_rng(k * 100 + s * 10 + d)
    H = d * (k - 1) + 1 + 2 * s
    x = rng.standard_normal((n, 3, H, H + 1)).astype(dtype)
    x[..., ::2, :] = -np.abs(x[..., ::2, :])  # windows whose maximum is negative
    x[0, 0, 0, 0] = np.nan
    p = min(p, (d * (k - 1) + 1) // 2)
    got = relu_max_pool2d(x, k, s, p, d)
    want = max_pool2d_values(relu(x), k, s, p, d)
    np.testing.assert_array_equal(got, want)
