"""The Cython entry points take their read-only inputs as ``const`` memoryviews: read-only and
memory-mapped arrays go straight in (no copy, no "buffer source array is read-only"), and the
results equal those of writable inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels import _activation, _conv, _linear, _loss, _normalization, _pooling


def frozen(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


rng = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entry_points_accept_read_only_inputs(dtype):
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal((2, 4, 4, 4)).astype(dtype)
    m = rng.standard_normal((5, 3)).astype(dtype)
    t = np.array([0, 2, 1, 1, 0], dtype=np.int64)
    geo = ((1, 1), (0, 0), (1, 1))
    calls = [
        lambda a: _conv.conv2d_forward(a(x), a(w), a(b), *geo),
        lambda a: _conv.conv2d_backward(a(dy), a(x), a(w), *geo),
        lambda a: _conv.im2col(a(x[0]), (3, 2), *geo),
        lambda a: _conv.col2im(a(_conv.im2col(x[0], (3, 2), *geo)), (3, 6, 5), (3, 2), *geo),
        lambda a: _linear.matmul(a(m), a(m), trans_b=True),
        lambda a: _normalization.local_response_norm(a(x), 3, 1e-2, 0.75, 1.0),
        lambda a: _normalization.local_response_norm_backward(a(x), a(x), 3, 1e-2, 0.75, 1.0),
        lambda a: _normalization.local_contrast_norm(a(x), 3, 1.0, 1e-4, "mean"),
        lambda a: _normalization.local_contrast_norm_backward(a(x), a(x), 3, 1.0, 1e-4, "mean"),
        lambda a: _activation.relu(a(x)),
        lambda a: _activation.relu_backward(a(x), a(x)),
        lambda a: _activation.tanh_backward(a(x), a(x)),
        lambda a: _activation.dropout(a(x), 12345, 2**23, 2.0),
        lambda a: _activation.softmax(a(x), 1),
        lambda a: _activation.log_softmax_backward(a(x), a(x), 1),
        lambda a: _loss.cross_entropy(a(m), a(t), -100),
        lambda a: _pooling.max_pool2d(a(x), (2, 2), (2, 2), (0, 0), (1, 1)),
    ]
    for call in calls:
        want = call(np.array)
        got = call(frozen)
        for g, w_ in zip(
            want if isinstance(want, tuple) else (want,),
            got if isinstance(got, tuple) else (got,),
            strict=True,
        ):
            np.testing.assert_array_equal(w_, g)
