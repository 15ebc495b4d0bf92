"""The SPEC.md bad-input list for conv2d / conv2d_backward: right exception, argument named."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore.functional import col2im, conv2d, conv2d_backward, im2col

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


class FakeDeviceArray:
    """Anything exposing the CUDA array interface counts as a GPU array."""

    __cuda_array_interface__ = {"shape": (2, 3, 8, 8), "typestr": "<f4", "data": (0, False)}
    shape = (2, 3, 8, 8)
    dtype = np.dtype(np.float32)


@pytest.mark.parametrize(
    "kwargs,exc,words",
    [
        (dict(x=np.zeros((3, 8, 8), np.float32)), ValueError, ["x", "dimensions", "(3, 8, 8)"]),
        (dict(x=X.astype(np.int32)), TypeError, ["x", "int32"]),
        (dict(weight=W.astype(np.float64)), TypeError, ["weight", "float64"]),
        (dict(weight=np.zeros((4, 2, 3, 3), np.float32)), ValueError, ["channels", "(4, 2, 3, 3)"]),
        (dict(weight=np.zeros((4, 3, 11, 3), np.float32)), ValueError, ["kernel", "larger"]),
        (dict(dilation=5), ValueError, ["kernel", "larger"]),
        (dict(weight=np.zeros((0, 3, 3, 3), np.float32)), ValueError, ["weight", "empty"]),
        (dict(x=np.zeros((2, 3, 0, 8), np.float32)), ValueError, ["x", "empty"]),
        (dict(stride=0), ValueError, ["stride", ">= 1"]),
        (dict(stride=(1, -1)), ValueError, ["stride"]),
        (dict(dilation=0), ValueError, ["dilation"]),
        (dict(padding=-1), ValueError, ["padding", ">= 0"]),
        (dict(padding=(1, 2, 3)), ValueError, ["padding"]),
        (dict(stride=1.5), TypeError, ["stride"]),
        (dict(stride=True), TypeError, ["stride"]),
        (dict(bias=np.zeros(5, np.float32)), ValueError, ["bias", "(5,)"]),
        (dict(bias=np.zeros(4, np.float64)), TypeError, ["bias"]),
        (dict(x=FakeDeviceArray()), TypeError, ["weight", "GPU"]),
    ],
)
def test_conv2d_refuses_bad_input(kwargs, exc, words):
    args = dict(x=X, weight=W, bias=None, stride=1, padding=0, dilation=1)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        conv2d(**args)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


class Shaped:
    def __init__(self, shape):
        self.shape = shape


@pytest.mark.parametrize(
    "x_shape,w_shape",
    [((1, 1, 70000, 70000), (1, 1, 1, 1)), ((1, 2**20, 64, 64), (1, 2**20, 50, 50))],
)
def test_conv_geometry_refuses_sizes_beyond_32bit_blas(x_shape, w_shape):
    # the geometry check runs on shapes alone, before any array of that size exists
    from cnncore.functional.conv import _conv_geometry

    with pytest.raises(ValueError, match="too large"):
        _conv_geometry(Shaped(x_shape), Shaped(w_shape), 1, 0, 1)


def test_conv2d_backward_checks_dy_shape_and_dtype():
    dy = np.zeros((2, 4, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"dy.*\(2, 4, 6, 6\)"):
        conv2d_backward(dy, X, W, padding=1)
    with pytest.raises(TypeError, match="dy"):
        conv2d_backward(dy.astype(np.float64), X, W)
    with pytest.raises(ValueError, match="dy"):
        conv2d_backward(np.zeros((2, 4, 6), np.float32), X, W)


def test_im2col_col2im_validate():
    with pytest.raises(ValueError, match="x"):
        im2col(np.zeros((3, 8), np.float32), 3)
    with pytest.raises(ValueError, match="col"):
        col2im(np.zeros((27, 10), np.float32), (3, 8, 8), 3)
    with pytest.raises(ValueError, match="input_shape"):
        col2im(np.zeros((27, 36), np.float32), (3, 8), 3)
