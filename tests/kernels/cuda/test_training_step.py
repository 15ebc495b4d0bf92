"""A training step end to end on the device (simulator) equals the same step on the CPU.

Parameters moved with ``model.to("cuda")``; forward, masked cross-entropy, backward and SGD with
momentum all run through the CUDA twins; every activation, gradient and parameter stays a device
array.
"""

from __future__ import annotations

import copy

import numpy as np

from cnncore import nn
from cnncore.optim import SGD
from tests.kernels.cuda.sim import dev, host


def net():
    nn.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.LocalResponseNorm(2, alpha=0.1),
        nn.Flatten(),
        nn.Linear(27, 4),
    )


def test_training_steps_match_the_cpu(small_launch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    t = np.array([1, -100], dtype=np.int64)  # the second sample is masked out
    cpu = net()
    gpu = copy.deepcopy(cpu).to("cuda")
    for p in gpu.parameters():
        assert hasattr(p.data, "__cuda_ndarray__")
    runs = []
    for model, xin, tin in [(cpu, x, t), (gpu, dev(x), dev(t))]:
        loss_fn, opt = nn.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = []
        for _ in range(2):
            opt.zero_grad()
            out = model(xin)
            losses.append(loss_fn(out, tin))
            dx = model.backward(loss_fn.backward())
            assert hasattr(dx, "__cuda_ndarray__") == (model is gpu)
            opt.step()
        runs.append(losses)
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-5)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        assert hasattr(pg.data, "__cuda_ndarray__") and hasattr(pg.grad, "__cuda_ndarray__"), name
        np.testing.assert_allclose(host(pg.data), pc.data, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(host(pg.grad), pc.grad, rtol=1e-4, atol=1e-6, err_msg=name)
