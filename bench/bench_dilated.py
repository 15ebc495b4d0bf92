"""The stride-1 dilated convolutions of the d-sparse networks: which strategy is fastest per layer.

For every convolution of the d-sparse ``pixel65`` and ``toy15`` on a 256x256 image (the shapes it
really sees: the block with its halo, shrinking layer by layer), forward and backward (dx, dW, db):

- ``cnncore``: ``conv2d`` as it chooses (the auto rule; ``extra_info["algorithm"]`` names what ran),
  and ``torch``: PyTorch CPU's dilated ``conv2d`` (2 threads), the peer;
- ``im2col``: direct dilated im2col on chunks of output rows + one GEMM (``algorithm="im2col"``),
- ``shifted``: one GEMM per kernel tap over a shifted view, no column buffer
  (``algorithm="shifted"``),
- ``winograd``: Winograd tiles gathered with step d (``algorithm="winograd"``; 3x3 and 5x5 only),
- ``space_to_batch`` (opt-in, ``CNNCORE_BENCH_DILATED_STRATEGIES``): the ``d*d`` interleaved
  sub-images as an ordinary convolution (``bench.space_to_batch``, over ``conv2d``).

One benchmark group per (layer, pass); ``extra_info`` has GFLOP/s beside the sgemm peak.
``test_strategy_table`` (opt-in, ``CNNCORE_BENCH_STRATEGY_TABLE=1``: about a minute on 2 cores)
times every strategy round-robin and prints the fastest per layer beside what "auto" picks.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from bench.space_to_batch import conv2d_s2b, conv2d_s2b_backward
from cnncore import dense, models
from cnncore.functional import conv2d, conv2d_backward, conv_algorithm
from cnncore.functional.conv_selection import inapplicable
from cnncore_kernels.geometry import out_size

ALL_STRATEGIES = ("cnncore", "torch", "im2col", "shifted", "winograd", "space_to_batch")
# space_to_batch (a bench-only technique the engine does not use) is opt-in, e.g.
# CNNCORE_BENCH_DILATED_STRATEGIES=cnncore,torch,space_to_batch
STRATEGIES = tuple(
    s.strip()
    for s in os.environ.get(
        "CNNCORE_BENCH_DILATED_STRATEGIES", "cnncore,torch,im2col,shifted,winograd"
    ).split(",")
)
if unknown := [s for s in STRATEGIES if s not in ALL_STRATEGIES]:
    raise ValueError(
        f"CNNCORE_BENCH_DILATED_STRATEGIES: unknown {unknown}, choose from {ALL_STRATEGIES}"
    )
OURS = ("im2col", "shifted", "winograd", "space_to_batch")  # the strategies the table compares
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
@pytest.mark.benchmark(min_rounds=2, max_time=0.5, warmup=True, warmup_iterations=1)
def test_dilated_conv(benchmark, throughput, request, direction, case, strategy):
    name, shape = case
    if strategy == "winograd" and not _winograd_applies(shape):
        pytest.skip("winograd: 3x3 and 5x5 kernels only")
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
    if strategy == "cnncore":
        benchmark.extra_info["algorithm"] = auto_pick(shape, direction)


def _winograd_applies(shape: tuple[int, ...]) -> bool:
    C, K, kh, kw, _, _, _ = shape
    return inapplicable("winograd", (K, C, kh, kw), (1, 1)) is None


def auto_pick(shape: tuple[int, ...], direction: str) -> str:
    """The algorithm ``algorithm="auto"`` runs for this layer and pass."""
    C, K, kh, kw, d, H, W = shape
    return conv_algorithm((1, C, H, W), (K, C, kh, kw), 1, 0, d, backward=direction == "backward")


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
    alg = "auto" if strategy == "cnncore" else strategy
    return (
        (lambda: conv2d(x, w, b, 1, 0, d, algorithm=alg))
        if fwd
        else (lambda: conv2d_backward(dy, x, w, 1, 0, d, algorithm=alg))
    )


@pytest.mark.skipif(
    os.environ.get("CNNCORE_BENCH_STRATEGY_TABLE") != "1",
    reason="opt-in (about a minute on 2 cores): CNNCORE_BENCH_STRATEGY_TABLE=1",
)
def test_strategy_table(benchmark, request):
    """Every strategy of every layer measured round-robin (the machine is shared and its speed
    drifts; interleaving keeps the comparison fair): the fastest of ours per (layer, pass) beside
    what "auto" picks, as a table."""
    torch = request.getfixturevalue("torch_peer")
    rounds = int(os.environ.get("CNNCORE_BENCH_ROUNDS", "3"))
    ours_all = [s for s in OURS if s != "space_to_batch" or s in STRATEGIES]
    lines = [
        "| pass | layer | "
        + " | ".join(f"{s} ms" for s in ours_all)
        + " | torch ms | fastest | auto picks | torch / fastest ours |",
        "|---|---|" + "---:|" * (len(ours_all) + 1) + "---|---|---:|",
    ]
    table = []

    def measure():
        for direction in ("forward", "backward"):
            for name, shape in CASES:
                names = [s for s in ours_all if s != "winograd" or _winograd_applies(shape)]
                runs = {s: _runner(s, direction, shape, torch) for s in [*names, "torch"]}
                best = dict.fromkeys(runs, float("inf"))
                for _ in range(rounds):
                    for s, fn in runs.items():
                        t0 = time.perf_counter()
                        fn()
                        best[s] = min(best[s], time.perf_counter() - t0)
                auto = auto_pick(shape, direction)
                ours = min(names, key=best.get)
                table.append(
                    {
                        "direction": direction,
                        "layer": config(name, shape),
                        "auto": auto,
                        "fastest": ours,
                        **{k: v for k, v in best.items()},
                    }
                )
                cells = [f"{best[s] * 1e3:.1f}" if s in best else "-" for s in ours_all]
                lines.append(
                    f"| {direction} | {config(name, shape)} | "
                    + " | ".join(cells)
                    + f" | {best['torch'] * 1e3:.1f} | {ours} | {auto} "
                    f"| {best['torch'] / best[ours]:.2f} |"
                )

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.group = "dilated conv strategy table (round-robin)"
    benchmark.extra_info["table"] = table
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_sep("-", f"stride-1 dilated convolutions: min of {rounds} round-robin rounds")
        for line in lines:
            tr.write_line(line)
