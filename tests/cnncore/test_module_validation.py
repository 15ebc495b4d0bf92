"""Modules validate their hyper-parameters at construction with the rules of their functional
twin, and every backward checks its ``dy`` (not None, the forward's shape, dtype and device) with
errors that name the module.  Integers of any size give a ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore import nn
from tests.cnncore.layers import NOT_LISTED, every_layer

X = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)


@pytest.mark.parametrize(
    "build, exc, match",
    [
        (lambda: nn.LocalContrastNorm(threshold=0), ValueError, "threshold"),
        (lambda: nn.LocalContrastNorm(sigma=float("nan")), ValueError, "sigma"),
        (lambda: nn.LocalContrastNorm(divisor="median"), ValueError, "divisor"),
        (lambda: nn.LocalResponseNorm(3, alpha=-1.0), ValueError, "alpha"),
        (lambda: nn.LocalResponseNorm(3, beta=float("inf")), ValueError, "beta"),
        (lambda: nn.LocalResponseNorm(3, k=0.0), ValueError, "k must be > 0"),
        (lambda: nn.Conv2d(4, 2, 3, dtype=np.float16), TypeError, "dtype"),
        (lambda: nn.Conv2d(4, 2, 3, dtype=np.int32), TypeError, "dtype"),
        (lambda: nn.Linear(4, 2, dtype=np.float16), TypeError, "dtype"),
        (lambda: nn.Linear(4, 2, bias="yes"), TypeError, "bias"),
        (lambda: nn.MaxPool2d(3, padding=2), ValueError, "padding"),
        (lambda: nn.AvgPool2d(2, padding=(0, 2)), ValueError, "padding"),
        (lambda: nn.AvgPool2d(2, count_include_pad="yes"), TypeError, "count_include_pad"),
        (lambda: nn.Softmax(dim=1.5), TypeError, "dim"),
        (lambda: nn.LogSoftmax(dim="1"), TypeError, "dim"),
        (lambda: nn.Dropout(p=float("nan")), ValueError, "p"),
        (lambda: nn.CrossEntropyLoss(ignore_index=2**63), ValueError, "ignore_index"),
        (lambda: nn.RankingHingeLoss(margin=float("nan")), ValueError, "margin"),
        (lambda: nn.Conv2d(4, 2, 3, stride=2**63), ValueError, "stride"),
        (lambda: nn.Conv2d(4, 2, (3, 2**64)), ValueError, "kernel_size"),
        (lambda: nn.MaxPool2d(2, dilation=np.uint64(2**63)), ValueError, "dilation"),
        (lambda: nn.LocalResponseNorm(2**63), ValueError, "size"),
        (lambda: nn.LocalContrastNorm(10**30), ValueError, "size"),
        (lambda: nn.ChannelMaxPool(2**64), ValueError, "pool_size"),
        (lambda: nn.Linear(2**63, 2), ValueError, "in_features"),
        (lambda: nn.Linear(2**40, 2**40), ValueError, "too large"),
    ],
)
def test_constructors_refuse_what_the_functional_twin_refuses(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


def test_lrn_accepts_a_negative_beta_like_torch_and_functional():
    torch = pytest.importorskip("torch")
    m = nn.LocalResponseNorm(3, alpha=0.1, beta=-0.5, k=2.0)
    want = torch.nn.LocalResponseNorm(3, alpha=0.1, beta=-0.5, k=2.0)(torch.tensor(X)).numpy()
    np.testing.assert_allclose(m(X), want, rtol=1e-5)
    np.testing.assert_array_equal(m(X), F.local_response_norm(X, 3, 0.1, -0.5, 2.0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: F.conv2d(X, X[:2, :, :3, :3], stride=2**63), "stride"),
        (lambda: F.conv2d(X, X[:2, :, :3, :3], padding=(0, 2**70)), "padding"),
        (lambda: F.conv2d(X, X[:2, :, :3, :3], dilation=np.uint64(2**64 - 1)), "dilation"),
        (lambda: F.conv2d(X, X[:2, :2, :3, :3], groups=2**63), "groups"),
        (lambda: F.max_pool2d(X, 2**63), "kernel_size"),
        (lambda: F.avg_pool2d(X, 2, stride=-(2**63) - 1), "stride"),
        (lambda: F.local_response_norm(X, 2**63), "size"),
        (lambda: F.local_contrast_norm(X, 2**64), "size"),
        (lambda: F.channel_max_pool(X, 10**30), "pool_size"),
        (lambda: F.softmax(X, 2**63), "axis"),
        (lambda: F.im2col(X[0], 2, stride=2**63), "stride"),
        (lambda: F.avg_pool2d_backward(X, (2, 4, 2**63, 6), 2), "input_shape"),
        (lambda: F.max_pool2d_backward(X, np.zeros(X.shape, np.int64), (2, 4, 2**64, 6)), "input"),
    ],
)
def test_huge_integers_are_value_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("dt", [">f4", ">f8"])
def test_byte_swapped_floats_are_refused_with_a_type_error(dt):
    for call in (
        lambda a: F.relu(a),
        lambda a: F.conv2d(a, X[:2, :, :3, :3].astype(a.dtype)),
        lambda a: F.max_pool2d(a, 2),
        lambda a: nn.ReLU()(a),
    ):
        with pytest.raises(TypeError, match="byte-swapped"):
            call(X.astype(dt))


def _layers():
    return every_layer(X)


def test_the_layer_list_names_every_layer_class():
    classes = {
        name
        for name in nn.__all__
        if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)
    }
    listed = {name.split("-")[0] for name in _layers()}
    assert listed == classes - NOT_LISTED


@pytest.mark.parametrize("name", sorted(_layers()))
def test_backward_checks_dy_and_names_the_module(name):
    module, x = _layers()[name]
    y = module(x)
    # the class checks dy ("Dropout-eval" is a Dropout); a Sequential hands dy to its last layer
    name = type(module[-1] if isinstance(module, nn.Sequential) else module).__name__
    with pytest.raises(TypeError, match=rf"{name}\.backward: dy must be an array"):
        module.backward(None)
    with pytest.raises(TypeError, match=rf"{name}\.backward: dy has dtype float64"):
        module.backward(np.ones(y.shape, np.float64))  # no silent float64 dx for float32
    with pytest.raises(ValueError, match=rf"{name}\.backward: dy must have the output shape"):
        module.backward(np.ones((*y.shape[:-1], y.shape[-1] + 1), y.dtype))
    dx = module.backward(np.ones(y.shape, y.dtype))
    assert dx.dtype == x.dtype and dx.shape == x.shape


@pytest.mark.parametrize("name", ["ReLU", "Flatten", "Dropout", "MaxPool2d"])
def test_float64_forward_keeps_float64_and_float32_keeps_float32(name):
    module, x = _layers()[name]
    for dt in (np.float32, np.float64):
        y = module(x.astype(dt))
        assert module.backward(np.ones(y.shape, dt)).dtype == dt


def test_eval_dropout_backward_checks_dy_too():
    d = nn.Dropout(0.5).eval()
    y = d(X)
    assert y is X and d.backward(X) is X
    with pytest.raises(TypeError, match="Dropout"):
        d.backward(None)
    with pytest.raises(ValueError, match="Dropout"):
        d.backward(X[:1])


def test_load_state_dict_of_a_non_mapping_is_a_type_error():
    with pytest.raises(TypeError, match="mapping"):
        nn.Sequential(nn.Linear(2, 1)).load_state_dict([np.zeros((1, 2)), np.zeros(1)])
