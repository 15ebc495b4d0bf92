"""The stride-1 dilated convolutions of the d-sparse networks: which strategy is fastest per layer.

For every convolution of the d-sparse ``pixel65`` and ``toy15`` on a 256x256 image (the shapes it
really sees: the block with its halo, shrinking layer by layer), forward and backward (dx, dW, db):

- ``im2col``: direct dilated im2col on chunks of output rows + one GEMM (``algorithm="im2col"``),
- ``shifted``: one GEMM per kernel tap over a shifted view, no column buffer
  (``algorithm="shifted"``),
- ``space_to_batch``: the ``d*d`` interleaved sub-images as an ordinary convolution
  (``bench.space_to_batch``, over ``conv2d`` with its default path),
- ``cnncore``: ``conv2d`` as it chooses (the auto rule), and ``torch``: PyTorch CPU's dilated
  ``conv2d`` (2 threads), the peer.

One benchmark group per (layer, pass); ``extra_info`` has GFLOP/s beside the sgemm peak.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from bench.space_to_batch import conv2d_s2b, conv2d_s2b_backward
from cnncore import dense, models
from cnncore.functional import conv2d, conv2d_backward
from cnncore_kernels import _conv
from cnncore_kernels.geometry import out_size

STRATEGIES = ("cnncore", "im2col", "shifted", "space_to_batch", "torch")
SIZE = 256


def dense_conv_layers(network: str, size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (C, K, kh, kw, d, H, W)) of the d-sparse network's convolutions (1x1 ones left out)
    with the input size each sees for a ``size`` x ``size`` image."""
    model = {"pixel65": models.pixel65, "toy15": models.toy15}[network]()
    plan = dense.analyze(model, model.patch_size)
    h = w = size + plan.receptive_field[0] - 1
    out = []
    for st in plan.dense_stages:
        if not st.spatial:
            continue
        d = st.dense_dilation[0]
        if st.kind in ("conv", "linear") and st.kernel != (1, 1):
            K, C, kh, kw = st.weight_shape
            out.append((f"{network}.{st.name}", (C, K, kh, kw, d, h, w)))
        h, w = h - d * (st.kernel[0] - 1), w - d * (st.kernel[1] - 1)
    return out


# pixel65's layers by default; toy15's too with CNNCORE_BENCH_DILATED_NETWORKS=pixel65,toy15 (the
# whole suite must fit pytest --benchmark-only's 10 minutes on 2 cores)
NETWORKS = os.environ.get("CNNCORE_BENCH_DILATED_NETWORKS", "pixel65").split(",")
CASES = [c for n in NETWORKS for c in dense_conv_layers(n.strip(), SIZE)]


def config(name: str, shape: tuple[int, ...]) -> str:
    C, K, kh, kw, d, H, W = shape
    return f"{name} C{C} K{K} {kh}x{kw} d{d} {H}x{W}"


def flops(shape: tuple[int, ...], direction: str) -> float:
    C, K, kh, kw, d, H, W = shape
    f = 2.0 * K * C * kh * kw * out_size(H, kh, 1, 0, d) * out_size(W, kw, 1, 0, d)
    return f if direction == "forward" else 2 * f  # dx and dW


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.benchmark(min_rounds=2, max_time=1.0, warmup=True, warmup_iterations=1)
def test_dilated_conv(benchmark, throughput, request, direction, case, strategy):
    name, shape = case
    torch = request.getfixturevalue("torch_peer") if strategy == "torch" else None
    run = _runner(strategy, direction, shape, torch)

    benchmark.group = f"dilated conv {direction} {config(name, shape)}"
    benchmark(run)
    throughput(
        benchmark,
        kernel="conv2d_dilated",
        direction=direction,
        config=config(name, shape),
        impl=strategy,
        flops=flops(shape, direction),
    )


def _runner(strategy: str, direction: str, shape: tuple[int, ...], torch: Any):
    """A no-argument callable for one strategy."""
    C, K, kh, kw, d, H, W = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, C, H, W), dtype=np.float32)
    w = rng.standard_normal((K, C, kh, kw), dtype=np.float32) * 0.1
    b = rng.standard_normal(K, dtype=np.float32)
    dy = rng.standard_normal(
        (1, K, out_size(H, kh, 1, 0, d), out_size(W, kw, 1, 0, d)), dtype=np.float32
    )
    fwd = direction == "forward"
    if strategy == "torch":
        F = torch.nn.functional
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        if fwd:
            return lambda: F.conv2d(tx, tw, tb, 1, 0, d).detach()
        leaves = [t.requires_grad_(True) for t in (tx, tw, tb)]
        return lambda: torch.autograd.grad(F.conv2d(tx, tw, tb, 1, 0, d), leaves, tdy)
    if strategy == "space_to_batch":
        return (
            (lambda: conv2d_s2b(x, w, b, (d, d)))
            if fwd
            else (lambda: conv2d_s2b_backward(dy, x, w, (d, d)))
        )
    alg = strategy if strategy in ("im2col", "shifted") else "auto"
    return (
        (lambda: conv2d(x, w, b, 1, 0, d, algorithm=alg))
        if fwd
        else (lambda: conv2d_backward(dy, x, w, 1, 0, d, algorithm=alg))
    )


def test_strategy_table(benchmark, request):
    """All strategies of every layer measured round-robin (the machine is shared and its speed
    drifts; interleaving keeps the comparison fair): the fastest per (layer, pass), as a table.
    The 'rule' column is what the current auto rule picks."""
    torch = request.getfixturevalue("torch_peer")
    rounds = int(os.environ.get("CNNCORE_BENCH_ROUNDS", "3"))
    lines = [
        "| pass | layer | im2col ms | shifted ms | space_to_batch ms | torch ms | fastest "
        "| auto picks | torch / fastest ours |",
        "|---|---|---:|---:|---:|---:|---|---|---:|",
    ]
    table = []

    def measure():
        for direction in ("forward", "backward"):
            for name, shape in CASES:
                runs = {s: _runner(s, direction, shape, torch) for s in STRATEGIES[1:]}
                best = dict.fromkeys(runs, float("inf"))
                for _ in range(rounds):
                    for s, fn in runs.items():
                        t0 = time.perf_counter()
                        fn()
                        best[s] = min(best[s], time.perf_counter() - t0)
                C, K, kh, kw, d, H, W = shape
                auto = (
                    "shifted"
                    if _conv.use_shifted(
                        C, K, (kh, kw), (1, 1), (0, 0), (d, d), out_size(W, kw, 1, 0, d)
                    )
                    else "im2col"
                )
                ours = min(("im2col", "shifted", "space_to_batch"), key=best.get)
                table.append(
                    {
                        "direction": direction,
                        "layer": config(name, shape),
                        "auto": auto,
                        "fastest": ours,
                        **{k: v for k, v in best.items()},
                    }
                )
                lines.append(
                    f"| {direction} | {config(name, shape)} | "
                    + " | ".join(f"{best[s] * 1e3:.1f}" for s in STRATEGIES[1:])
                    + f" | {ours} | {auto} | {best['torch'] / best[ours]:.2f} |"
                )

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.group = "dilated conv strategy table (round-robin)"
    benchmark.extra_info["table"] = table
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_sep("-", f"stride-1 dilated convolutions: min of {rounds} round-robin rounds")
        for line in lines:
            tr.write_line(line)
