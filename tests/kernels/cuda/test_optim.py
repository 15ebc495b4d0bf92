"""CUDA SGD update against the CPU twin: in place, every option, several steps (simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels import optim as cpu
from cnncore_kernels.cuda import optim as G
from tests.kernels.cuda.sim import dev, host


@pytest.mark.parametrize(
    "momentum, weight_decay, dampening, nesterov",
    [(0.0, 0.0, 0.0, False), (0.0, 0.01, 0.0, False), (0.9, 0.0, 0.0, False),
     (0.9, 0.05, 0.1, False), (0.8, 0.01, 0.0, True)],
)  # fmt: skip
def test_sgd_step(launch, momentum, weight_decay, dampening, nesterov):
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3, 5)).astype(np.float32)
    buf = np.zeros_like(p) if momentum else None
    pd, bd = dev(p), (dev(buf) if momentum else None)
    for step in range(3):
        g = rng.standard_normal(p.shape).astype(np.float32)
        args = (0.1, momentum, weight_decay, dampening, nesterov, step == 0)
        cpu.sgd_step(p, g, buf, *args)
        assert G.sgd_step(pd, dev(g), bd, *args) is None  # in place
    np.testing.assert_allclose(host(pd), p, rtol=1e-6, atol=1e-7)
    if momentum:
        np.testing.assert_allclose(host(bd), buf, rtol=1e-6, atol=1e-7)


def test_sgd_refuses_a_non_contiguous_parameter():
    p = dev(np.zeros((4, 4), np.float32))[:, ::2]
    with pytest.raises(ValueError, match="in place"):
        G.sgd_step(p, dev(np.zeros((4, 2), np.float32)), None, 0.1, 0.0, 0.0, 0.0, False, True)
