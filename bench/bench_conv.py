"""conv2d forward and backward on the 13 benchmark shapes: ours and PyTorch CPU side by side.

Each (pass, shape) is one benchmark group holding the two implementations, so they read together;
``extra_info`` carries GFLOP/s and the sgemm peak measured in the same session (see
``bench/conftest.py``) and, for ours, the algorithm conv2d's "auto" ran; a throughput table is
printed at the end of the run.  PyTorch runs in this process, under cnncore's throttled OpenMP
spinning (see ``bench.peer``); ``python -m bench`` gives it a process of its own.
"""

from __future__ import annotations

import pytest

from bench.workloads import CONV_SHAPES, conv_algorithm, conv_case, conv_config

PASSES = ("forward", "backward")
IMPLS = ("cnncore", "torch")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "shape", CONV_SHAPES, ids=[conv_config(s).replace(" ", "_") for s in CONV_SHAPES]
)
@pytest.mark.parametrize("direction", PASSES)
@pytest.mark.benchmark(min_rounds=3, max_time=0.5, warmup=True, warmup_iterations=1)
def test_conv2d(benchmark, throughput, request, direction, shape, impl):
    torch = request.getfixturevalue("torch_peer") if impl == "torch" else None
    case = conv_case(shape, direction, impl, torch)
    benchmark.group = f"conv2d {direction} {case.config}"
    benchmark(case.run)
    throughput(
        benchmark,
        kernel=case.kernel,
        direction=direction,
        config=case.config,
        impl=impl,
        **({"algorithm": conv_algorithm(shape, direction)} if impl == "cnncore" else {}),
        **case.work(),
    )
