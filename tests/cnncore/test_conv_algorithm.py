"""Algorithm selection of conv2d: names, the "auto" rule, the autotuner, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore import nn
from cnncore.functional import conv_selection as alg_module
from cnncore_kernels import winograd as wg
from tests.reference import conv2d_ref


@pytest.fixture(autouse=True)
def _no_autotune():
    F.set_conv_autotune(False)
    F.clear_conv_autotune_cache()
    yield
    F.set_conv_autotune(False)
    F.clear_conv_autotune_cache()


def _data(N=2, C=16, H=9, W=8, K=16, k=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, k, k)).astype(dtype)
    return x, w, rng.standard_normal(K).astype(dtype)


@pytest.mark.parametrize(
    "x_shape,w_shape,kw,want",
    [
        ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "winograd"),
        ((64, 64, 15, 15), (64, 64, 5, 5), dict(padding=2), "winograd"),
        ((1, 128, 288, 288), (256, 128, 5, 5), dict(dilation=8), "winograd"),
        ((8, 3, 227, 227), (96, 3, 11, 11), dict(stride=4), "im2col"),
        # 2-8 channels: the forward by the fused stage (3x3 only without groups), the backward by
        # its adjoint (without groups)
        ((64, 3, 32, 32), (64, 3, 5, 5), dict(padding=2), "winograd"),
        ((32, 8, 28, 28), (16, 8, 5, 5), dict(padding=2), "winograd"),
        ((32, 9, 28, 28), (16, 9, 5, 5), dict(padding=2), "im2col"),
        ((16, 1, 28, 28), (20, 1, 5, 5), dict(), "im2col"),
        ((64, 3, 32, 32), (64, 3, 3, 3), dict(padding=1), "winograd"),
        ((16, 1, 28, 28), (20, 1, 3, 3), dict(), "im2col"),
        ((2, 6, 16, 16), (12, 3, 5, 5), dict(padding=2, groups=2), ("winograd", "batched")),
        # 14x14 outputs: columns over the batch in the backward (Ho*Wo <= 256), not the forward
        ((8, 64, 28, 28), (64, 64, 3, 3), dict(stride=2, padding=1), ("im2col", "batched")),
        ((8, 64, 28, 28), (64, 64, 2, 2), dict(), "shifted"),
        ((2, 64, 16, 16), (64, 16, 3, 3), dict(padding=1, groups=4), "winograd"),
        ((128, 256, 2, 2), (256, 256, 3, 3), dict(padding=1), "winograd"),  # saving 1.0
        ((64, 256, 3, 3), (512, 256, 3, 3), dict(), "batched"),  # 1x1 output: saving 0.25
        ((1, 256, 3, 3), (512, 256, 3, 3), dict(), "im2col"),  # one image: nothing to batch
        ((2, 64, 16, 16), (64, 8, 3, 3), dict(padding=1, groups=8), ("im2col", "batched")),
    ],
)
def test_rule(x_shape, w_shape, kw, want):
    forward, backward = (want, want) if isinstance(want, str) else want
    assert F.conv_algorithm(x_shape, w_shape, **kw) == forward
    assert F.conv_algorithm(x_shape, w_shape, backward=True, **kw) == backward


@pytest.mark.parametrize(
    "out_hw,r,d,want",
    [
        ((8, 8), 3, (1, 1), 4.0),
        ((2, 2), 3, (1, 1), 1.0),
        ((1, 1), 3, (1, 1), 0.25),
        ((16, 16), 5, (1, 1), 6.25),
        ((256, 256), 5, (8, 8), 6.25),
        ((12, 12), 5, (8, 8), 6.25 * (12 / 32) ** 2),
    ],
)
def test_winograd_saving(out_hw, r, d, want):
    assert alg_module.winograd_saving(out_hw, r, d) == pytest.approx(want)


def test_rule_never_picks_a_tile_above_1e_5():
    for r in alg_module.WINOGRAD_KERNELS:
        assert wg.ERROR_BOUND[wg.DEFAULT_TILE[r]] <= alg_module.WINOGRAD_ERROR_BOUND <= 1e-5


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "shifted", "winograd"])
@pytest.mark.parametrize("p,d,groups", [(1, 1, 1), (2, 2, 2), (0, 3, 1)])
def test_every_algorithm_matches_float64_loops(algorithm, p, d, groups):
    x, w, b = _data(C=4 * groups, K=3 * groups)
    w = np.ascontiguousarray(w[:, :4])
    y = F.conv2d(x, w, b, 1, p, d, groups, algorithm)
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, (1, 1), (p, p), (d, d)), atol=1e-10)


def test_auto_runs_the_algorithm_conv_algorithm_names():
    x, w, b = _data(dtype=np.float32)
    name = F.conv_algorithm(x.shape, w.shape, 1, 1, 1, 1, np.float32)
    np.testing.assert_array_equal(F.conv2d(x, w, b, 1, 1), F.conv2d(x, w, b, 1, 1, algorithm=name))
    dy = np.ones((2, 16, 9, 8), np.float32)
    got = F.conv2d_backward(dy, x, w, 1, 1)
    name_b = F.conv_algorithm(x.shape, w.shape, 1, 1, backward=True)
    for a, b_ in zip(got, F.conv2d_backward(dy, x, w, 1, 1, algorithm=name_b), strict=True):
        np.testing.assert_array_equal(a, b_)


def test_autotuner_measures_once_caches_and_is_deterministic():
    x, w, b = _data(dtype=np.float32)
    F.set_conv_autotune(True)
    assert F.conv_autotune_enabled()
    y1 = F.conv2d(x, w, b, 1, 1)
    choice = F.conv_algorithm(x.shape, w.shape, 1, 1, dtype=np.float32)
    assert choice in ("im2col", "shifted", "batched", "winograd")
    key = alg_module._key(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, np.float32, False)
    assert alg_module._cache[key] == choice
    for _ in range(3):  # cached: same algorithm, bit-identical result
        np.testing.assert_array_equal(F.conv2d(x, w, b, 1, 1), y1)
    np.testing.assert_array_equal(y1, F.conv2d(x, w, b, 1, 1, algorithm=choice))
    assert len(alg_module._cache) == 1
    dy = np.ones_like(y1)
    F.conv2d_backward(dy, x, w, 1, 1)
    assert len(alg_module._cache) == 2  # the backward has its own key
    F.clear_conv_autotune_cache()
    assert not alg_module._cache


def test_autotuner_only_tries_applicable_algorithms():
    x, w, b = _data(k=3)
    F.set_conv_autotune(True)
    y = F.conv2d(x, w, b, stride=2, padding=1)  # stride 2: im2col or batched only
    choice = F.conv_algorithm(x.shape, w.shape, stride=2, padding=1, dtype=np.float64)
    assert choice in ("im2col", "batched")
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, (2, 2), (1, 1)), atol=1e-10)


@pytest.mark.parametrize("bad", ["Winograd", "fft", "", None, 3, ("im2col",)])
def test_unknown_algorithm_is_refused(bad):
    x, w, b = _data()
    with pytest.raises(ValueError, match="algorithm"):
        F.conv2d(x, w, b, algorithm=bad)
    with pytest.raises(ValueError, match="algorithm"):
        F.conv2d_backward(np.ones((2, 16, 7, 6)), x, w, algorithm=bad)


@pytest.mark.parametrize(
    "k,stride,algorithm",
    [(3, 2, "winograd"), (3, 2, "shifted"), (4, 1, "winograd"), (7, 1, "winograd")],
)
def test_inapplicable_algorithm_is_refused(k, stride, algorithm):
    x, w, b = _data(H=12, W=12, k=k)
    with pytest.raises(ValueError, match=f"algorithm='{algorithm}'.*x shape"):
        F.conv2d(x, w, b, stride, algorithm=algorithm)


def test_non_square_kernel_is_refused_by_winograd():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((2, 2, 3, 5))
    with pytest.raises(ValueError, match="square 3x3 or 5x5.*weight shape"):
        F.conv2d(x, w, algorithm="winograd")


def test_autotune_flag_must_be_bool():
    with pytest.raises(TypeError, match="enabled"):
        F.set_conv_autotune("yes")


def test_conv2d_layer_takes_an_algorithm():
    x, _, _ = _data(C=4, K=4)
    layer = nn.Conv2d(4, 5, 3, padding=1, dtype=np.float64, algorithm="im2col")
    ref = nn.Conv2d(4, 5, 3, padding=1, dtype=np.float64)
    ref.weight.data[...] = layer.weight.data
    ref.bias.data[...] = layer.bias.data
    np.testing.assert_allclose(layer(x), ref(x), atol=1e-12)
    assert "algorithm='im2col'" in repr(layer)
    with pytest.raises(ValueError, match="algorithm"):
        nn.Conv2d(4, 5, 3, algorithm="fft")


def test_conv_algorithm_checks_its_shapes():
    with pytest.raises(ValueError, match="groups=2"):
        F.conv_algorithm((1, 3, 8, 8), (4, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="x_shape"):
        F.conv_algorithm((1, 3, 8), (4, 3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        F.conv_algorithm((1, 3, 8, 8), (4, 3, 3, 3), padding=-1)
