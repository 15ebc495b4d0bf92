"""bench/space_to_batch.py: the measured alternative strategy for dilated convolutions computes
the dilated convolution and its gradients (against PyTorch, float64)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.space_to_batch import conv2d_s2b, conv2d_s2b_backward, from_batch, to_batch


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(0, 5)
)
def test_space_to_batch_is_the_dilated_convolution(kh, kw, dh, dw, extra):
    rng = np.random.default_rng(extra)
    H, W = dh * (kh - 1) + 1 + extra, dw * (kw - 1) + 2 + extra // 2
    x = rng.standard_normal((2, 3, H, W))
    w, b = rng.standard_normal((4, 3, kh, kw)), rng.standard_normal(4)
    np.testing.assert_array_equal(from_batch(to_batch(x, (dh, dw)), 2, (dh, dw), (H, W)), x)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = TF.conv2d(xt, wt, bt, dilation=(dh, dw))
    np.testing.assert_allclose(
        conv2d_s2b(x, w, b, (dh, dw)), yt.detach().numpy(), rtol=1e-12, atol=1e-12
    )
    dy = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(dy))
    dx, dw_, db = conv2d_s2b_backward(dy, x, w, (dh, dw))
    for got, want in ((dx, xt.grad), (dw_, wt.grad), (db, bt.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-11, atol=1e-11)
