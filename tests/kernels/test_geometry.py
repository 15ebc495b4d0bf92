"""The one output-size rule: ``geometry.out_size`` (Python) against PyTorch's output shapes, and the
Cython twins (``_geometry.pxd``, cimported by the convolution and pooling kernels) against it."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from cnncore_kernels import _conv, conv, pooling
from cnncore_kernels.geometry import out_size

TF = torch.nn.functional

geometry = st.tuples(
    st.integers(1, 12),  # size
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
    st.integers(1, 3),  # dilation
)


@given(geometry)
def test_out_size_is_torch_rule(g):
    size, k, s, p, d = g
    assume(p <= k // 2)  # torch's pooling rule, so the same geometry serves both
    expected = None
    x = torch.zeros(1, 1, size, size + 1)
    if d * (k - 1) + 1 <= size + 2 * p:
        expected = TF.max_pool2d(x, k, s, p, d).shape[2:]
        assert TF.conv2d(x, torch.zeros(1, 1, k, k), None, s, p, d).shape[2:] == expected
        assert (out_size(size, k, s, p, d), out_size(size + 1, k, s, p, d)) == tuple(expected)
    else:
        assert out_size(size, k, s, p, d) <= 0  # the window does not fit


def test_out_size_floors_a_negative_quotient():
    assert out_size(1, 3, 2, 0, 1) == 0  # floor(-3 / 2) + 1, not trunc
    assert out_size(1, 5, 2, 0, 1) == -1
    assert out_size(3, 5, 2, 0, 1) == 0


@given(geometry, st.sampled_from((np.float32, np.float64)))
def test_cython_twins_use_the_same_rule(g, dtype):
    size, k, s, p, d = g
    assume(p <= k // 2 and d * (k - 1) + 1 <= size + 2 * p)
    out = (out_size(size, k, s, p, d), out_size(size + 2, k, s, p, d))
    pair = ((k, k), (s, s), (p, p), (d, d))
    x = np.ones((1, 2, size, size + 2), dtype=dtype)
    w = np.ones((3, 2, k, k), dtype=dtype)
    for algorithm in ("im2col", "winograd") if (k, s) == (3, 1) else ("im2col",):
        y = conv.conv2d_forward(x, w, None, pair[1], pair[2], pair[3], algorithm=algorithm)
        assert y.shape == (1, 3, *out), algorithm
    assert _conv.im2col(x[0], *pair).shape == (2 * k * k, out[0] * out[1])
    assert pooling.avg_pool2d(x, *pair, True).shape == (1, 2, *out)
    values, _ = pooling.max_pool2d(x, *pair)
    assert values.shape == (1, 2, *out)
