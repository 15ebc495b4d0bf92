"""Dense prediction on the device (Numba's CUDA simulator, tiny shapes): ``predict`` with GPU
images returns device scores equal to the CPU's for every method, whole and tiled; the d-sparse and
FCN networks train on the device (gradients equal the CPU's); mixing devices is refused."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

if "numba.cuda" in sys.modules:  # the simulator must be chosen before numba.cuda is imported
    from numba.cuda.core import config as _cuda_config

    if not _cuda_config.ENABLE_CUDASIM:
        pytest.skip("numba.cuda already imported without the simulator", allow_module_level=True)

from cnncore import dense, nn  # noqa: E402
from tests.kernels.cuda.sim import (  # noqa: E402  (importing it turns the simulator on)
    SMALL_TILES,
    dev,
    host,
    launch_config,
    use_tiles,
)

PATCH = 8


@pytest.fixture(autouse=True)
def simulator_sized(monkeypatch):
    """Small GEMM tiles, small launches and quick thread switches (the simulator runs every CUDA
    thread as a Python thread)."""
    use_tiles(monkeypatch, SMALL_TILES)
    old = sys.getswitchinterval()
    sys.setswitchinterval(2e-4)
    with launch_config(threads=64, max_blocks=4):
        yield
    sys.setswitchinterval(old)


def classifier():
    """An 8x8 patch classifier with a strided conv, a pool and a Linear: total stride 4."""
    nn.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(3, 4),
    ).eval()


def image(seed=0, shape=(2, 2, 5, 6)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "method, tile",
    [("dsparse", None), ("dsparse", (3, 4)), ("fcn", None), ("fcn", (3, 6)), ("patchwise", (2, 3))],
)
@pytest.mark.filterwarnings("ignore:tile=.* is small:UserWarning")  # tiny tiles on purpose
def test_predict_on_device_equals_cpu(method, tile):
    cpu = classifier()
    gpu = copy.deepcopy(cpu).to("cuda")
    # FCN: 16 passes, one image; patch scanning: 8x8 patches of a small image
    x = image(
        0, (2 if method == "dsparse" else 1, 2, 5, 6) if method != "patchwise" else (1, 2, 3, 4)
    )
    want = dense.predict(cpu, x, PATCH, method, tile=tile, batch_size=5)
    got = dense.predict(gpu, dev(x), PATCH, method, tile=tile, batch_size=5)
    assert hasattr(got, "__cuda_ndarray__") and got.shape == want.shape
    np.testing.assert_allclose(host(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pixels", [None, np.array([5, 0, 4], np.int64)])
def test_patchwise_on_device_equals_cpu(pixels):
    from cnncore.dense.patchwise import scan_patches
    from cnncore.dense.tiling import window

    cpu = classifier()
    gpu = copy.deepcopy(cpu).to("cuda")
    x = image(1, (1, 2, 2, 3))
    plan = dense.block_predictor(cpu, PATCH, "patchwise").plan
    (top, bottom), (left, right) = plan.halo("patchwise")
    block = window(x, (-top, 2 + bottom), (-left, 3 + right))
    want = scan_patches(cpu, block, (2, 3), plan, 4, pixels)
    got = scan_patches(gpu, dev(block), (2, 3), plan, 4, pixels)
    assert hasattr(got, "__cuda_ndarray__") and got.shape == want.shape
    np.testing.assert_allclose(host(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("to_net", [dense.to_dense, dense.to_fcn])
def test_dense_network_trains_on_device_like_on_cpu(to_net):
    cpu = classifier()
    gpu = copy.deepcopy(cpu).to("cuda")
    nc, ng = to_net(cpu, PATCH), to_net(gpu, PATCH)
    x = image(2, (1, 2, 5, 6))
    yc, yg = nc(x), ng(dev(x))
    np.testing.assert_allclose(host(yg), yc, rtol=1e-5, atol=1e-6)
    dy = np.random.default_rng(4).standard_normal(yc.shape).astype(np.float32)
    dxc, dxg = nc.backward(dy), ng.backward(dev(dy))
    assert hasattr(dxg, "__cuda_ndarray__") and dxg.shape == x.shape
    np.testing.assert_allclose(host(dxg), dxc, rtol=1e-4, atol=1e-5)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        np.testing.assert_allclose(host(pg.grad), pc.grad, rtol=1e-4, atol=1e-5, err_msg=name)


def test_mixing_devices_is_refused():
    cpu = classifier()
    with pytest.raises(TypeError, match="GPU array but parameter"):
        dense.predict(cpu, dev(image()), PATCH)
    gpu = copy.deepcopy(cpu).to("cuda")
    with pytest.raises(TypeError, match="CPU array but parameter"):
        dense.predict(gpu, image(), PATCH)


def test_scan_patches_on_device_refuses_a_block_of_the_wrong_size():
    from cnncore.dense.patchwise import scan_patches

    gpu = copy.deepcopy(classifier()).to("cuda")
    plan = dense.block_predictor(gpu, PATCH, "patchwise").plan
    block = dev(image(0, (1, 2, 9, 9)))  # holds the patches of 2x2 pixels, not 3x3
    with pytest.raises(ValueError, match=r"expected \(N, C, 10, 10\)"):
        scan_patches(gpu, block, (3, 3), plan, 4)
