"""SGD and the step schedules against torch.optim, freezing, state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnncore.nn import Parameter
from cnncore.optim import SGD, MultiStepLR, StepLR

CASES = [
    dict(momentum=0.0, weight_decay=0.0),
    dict(momentum=0.9, weight_decay=5e-4),
    dict(momentum=0.9, weight_decay=0.01, dampening=0.1),
    dict(momentum=0.5, weight_decay=0.0, nesterov=True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hyper", CASES)
def test_sgd_matches_torch_over_steps(hyper, dtype):
    rng = np.random.default_rng(0)
    shapes = [(3, 2, 2, 2), (3,), (4, 5)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = SGD([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.05}], lr=0.1, **hyper)
    topt = torch.optim.SGD(
        [{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.05}], lr=0.1, **hyper
    )
    sched, tsched = StepLR(opt, 2, 0.5), torch.optim.lr_scheduler.StepLR(topt, 2, 0.5)
    for step in range(7):
        for p, t in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad, t.grad = g.copy(), torch.tensor(g.copy())
        if step == 3:  # a parameter without gradient is skipped (torch too)
            ours[1].grad, theirs[1].grad = None, None
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for p, t in zip(ours, theirs, strict=True):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=tol, atol=tol)


def test_frozen_parameter_untouched_and_buffer_kept():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = SGD([p, q], lr=0.1, momentum=0.9)
    p.grad = q.grad = np.ones(3)
    opt.step()
    q.requires_grad = False
    before = q.data.copy()
    p.grad = q.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(q.data, before)
    np.testing.assert_allclose(p.data, 1 - 0.1 - 0.1 * 1.9)


def test_multistep_matches_torch():
    p, t = Parameter(np.zeros(1)), torch.zeros(1, requires_grad=True)
    opt, topt = SGD([p], lr=1.0), torch.optim.SGD([t], lr=1.0)
    s = MultiStepLR(opt, [2, 5, 5], 0.1)
    ts = torch.optim.lr_scheduler.MultiStepLR(topt, [2, 5, 5], 0.1)
    for _ in range(8):
        opt.step()
        topt.step()
        s.step()
        ts.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-15)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4) for _ in range(6)]
    a = Parameter(np.zeros(4))
    opt_a = SGD([a], lr=0.1, momentum=0.9, weight_decay=1e-3)
    for g in grads[:3]:
        a.grad = g
        opt_a.step()
    b = Parameter(a.data.copy())
    opt_b = SGD([b], lr=0.5)  # other hyper-parameters: restored from the state
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.param_groups[0]["momentum"] == 0.9
    for g in grads[3:]:
        a.grad, b.grad = g, g
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_refuses_mismatch_and_stays_untouched():
    p = Parameter(np.zeros(4))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.ones(4)
    opt.step()
    good = opt.state_dict()
    bad = {"param_groups": good["param_groups"], "state": {0: {"momentum_buffer": np.ones(5)}}}
    other = SGD([Parameter(np.zeros(4))], lr=0.3, momentum=0.1)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(bad)
    assert other.param_groups[0]["lr"] == 0.3 and other._buffers == {}
    with pytest.raises(ValueError, match="groups"):
        other.load_state_dict({"param_groups": [], "state": {}})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lr=-1.0), "lr"),
        (dict(lr=0.1, momentum=-0.5), "momentum"),
        (dict(lr=0.1, nesterov=True), "nesterov"),
        (dict(lr=float("nan")), "lr"),
    ],
)
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([Parameter(np.zeros(2))], **kwargs)


def test_bad_params_and_gradients():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameter"):
        SGD([np.zeros(2)], lr=0.1)
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="twice"):
        SGD([p, p], lr=0.1)
    opt = SGD([p], lr=0.1)
    p.grad = np.zeros(3)
    with pytest.raises(ValueError, match="gradient"):
        opt.step()
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, 0)
