"""Pooling, float32: ours and PyTorch CPU side by side, with GB/s beside a large array copy.

- max pooling with indices (``MAX_SHAPES`` below; PyTorch ``max_pool2d(..., return_indices=True)``),
- max pooling values only (ours ``max_pool2d_values``; PyTorch ``max_pool2d``),
- max pooling backward through the indices (PyTorch ``aten.max_pool2d_with_indices_backward``),
- average pooling forward and backward (no dilation: PyTorch has none for it; PyTorch's backward is
  ``aten.avg_pool2d_backward``).
Bytes are the compulsory traffic: every input read once, every output written once (float32
values, int64 indices).  ``copy_reference`` times ``np.copyto`` of 256 MB, the memory ceiling;
``extra_info`` of every row carries the same session's copy bandwidth (``bench/conftest.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnncore.functional import (
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_values,
)
from cnncore_kernels.geometry import out_size

# (N, C, H, W, k, stride, dilation), no padding: the max pooling shapes measured here.
MAX_SHAPES = (
    (1, 64, 256, 256, 2, 1, 1),
    (1, 64, 256, 256, 2, 1, 2),
    (1, 64, 256, 256, 2, 1, 4),
    (1, 128, 128, 128, 3, 1, 8),
    (8, 64, 112, 112, 3, 2, 1),
)
BACKWARD_SHAPES = (MAX_SHAPES[1], MAX_SHAPES[3], MAX_SHAPES[4])
# (N, C, H, W, k, stride, padding) for average pooling.
AVG_SHAPES = ((1, 64, 256, 256, 3, 1, 1), (8, 64, 112, 112, 3, 2, 1))
IMPLS = ("cnncore", "torch")
ROUNDS = {"min_rounds": 5, "max_time": 0.5, "warmup": True, "warmup_iterations": 1}


def _max_config(shape):
    N, C, H, W, k, s, d = shape
    return f"{N}x{C}x{H}x{W} k{k} s{s} d{d}"


def _avg_config(shape):
    N, C, H, W, k, s, p = shape
    return f"{N}x{C}x{H}x{W} k{k} s{s} p{p}"


def _data(x_shape, y_shape, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal(x_shape, dtype=np.float32),
        rng.standard_normal(y_shape, dtype=np.float32),
    )


def _max_shapes(shape):
    N, C, H, W, k, s, d = shape
    return (N, C, H, W), (N, C, out_size(H, k, s, 0, d), out_size(W, k, s, 0, d))


def _torch(request, impl):
    return request.getfixturevalue("torch_peer") if impl == "torch" else None


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", MAX_SHAPES, ids=[_max_config(s) for s in MAX_SHAPES])
@pytest.mark.benchmark(**ROUNDS)
def test_max_pool2d_indices(benchmark, throughput, request, shape, impl):
    torch = _torch(request, impl)
    (x_shape, y_shape), k, s, d = _max_shapes(shape), shape[4], shape[5], shape[6]
    x, _ = _data(x_shape, y_shape)
    if torch is None:
        run = lambda: max_pool2d(x, k, s, 0, d)  # noqa: E731
    else:
        tx = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return torch.nn.functional.max_pool2d(tx, k, s, 0, d, return_indices=True)

    config = _max_config(shape)
    benchmark.group = f"max_pool2d with indices {config}"
    benchmark(run)
    n_out = int(np.prod(y_shape))
    throughput(
        benchmark,
        kernel="max_pool2d+indices",
        direction="forward",
        config=config,
        impl=impl,
        bytes=4.0 * x.size + 12.0 * n_out,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", MAX_SHAPES, ids=[_max_config(s) for s in MAX_SHAPES])
@pytest.mark.benchmark(**ROUNDS)
def test_max_pool2d_values(benchmark, throughput, request, shape, impl):
    torch = _torch(request, impl)
    (x_shape, y_shape), k, s, d = _max_shapes(shape), shape[4], shape[5], shape[6]
    x, _ = _data(x_shape, y_shape)
    if torch is None:
        run = lambda: max_pool2d_values(x, k, s, 0, d)  # noqa: E731
    else:
        tx = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return torch.nn.functional.max_pool2d(tx, k, s, 0, d)

    config = _max_config(shape)
    benchmark.group = f"max_pool2d values {config}"
    benchmark(run)
    throughput(
        benchmark,
        kernel="max_pool2d values",
        direction="forward",
        config=config,
        impl=impl,
        bytes=4.0 * x.size + 4.0 * int(np.prod(y_shape)),
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", BACKWARD_SHAPES, ids=[_max_config(s) for s in BACKWARD_SHAPES])
@pytest.mark.benchmark(**ROUNDS)
def test_max_pool2d_backward(benchmark, throughput, request, shape, impl):
    torch = _torch(request, impl)
    (x_shape, y_shape), k, s, d = _max_shapes(shape), shape[4], shape[5], shape[6]
    x, dy = _data(x_shape, y_shape)
    _, idx = max_pool2d(x, k, s, 0, d)
    if torch is None:
        run = lambda: max_pool2d_backward(dy, idx, x_shape)  # noqa: E731
    else:
        tx, tdy, tidx = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(idx)
        backward = torch.ops.aten.max_pool2d_with_indices_backward
        run = lambda: backward(tdy, tx, [k, k], [s, s], [0, 0], [d, d], False, tidx)  # noqa: E731
    config = _max_config(shape)
    benchmark.group = f"max_pool2d backward {config}"
    benchmark(run)
    throughput(
        benchmark,
        kernel="max_pool2d backward",
        direction="backward",
        config=config,
        impl=impl,
        bytes=12.0 * dy.size + 4.0 * x.size,
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", AVG_SHAPES, ids=[_avg_config(s) for s in AVG_SHAPES])
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.benchmark(**ROUNDS)
def test_avg_pool2d(benchmark, throughput, request, direction, shape, impl):
    torch = _torch(request, impl)
    N, C, H, W, k, s, p = shape
    y_shape = (N, C, out_size(H, k, s, p, 1), out_size(W, k, s, p, 1))
    x, dy = _data((N, C, H, W), y_shape)
    if torch is None:
        if direction == "forward":
            run = lambda: avg_pool2d(x, k, s, p)  # noqa: E731
        else:
            run = lambda: avg_pool2d_backward(dy, x.shape, k, s, p)  # noqa: E731
    else:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        if direction == "forward":

            def run():
                with torch.inference_mode():
                    return torch.nn.functional.avg_pool2d(tx, k, s, p)
        else:
            backward = torch.ops.aten.avg_pool2d_backward
            run = lambda: backward(tdy, tx, [k, k], [s, s], [p, p], False, True, None)  # noqa: E731
    config = _avg_config(shape)
    benchmark.group = f"avg_pool2d {direction} {config}"
    benchmark(run)
    throughput(
        benchmark,
        kernel="avg_pool2d",
        direction=direction,
        config=config,
        impl=impl,
        bytes=4.0 * (x.size + dy.size),
    )


@pytest.mark.benchmark(min_rounds=5, max_time=0.5, warmup=True, warmup_iterations=1)
def test_copy_reference(benchmark, throughput):
    """The memory ceiling: np.copyto of a 256 MB float32 array (bytes read plus written)."""
    src = np.ones(64 * 2**20, np.float32)
    dst = np.empty_like(src)
    benchmark.group = "memory bandwidth reference"
    benchmark(np.copyto, dst, src)
    throughput(
        benchmark,
        kernel="np.copyto",
        direction="copy",
        config="256 MB float32",
        impl="numpy",
        bytes=2.0 * src.nbytes,
    )
