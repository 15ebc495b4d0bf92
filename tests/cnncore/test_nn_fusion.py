"""Sequential runs conv -> ReLU and ReLU -> MaxPool2d fused: outputs and gradients must equal, bit
for bit, those of running the same modules one by one."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore import dense, models, nn
from cnncore.nn.fusion import run_chain
from cnncore.nn.module import no_grad


def unfused_forward(seq, x):
    for m in seq:
        x = m(x)
    return x


def net(dtype):
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, dtype=dtype, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1, dtype=dtype),
        nn.Tanh(),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5, dtype=dtype),
    )


def grads(seq):
    return [None if p.grad is None else p.grad.copy() for p in seq.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sequential_equals_layer_by_layer_in_eval_and_training(dtype):
    rng = np.random.default_rng(0)
    seq = net(dtype)
    x = rng.standard_normal((3, 3, 8, 8)).astype(dtype)
    x[0, 0, 0, 0] = np.nan  # NaN takes the same way through fused and unfused layers
    seq.eval()
    with no_grad():
        np.testing.assert_array_equal(seq(x), unfused_forward(seq, x))
    seq.train()
    x = rng.standard_normal((3, 3, 8, 8)).astype(dtype)
    y = seq(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    seq.zero_grad()
    dx = seq.backward(dy)
    g = grads(seq)
    y2 = unfused_forward(seq, x)
    seq.zero_grad()
    dx2 = seq.backward(dy)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, dx2)
    for a, b in zip(g, grads(seq), strict=True):
        np.testing.assert_array_equal(a, b)


def test_relu_max_pool_gradient_where_maxima_are_negative_or_tied():
    # every window of the first image is non-positive: the gradient must be zero there, fused or not
    x = -np.abs(np.random.default_rng(1).standard_normal((2, 2, 4, 4)))
    x[1] = np.abs(x[1])
    x[1, 0, :2, :2] = 1.0  # a tie inside one window
    seq = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    y = seq(x)
    dx = seq.backward(np.ones_like(y))
    y2 = unfused_forward(seq, x)
    dx2 = seq.backward(np.ones_like(y))
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, dx2)
    assert not dx[0].any() and dx[1, 0, 0, 0] == 1 and not dx[1, 0, :2, :2].ravel()[1:].any()


def test_gradient_by_finite_differences_through_fused_layers():
    rng = np.random.default_rng(2)
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2))
    x = rng.standard_normal((1, 2, 6, 6))
    dy = rng.standard_normal((1, 3, 2, 2))
    seq(x)
    dx = seq.backward(dy)
    eps, num = 1e-6, np.zeros_like(x)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.flat[i] += eps
        xm.flat[i] -= eps
        num.flat[i] = ((seq(xp) * dy).sum() - (seq(xm) * dy).sum()) / (2 * eps)
    np.testing.assert_allclose(dx, num, atol=1e-6)


class LoggingConv(nn.Conv2d):
    """A subclass that overrides forward: must not be fused (its forward would be skipped)."""

    def forward(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        return super().forward(x)


def test_subclass_overriding_forward_is_not_fused():
    conv = LoggingConv(1, 2, 3)
    y = run_chain([conv, nn.ReLU()], np.ones((1, 1, 5, 5), np.float32))
    assert conv.calls == 1 and y.shape == (1, 2, 3, 3)


def test_dense_predict_unchanged_by_fusion():
    # the d-sparse network fuses conv -> ReLU; its scores equal patch-by-patch classification
    model = models.toy15().eval()
    x = np.random.default_rng(3).standard_normal((1, 3, 9, 8)).astype(np.float32)
    fused = dense.predict(model, x, 15)
    net = dense.to_dense(model, 15)
    with no_grad():
        from cnncore.dense.tiling import block_ranges, window

        rows, cols = block_ranges((9, 8), net.plan.halo("dsparse"))
        unfused = unfused_forward(net, window(x, rows, cols))
    np.testing.assert_array_equal(fused, unfused)
    patch = dense.predict(model, x, 15, method="patchwise")
    np.testing.assert_allclose(fused, patch, rtol=1e-4, atol=1e-5)


def test_forward_replaced_on_an_instance_is_not_fused():
    conv, act = nn.Conv2d(1, 2, 3), nn.ReLU()
    calls = []
    plain = act.forward
    act.forward = lambda x: calls.append(1) or plain(x)
    run_chain([conv, act], np.ones((1, 1, 5, 5), np.float32))
    assert calls == [1]
