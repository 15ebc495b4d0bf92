"""GPU benchmarks: the Numba CUDA twins against PyTorch CUDA (cuDNN), measured in the same run.

Run on a machine with a GPU, alone (the CUDA tests force Numba's simulator when collected)::

    pytest bench/bench_cuda.py --benchmark-only

Groups pair ours with PyTorch's on one workload: conv2d forward and backward (the foundation
shapes of ``bench.workloads``), max pooling with indices forward and backward, and the pixel65
d-sparse pass over a 1024 x 1024 image (every stride 1, dilations 1, 2, 4, 8, the fully connected
layers as 5x5 and 1x1 convolutions: the network ``cnncore.dense`` runs), also end to end through
``dense.predict`` on a device image.  Every measured call
ends with a device synchronisation.  ``extra_info`` holds the card's name, GFLOP/s or GB/s, and
PyTorch's TF32 setting (its convolutions may use TF32 tensor cores; ours compute in float32).
Without a GPU (``cnncore.cuda_available()`` False) every benchmark is skipped with the reason.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from bench import report
from bench.workloads import CONV_SHAPES as _CONV_ALL  # noqa: E402
from bench.workloads import (
    CONV_SHAPES_QUICK,
    POOL_SHAPES_QUICK,
    conv_config,
    conv_flops,
    pool_bytes,
    pool_config,
)
from bench.workloads import POOL_SHAPES as _POOL_ALL  # noqa: E402
from cnncore_kernels.geometry import out_size

IMPLS = ("cnncore", "torch")
# CNNCORE_BENCH_GPU_QUICK=1: tiny shapes, and the simulator is accepted (``python -m bench gpu
# --quick`` tests the plumbing without a GPU; its numbers mean nothing)
QUICK = os.environ.get("CNNCORE_BENCH_GPU_QUICK") == "1"
CONV_SHAPES = CONV_SHAPES_QUICK if QUICK else _CONV_ALL
POOL_SHAPES = POOL_SHAPES_QUICK if QUICK else _POOL_ALL
DENSE_SIDES = (16,) if QUICK else (256, 512, 1024)
LRN_SHAPE = (2, 8, 9, 9) if QUICK else (8, 96, 55, 55)
LCN_SHAPE = (1, 4, 12, 12) if QUICK else (1, 64, 256, 256)
_BENCH = (
    dict(min_rounds=1, max_time=0.001, warmup=False)
    if QUICK
    else dict(min_rounds=5, max_time=1.0, warmup=True, warmup_iterations=2)
)


@pytest.fixture(scope="module")
def gpu() -> dict[str, Any]:
    """``numba.cuda`` and the card's name, or a skip that says why there is no GPU."""
    if QUICK and os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        from numba import cuda

        return {"cuda": cuda, "name": "simulator"}
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip(
            "NUMBA_ENABLE_CUDASIM is set (tests/kernels/cuda sets it when collected): run "
            "`pytest bench/bench_cuda.py --benchmark-only` on its own on a GPU machine"
        )
    from cnncore import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA GPU: cnncore.cuda_available() is False (numba-cuda or a GPU missing)")
    from numba import cuda

    name = cuda.get_current_device().name
    return {"cuda": cuda, "name": name.decode() if isinstance(name, bytes) else str(name)}


@pytest.fixture(scope="module")
def torch_cuda() -> Any:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: peer rows skipped")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here (a CPU build, or no GPU): peer rows skipped")
    return torch


def _peer(request, impl):
    return request.getfixturevalue("torch_cuda") if impl == "torch" else None


def _measure(benchmark, gpu, torch, run, group, **work):
    """Time ``run`` followed by a device synchronisation; record throughput and the card."""
    sync = torch.cuda.synchronize if torch is not None else gpu["cuda"].synchronize

    def step():
        run()
        sync()

    benchmark.group = group
    benchmark(step)
    stats = getattr(benchmark, "stats", None)
    extra = {"device": gpu["name"]}
    if torch is not None:
        extra["torch_cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    benchmark.extra_info.update(
        report.throughput_info(seconds=stats.stats.min if stats else None, **work, **extra)
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "shape", CONV_SHAPES, ids=[conv_config(s).replace(" ", "_") for s in CONV_SHAPES]
)
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.benchmark(**_BENCH)
def test_conv2d_gpu(benchmark, gpu, request, direction, shape, impl):
    torch = _peer(request, impl)
    N, C, H, W, K, k, s, p, d = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((K, C, k, k), dtype=np.float32) * np.float32(1 / np.sqrt(C * k * k))
    b = rng.standard_normal(K, dtype=np.float32)
    Ho, Wo = out_size(H, k, s, p, d), out_size(W, k, s, p, d)
    dy = rng.standard_normal((N, K, Ho, Wo), dtype=np.float32)
    if torch is None:
        from cnncore.functional import conv2d, conv2d_backward

        cuda = gpu["cuda"]
        gx, gw, gb, gdy = (cuda.to_device(a) for a in (x, w, b, dy))
        if direction == "forward":
            run = lambda: conv2d(gx, gw, gb, s, p, d)  # noqa: E731
        else:
            run = lambda: conv2d_backward(gdy, gx, gw, s, p, d)  # noqa: E731
    else:
        tx, tw, tb, tdy = (torch.from_numpy(a).cuda() for a in (x, w, b, dy))
        if direction == "forward":

            def run():
                with torch.inference_mode():
                    return torch.nn.functional.conv2d(tx, tw, tb, s, p, d)
        else:

            def run():
                return torch.ops.aten.convolution_backward(
                    tdy, tx, tw, [K], [s, s], [p, p], [d, d], False, [0, 0], 1, [True] * 3
                )

    _measure(benchmark, gpu, torch, run, f"gpu conv2d {direction} {conv_config(shape)}",
             kernel="conv2d", direction=direction, config=conv_config(shape), impl=impl,
             flops=conv_flops(shape, direction))  # fmt: skip


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "shape", POOL_SHAPES, ids=[pool_config(s).replace(" ", "_") for s in POOL_SHAPES]
)
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.benchmark(**_BENCH)
def test_max_pool2d_gpu(benchmark, gpu, request, direction, shape, impl):
    """Max pooling with indices.  Ours is timed at the kernel (the public backward also checks the
    index range on the host, which is validation); its backward finds each input's candidate
    windows from the indices (the dispatcher's signature)."""
    torch = _peer(request, impl)
    N, C, H, W, k, s, d = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    Ho, Wo = out_size(H, k, s, 0, d), out_size(W, k, s, 0, d)
    dy = rng.standard_normal((N, C, Ho, Wo), dtype=np.float32)
    geom = ((k, k), (s, s), (0, 0), (d, d))
    if torch is None:
        from cnncore_kernels.cuda import pooling

        cuda = gpu["cuda"]
        gx, gdy = cuda.to_device(x), cuda.to_device(dy)
        if direction == "forward":
            run = lambda: pooling.max_pool2d(gx, *geom)  # noqa: E731
        else:
            _, gidx = pooling.max_pool2d(gx, *geom)
            run = lambda: pooling.max_pool2d_backward(gdy, gidx, x.shape)  # noqa: E731
    else:
        F = torch.nn.functional
        tx, tdy = torch.from_numpy(x).cuda(), torch.from_numpy(dy).cuda()
        if direction == "forward":

            def run():
                with torch.inference_mode():
                    return F.max_pool2d(tx, k, s, 0, d, return_indices=True)
        else:
            _, tidx = F.max_pool2d(tx, k, s, 0, d, return_indices=True)
            back = torch.ops.aten.max_pool2d_with_indices_backward
            run = lambda: back(tdy, tx, [k, k], [s, s], [0, 0], [d, d], False, tidx)  # noqa: E731

    _measure(benchmark, gpu, torch, run, f"gpu max_pool2d {direction} {pool_config(shape)}",
             kernel="max_pool2d", direction=direction, config=pool_config(shape), impl=impl,
             bytes=pool_bytes(shape, direction))  # fmt: skip


# pixel65 as the d-sparse network: (kind, out_channels or pool size, kernel, dilation)
PIXEL65_DSPARSE = (
    ("conv", 32, 5, 1), ("relu",), ("pool", 2, 2, 1),
    ("conv", 64, 5, 2), ("relu",), ("pool", 2, 2, 2),
    ("conv", 128, 3, 4), ("relu",), ("pool", 2, 2, 4),
    ("conv", 256, 5, 8), ("relu",),  # Linear 3200 -> 256 as a 5x5 kernel over 128 maps
    ("conv", 2, 1, 1),  # Linear 256 -> 2 as a 1x1 kernel
)  # fmt: skip
PIXEL65_FIELD = 60  # receptive field of the chain above


def pixel65_flops(side: int) -> float:
    """Multiply-adds x 2 of the d-sparse pass producing a side x side score map."""
    flops, c, size = 0.0, 3, side + PIXEL65_FIELD - 1
    for layer in PIXEL65_DSPARSE:
        if layer[0] == "conv":
            _, k_out, k, d = layer
            size = out_size(size, k, 1, 0, d)
            flops += 2.0 * size * size * k_out * c * k * k
            c = k_out
        elif layer[0] == "pool":
            size = out_size(size, layer[2], 1, 0, layer[3])
    assert size == side
    return flops


@pytest.mark.parametrize("impl", (*IMPLS, "cnncore_predict"))
@pytest.mark.parametrize("side", DENSE_SIDES)
@pytest.mark.benchmark(**(_BENCH if QUICK else dict(min_rounds=3, max_time=2.0, warmup=True)))
def test_pixel65_dense_gpu(benchmark, gpu, request, side, impl):
    """The pixel65 d-sparse pass for a side x side image (input already padded by the field);
    ``cnncore_predict`` is the whole ``dense.predict(models.pixel65().to("cuda"), image, 65)`` on
    a device image (padding and all, nothing leaves the GPU)."""
    if gpu["name"] == "simulator":
        pytest.skip("the CUDA simulator runs pixel65 for minutes: this row needs a real GPU")
    torch = _peer(request, impl)
    rng = np.random.default_rng(0)
    if impl == "cnncore_predict":
        from cnncore import dense, models

        net = models.pixel65().eval().to("cuda")
        image = gpu["cuda"].to_device(rng.standard_normal((1, 3, side, side), dtype=np.float32))
        _measure(benchmark, gpu, None, lambda: dense.predict(net, image, 65),
                 f"gpu pixel65 d-sparse {side}x{side}", kernel="pixel65", direction="inference",
                 config=f"{side}x{side} dense.predict", impl=impl,
                 flops=pixel65_flops(side))  # fmt: skip
        return
    x = rng.standard_normal((1, 3, side + PIXEL65_FIELD - 1, side + PIXEL65_FIELD - 1),
                            dtype=np.float32)  # fmt: skip
    weights, c = [], 3
    for layer in PIXEL65_DSPARSE:
        if layer[0] == "conv":
            _, k_out, k, _ = layer
            scale = np.float32(1 / np.sqrt(c * k * k))
            weights.append((rng.standard_normal((k_out, c, k, k), dtype=np.float32) * scale,
                            rng.standard_normal(k_out, dtype=np.float32)))  # fmt: skip
            c = k_out
    if torch is None:
        import cnncore.functional as F

        cuda = gpu["cuda"]
        gw = [(cuda.to_device(w), cuda.to_device(b)) for w, b in weights]
        gx = cuda.to_device(x)

        def run():
            h, i = gx, 0
            for layer in PIXEL65_DSPARSE:
                if layer[0] == "conv":
                    h = F.conv2d(h, gw[i][0], gw[i][1], 1, 0, layer[3])
                    i += 1
                elif layer[0] == "relu":
                    h = F.relu(h)
                else:
                    h = F.max_pool2d_values(h, layer[2], 1, 0, layer[3])
            return h
    else:
        tfun = torch.nn.functional
        tw = [(torch.from_numpy(w).cuda(), torch.from_numpy(b).cuda()) for w, b in weights]
        tx = torch.from_numpy(x).cuda()

        def run():
            with torch.inference_mode():
                h, i = tx, 0
                for layer in PIXEL65_DSPARSE:
                    if layer[0] == "conv":
                        h = tfun.conv2d(h, tw[i][0], tw[i][1], 1, 0, layer[3])
                        i += 1
                    elif layer[0] == "relu":
                        h = torch.relu(h)
                    else:
                        h = tfun.max_pool2d(h, layer[2], 1, 0, layer[3])
                return h

    _measure(benchmark, gpu, torch, run, f"gpu pixel65 d-sparse {side}x{side}", kernel="pixel65",
             direction="inference", config=f"{side}x{side} d-sparse", impl=impl,
             flops=pixel65_flops(side))  # fmt: skip


# -- local response and contrast normalisation ---------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.parametrize("kind", ("lrn", "lcn"))
@pytest.mark.benchmark(**_BENCH)
def test_normalization_gpu(benchmark, gpu, request, kind, direction, impl):
    """LRN (AlexNet's: size 5, alpha 1e-4, beta 0.75, k 1) and LCN (9x9 Gaussian, sigma 2,
    "mean" divisor) against PyTorch CUDA (``local_response_norm``; LCN as the separable twin of
    ``bench_lcn``, its backward through autograd).  Work: bytes read plus written (float32)."""
    from bench.bench_lcn import LCN_SIGMA, LCN_SIZE, LCN_THRESHOLD, LRN_ARGS, TorchLCN

    torch = _peer(request, impl)
    shape = LRN_SHAPE if kind == "lrn" else LCN_SHAPE
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    args = LRN_ARGS if kind == "lrn" else (LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD)
    if torch is None:
        import cnncore.functional as F

        cuda = gpu["cuda"]
        gx, gdy = cuda.to_device(x), cuda.to_device(dy)
        fwd = F.local_response_norm if kind == "lrn" else F.local_contrast_norm
        bwd = F.local_response_norm_backward if kind == "lrn" else F.local_contrast_norm_backward
        if direction == "forward":
            run = lambda: fwd(gx, *args)  # noqa: E731
        else:
            run = lambda: bwd(gdy, gx, *args)  # noqa: E731
    else:
        tx = torch.from_numpy(x).cuda().requires_grad_(direction == "backward")
        tdy = torch.from_numpy(dy).cuda()
        if kind == "lrn":
            f = lambda t: torch.nn.functional.local_response_norm(t, *LRN_ARGS)  # noqa: E731
        else:
            f = TorchLCN(torch, shape, LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD, separable=True)
            for name in ("gh", "gw", "e1"):
                setattr(f, name, getattr(f, name).cuda())
        if direction == "forward":

            def run():
                with torch.no_grad():
                    return f(tx)
        else:

            def run():
                return torch.autograd.grad(f(tx), tx, tdy)

    config = "x".join(map(str, shape))
    n = float(np.prod(shape)) * 4
    _measure(benchmark, gpu, torch, run, f"gpu {kind} {direction} {config}", kernel=kind,
             direction=direction, config=config, impl=impl,
             bytes=2 * n if direction == "forward" else 3 * n)  # fmt: skip
