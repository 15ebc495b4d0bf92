"""Finite-difference gradient checks of whole modules and losses (float64; tiny shapes only)."""

from __future__ import annotations

import numpy as np

from cnncore.nn import no_grad
from tests.reference import numerical_grad


def check_module_gradients(module, x, seed=0, rtol=1e-6, atol=1e-8, eps=1e-6, check_input=True):
    """Check ``module.backward`` (input gradient and every trainable parameter's ``.grad``)
    against central differences of ``L = sum(module(x) * r)`` for a fixed random ``r``.

    ``module`` must be in float64 (``module.double()``) and deterministic in its current mode.
    Returns the analytic input gradient.
    """
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    y = module(x)
    r = rng.standard_normal(np.shape(y))
    module.zero_grad()
    dx = module.backward(r.copy())

    def loss_of_input(xx):
        with no_grad():
            return float(np.sum(module(xx) * r))

    if check_input:
        num = numerical_grad(loss_of_input, x, eps)
        np.testing.assert_allclose(dx, num, rtol=rtol, atol=atol, err_msg="input gradient")
    for name, p in module.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, f"frozen {name} got a gradient"
            continue
        original = p.data.copy()

        def loss_of_param(w, p=p):
            p.data = w
            with no_grad():
                return float(np.sum(module(x) * r))

        num = numerical_grad(loss_of_param, original, eps)
        p.data = original
        assert p.grad is not None, f"no gradient for {name}"
        np.testing.assert_allclose(p.grad, num, rtol=rtol, atol=atol, err_msg=name)
    return dx


def check_loss_gradient(loss, scores, targets, rtol=1e-6, atol=1e-8, eps=1e-6):
    """``loss.backward()`` against central differences of ``loss(scores, targets)``."""
    scores = np.asarray(scores, dtype=np.float64)
    loss(scores, targets)
    g = loss.backward()
    num = numerical_grad(lambda s: loss(s, targets), scores, eps)
    np.testing.assert_allclose(g, num, rtol=rtol, atol=atol)
    return g
