"""Launch helpers and elementwise kernels of the CUDA twins (simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels.cuda import _launch as L
from cnncore_kernels.cuda import elementwise
from tests.kernels.cuda.sim import dev, host, launch_config


@pytest.mark.parametrize(
    "n, threads, max_blocks, expected",
    [(1, 256, 65535, (1, 256)), (256, 256, 65535, (1, 256)), (257, 256, 65535, (2, 256)),
     (1000, 32, 65535, (32, 32)), (1000, 32, 5, (5, 32)), (0, 64, 10, (1, 64))],
)  # fmt: skip
def test_config_rounds_the_grid_up_and_caps_it(n, threads, max_blocks, expected):
    with launch_config(threads=threads, max_blocks=max_blocks):
        assert L.config(n) == expected
    assert L.config(1) == (1, L.THREADS)  # restored


@pytest.mark.parametrize("threads, expected", [(256, 128), (96, 64), (32, 32), (1, 1)])
def test_reduction_threads_are_a_power_of_two(threads, expected):
    with launch_config(threads=threads):
        assert L.red_threads() == expected


def test_device_copies_a_non_contiguous_array_on_the_device(launch):
    a = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    view = dev(a)[:, 1:, ::2, 1::3]  # a strided device view
    assert not view.is_c_contiguous()
    out = L.device(view)
    assert out.is_c_contiguous() and hasattr(out, "__cuda_ndarray__")
    np.testing.assert_array_equal(host(out), a[:, 1:, ::2, 1::3])
    b = dev(a)[0, :, 2]  # 2-D view
    np.testing.assert_array_equal(host(L.device(b)), a[0, :, 2])
    same = dev(a)
    assert L.device(same) is same  # contiguous: no copy


def test_device_refuses_a_wrong_dtype():
    with pytest.raises(TypeError, match="float32"):
        L.device(dev(np.zeros(3, np.float64)))


def test_inplace_refuses_copies():
    a = dev(np.zeros((4, 4), np.float32))
    assert L.inplace(a) is a
    with pytest.raises(ValueError, match="C-contiguous"):
        L.inplace(a[:, ::2])
    with pytest.raises(ValueError, match="float32"):
        L.inplace(dev(np.zeros(3, np.float64)))


def test_full_and_zeros(launch):
    np.testing.assert_array_equal(host(L.full((3, 5), 2.5)), np.full((3, 5), 2.5, np.float32))
    z = L.zeros((7,), np.int64)
    assert z.dtype == np.int64
    np.testing.assert_array_equal(host(z), np.zeros(7, np.int64))


@pytest.mark.parametrize("N, K, P", [(1, 1, 1), (3, 4, 5), (2, 3, 37), (1, 5, 1)])
def test_sum_middle_matches_numpy(launch, N, K, P):
    x = np.random.default_rng(N * K * P).standard_normal((N, K, P)).astype(np.float32)
    got = host(L.sum_middle(dev(x), N, K, P, divisor=3.0))
    np.testing.assert_allclose(got, x.astype(np.float64).sum(axis=(0, 2)) / 3, rtol=1e-5, atol=1e-6)


def test_elementwise(launch):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 7)).astype(np.float32)
    b = rng.standard_normal((3, 7)).astype(np.float32)
    np.testing.assert_array_equal(host(elementwise.add(dev(a), dev(b))), a + b)
    np.testing.assert_array_equal(host(elementwise.scale(0.5, dev(a))), np.float32(0.5) * a)
    y = dev(b)
    elementwise.axpy(-2.0, dev(a), y)
    np.testing.assert_array_equal(host(y), b + np.float32(-2.0) * a)


def test_parameter_accumulate_adds_on_the_device(small_launch):
    from cnncore.nn.module import Parameter

    g1 = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = Parameter(dev(np.zeros((2, 3), np.float32)))
    p.accumulate(dev(g1))
    p.accumulate(dev(2 * g1))
    assert hasattr(p.grad, "__cuda_ndarray__")
    np.testing.assert_array_equal(host(p.grad), 3 * g1)


def test_workspace_is_reused_and_grows():
    a = L.workspace("test", 10)
    a[:] = np.arange(10, dtype=np.float32)
    b = L.workspace("test", 4)  # a view of the same buffer
    np.testing.assert_array_equal(host(b), np.arange(4, dtype=np.float32))
    c = L.workspace("test", 25)  # grown: a new buffer
    assert c.shape == (25,) and L.workspace("test", 25).shape == (25,)


def test_twin_picks_the_module_by_array_type():
    """The dispatchers' one helper: host arrays get the CPU twin given, device arrays the CUDA
    module of the family (imported by name), whatever the CPU twin is."""
    import importlib

    from cnncore_kernels import _pooling
    from cnncore_kernels.arrays import twin

    a = np.zeros((1, 1, 2, 2), np.float32)
    assert twin(a, _pooling, "pooling") is _pooling
    pooling = importlib.import_module("cnncore_kernels.cuda.pooling")
    assert twin(dev(a), _pooling, "pooling") is pooling
    assert twin(dev(a), _pooling, "optim") is importlib.import_module("cnncore_kernels.cuda.optim")
    with pytest.raises(ModuleNotFoundError, match="cnncore_kernels.cuda.nope"):
        twin(dev(a), _pooling, "nope")
