"""The engine's own device paths under Numba's CUDA simulator (tiny shapes): Concat joins and
splits device arrays without a host round trip, Flatten reshapes them, the Trainer moves batches
and targets to the device, and Dropout in training mode draws the CPU's masks on the device."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

if "numba.cuda" in sys.modules:  # the simulator must be chosen before numba.cuda is imported
    from numba.cuda.core import config as _cuda_config

    if not _cuda_config.ENABLE_CUDASIM:
        pytest.skip("numba.cuda already imported without the simulator", allow_module_level=True)

import cnncore.nn as nn  # noqa: E402
from cnncore.optim import SGD  # noqa: E402
from cnncore.train import Trainer  # noqa: E402
from tests.kernels.cuda.sim import (  # noqa: E402  (importing it turns the simulator on)
    SMALL_TILES,
    dev,
    host,
    launch_config,
    use_tiles,
)


@pytest.fixture(autouse=True)
def simulator_sized(monkeypatch):
    """Small GEMM tiles and launches: the simulator runs every CUDA thread in Python."""
    use_tiles(monkeypatch, SMALL_TILES)
    with launch_config(threads=32, max_blocks=2):
        yield


def is_device(a):
    return hasattr(a, "__cuda_ndarray__") or hasattr(a, "__cuda_array_interface__")


def test_concat_and_flatten_on_device_match_cpu():
    nn.manual_seed(0)
    cpu = nn.Sequential(nn.Concat(nn.Conv2d(1, 2, 1), nn.Conv2d(1, 1, 1)), nn.Flatten())
    gpu = copy.deepcopy(cpu).to("cuda")
    x = np.random.default_rng(0).standard_normal((2, 1, 2, 2)).astype(np.float32)
    yc, yg = cpu(x), gpu(dev(x))
    assert is_device(yg) and yg.shape == (2, 12)
    np.testing.assert_allclose(host(yg), yc, rtol=1e-6, atol=1e-7)
    dy = np.random.default_rng(1).standard_normal(yc.shape).astype(np.float32)
    dxc, dxg = cpu.backward(dy), gpu.backward(dev(dy))
    assert is_device(dxg) and dxg.shape == x.shape
    np.testing.assert_allclose(host(dxg), dxc, rtol=1e-5, atol=1e-6)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        np.testing.assert_allclose(host(pg.grad), pc.grad, rtol=1e-5, atol=1e-6, err_msg=name)


def test_trainer_runs_on_device_like_on_cpu():
    nn.manual_seed(1)
    cpu = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    gpu = copy.deepcopy(cpu).to("cuda")
    x = np.random.default_rng(2).standard_normal((4, 1, 2, 2)).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    hist = []
    for m in (cpu, gpu):
        t = Trainer(m, SGD(m.parameters(), lr=0.1, momentum=0.9), seed=0, progress=False)
        hist.append(t.fit(x, y, epochs=2, batch_size=2))
    assert [h["loss"] for h in hist[1]] == pytest.approx([h["loss"] for h in hist[0]], rel=1e-5)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        assert is_device(pg.data), name
        np.testing.assert_allclose(host(pg.data), pc.data, rtol=1e-5, atol=1e-6, err_msg=name)


def test_dropout_training_on_device_draws_the_cpu_masks():
    cpu, gpu = nn.Dropout(0.4, seed=11), nn.Dropout(0.4, seed=11)
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    for _ in range(2):  # fresh masks each call, the same on both devices
        yc, yg = cpu(x), gpu(dev(x))
        assert is_device(yg)
        np.testing.assert_array_equal(host(yg), yc)
        dy = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
        np.testing.assert_array_equal(host(gpu.backward(dev(dy))), cpu.backward(dy))
    gpu.eval()
    xd = dev(x)
    assert gpu(xd) is xd
