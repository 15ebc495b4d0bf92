"""Kernel workloads shared by the pytest-benchmark suites and the ``python -m bench`` sweep.

Each ``*_case`` prepares the inputs once and returns a callable that runs one implementation
(``"cnncore"`` or ``"torch"``) of one pass, plus the work it does (FLOPs or compulsory bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from cnncore_kernels.geometry import out_size

# (N, C, H, W, K, k, stride, pad, dilation): the convolution shapes of the foundation issue
# (the first six), the training shapes of a CIFAR- and an AlexNet-sized network, and pixel65's
# fc4 in its d-sparse network on a 256x256 image (5x5, dilation 8).
CONV_SHAPES: tuple[tuple[int, ...], ...] = (
    (8, 64, 56, 56, 64, 3, 1, 1, 1),
    (8, 128, 28, 28, 128, 3, 1, 1, 1),
    (8, 3, 227, 227, 96, 11, 4, 0, 1),
    (1, 64, 256, 256, 64, 3, 1, 2, 2),
    (1, 64, 256, 256, 64, 3, 1, 8, 8),
    (1, 32, 256, 256, 64, 5, 1, 0, 2),
    (64, 64, 15, 15, 64, 5, 1, 2, 1),
    (128, 64, 32, 32, 64, 3, 1, 1, 1),
    (128, 128, 16, 16, 128, 3, 1, 1, 1),
    (128, 256, 8, 8, 256, 3, 1, 1, 1),
    (64, 3, 32, 32, 64, 5, 1, 2, 1),
    (32, 96, 27, 27, 256, 5, 1, 2, 1),
    (1, 128, 288, 288, 256, 5, 1, 0, 8),
)
# Tiny shapes for --quick runs and the harness tests.
CONV_SHAPES_QUICK: tuple[tuple[int, ...], ...] = (
    (2, 8, 16, 16, 8, 3, 1, 1, 1),
    (1, 4, 24, 24, 8, 3, 1, 2, 2),
)

# (N, C, H, W, k, stride, dilation): max pooling with indices (bandwidth-bound).
POOL_SHAPES: tuple[tuple[int, ...], ...] = (
    (1, 64, 256, 256, 2, 1, 1),
    (1, 64, 256, 256, 2, 1, 2),
    (1, 64, 256, 256, 2, 1, 4),
    (8, 64, 112, 112, 2, 2, 1),
)
POOL_SHAPES_QUICK: tuple[tuple[int, ...], ...] = ((1, 4, 16, 16, 2, 1, 2),)


class Case(NamedTuple):
    """A prepared benchmark: ``run()`` does one pass; ``flops`` or ``bytes`` is its work."""

    run: Callable[[], Any]
    kernel: str
    direction: str
    config: str
    impl: str
    flops: float | None = None
    bytes: float | None = None
    info: dict | None = None  # what the case chose (e.g. a tuned batch size)

    def work(self) -> dict[str, float]:
        return {"flops": self.flops} if self.flops is not None else {"bytes": self.bytes}


def conv_config(shape: tuple[int, ...]) -> str:
    N, C, H, W, K, k, s, p, d = shape
    return f"{N}x{C}x{H}x{W} K{K} k{k} s{s} p{p} d{d}"


def conv_flops(shape: tuple[int, ...], direction: str) -> float:
    """2 * N*K*Ho*Wo*C*k*k for the forward; twice that for the backward (dx and dweight)."""
    N, C, H, W, K, k, s, p, d = shape
    fwd = 2.0 * N * K * out_size(H, k, s, p, d) * out_size(W, k, s, p, d) * C * k * k
    return fwd if direction == "forward" else 2.0 * fwd


def conv_algorithm(shape: tuple[int, ...], direction: str = "forward") -> str:
    """The algorithm ``conv2d``'s "auto" runs on ``shape`` (``cnncore.functional.conv_algorithm``
    where the library has it; otherwise the GEMM paths' own choice, named as such)."""
    from cnncore import functional

    N, C, H, W, K, k, s, p, d = shape
    pick = getattr(functional, "conv_algorithm", None)
    if pick is None:
        return "im2col/shifted (auto)"
    try:
        return str(
            pick(
                (N, C, H, W),
                (K, C, k, k),
                stride=s,
                padding=p,
                dilation=d,
                backward=direction != "forward",
            )
        )
    except TypeError:  # an older signature without ``backward``
        return str(pick((N, C, H, W), (K, C, k, k), stride=s, padding=p, dilation=d))


def conv_case(shape: tuple[int, ...], direction: str, impl: str, torch: Any = None) -> Case:
    """conv2d forward (with bias) or backward (dx, dweight, dbias) of ``shape``, float32."""
    N, C, H, W, K, k, s, p, d = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((K, C, k, k), dtype=np.float32) * np.float32(1 / np.sqrt(C * k * k))
    b = rng.standard_normal(K, dtype=np.float32)
    dy = rng.standard_normal(
        (N, K, out_size(H, k, s, p, d), out_size(W, k, s, p, d)), dtype=np.float32
    )
    if impl == "cnncore":
        from cnncore.functional import conv2d, conv2d_backward

        if direction == "forward":
            run = lambda: conv2d(x, w, b, s, p, d)  # noqa: E731
        else:
            run = lambda: conv2d_backward(dy, x, w, s, p, d)  # noqa: E731
    elif impl == "torch":
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        conv = torch.nn.functional.conv2d
        backward = torch.ops.aten.convolution_backward

        if direction == "forward":

            def run():
                with torch.inference_mode():
                    return conv(tx, tw, tb, s, p, d)
        else:

            def run():  # the same three gradients, without autograd's bookkeeping
                return backward(
                    tdy, tx, tw, [K], [s, s], [p, p], [d, d], False, [0, 0], 1, [True] * 3
                )
    else:
        raise ValueError(f"impl must be 'cnncore' or 'torch', got {impl!r}")
    return Case(
        run, "conv2d", direction, conv_config(shape), impl, flops=conv_flops(shape, direction)
    )


def pool_config(shape: tuple[int, ...]) -> str:
    N, C, H, W, k, s, d = shape
    return f"{N}x{C}x{H}x{W} k{k} s{s} d{d}"


def pool_bytes(shape: tuple[int, ...], direction: str) -> float:
    """Compulsory bytes of max pooling with indices (float32 values, int64 indices).

    forward: read x, write y and the indices; backward: read dy and the indices, write dx."""
    N, C, H, W, k, s, d = shape
    n_out = N * C * out_size(H, k, s, 0, d) * out_size(W, k, s, 0, d)
    return 4.0 * N * C * H * W + 12.0 * n_out


def pool_available() -> bool:
    try:
        from cnncore.functional import max_pool2d, max_pool2d_backward  # noqa: F401
    except ImportError:
        return False
    return True


def pool_case(shape: tuple[int, ...], direction: str, impl: str, torch: Any = None) -> Case:
    """max_pool2d with indices, forward or backward (scatter through the indices), float32."""
    N, C, H, W, k, s, d = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    shape_out = (N, C, out_size(H, k, s, 0, d), out_size(W, k, s, 0, d))
    dy = rng.standard_normal(shape_out, dtype=np.float32)
    if impl == "cnncore":
        from cnncore.functional import max_pool2d, max_pool2d_backward

        if direction == "forward":
            run = lambda: max_pool2d(x, k, s, 0, d)  # noqa: E731
        else:
            _, idx = max_pool2d(x, k, s, 0, d)
            run = lambda: max_pool2d_backward(dy, idx, x.shape)  # noqa: E731
    elif impl == "torch":
        F = torch.nn.functional
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        if direction == "forward":

            def run():
                with torch.inference_mode():
                    return F.max_pool2d(tx, k, s, 0, d, return_indices=True)
        else:
            _, tidx = F.max_pool2d(tx, k, s, 0, d, return_indices=True)
            backward = torch.ops.aten.max_pool2d_with_indices_backward
            run = lambda: backward(tdy, tx, [k, k], [s, s], [0, 0], [d, d], False, tidx)  # noqa: E731
    else:
        raise ValueError(f"impl must be 'cnncore' or 'torch', got {impl!r}")
    return Case(
        run, "max_pool2d", direction, pool_config(shape), impl, bytes=pool_bytes(shape, direction)
    )


# --------------------------------------------------------------------------------------------
# cases by specification: the sweep builds ours here and the peer (bench.peer) builds its own
def cifar_config(batch: int) -> str:
    return f"CIFAR net, batch {batch}, 32x32"


def cifar_case(batch: int, mode: str, impl: str, torch: Any = None) -> Case:
    """The CIFAR-sized network (``bench.cifar``): ``mode`` "train" (one SGD step) or "inference"."""
    from bench import cifar

    if impl == "cnncore":
        run = cifar.cnncore_step(batch, mode)
    elif impl == "torch":
        run = cifar.torch_step(torch, batch, mode)
    else:
        raise ValueError(f"impl must be 'cnncore' or 'torch', got {impl!r}")
    direction = "forward" if mode == "inference" else "train step"
    return Case(
        run, "cifar_net", direction, cifar_config(batch), impl, flops=cifar.flops(batch, mode)
    )


def build_case(spec: dict[str, Any], impl: str, torch: Any = None) -> Case:
    """A prepared case from a picklable specification: ``{"kind": "conv" | "pool", "shape",
    "direction"}``, ``{"kind": "cifar", "batch", "mode"}`` or ``{"kind": "dense", ...}``
    (``bench.dense_cases``)."""
    kind = spec["kind"]
    if kind == "conv":
        return conv_case(tuple(spec["shape"]), spec["direction"], impl, torch)
    if kind == "pool":
        return pool_case(tuple(spec["shape"]), spec["direction"], impl, torch)
    if kind == "cifar":
        return cifar_case(int(spec["batch"]), spec["mode"], impl, torch)
    if kind == "dense":
        from bench import dense_cases

        return dense_cases.peer_case(spec, torch)
    raise ValueError(f"unknown case kind {kind!r}")
