"""A CIFAR-sized network's training step and inference, ours and PyTorch CPU from the same weights.

The network, optimiser and step are those of ``bench.cifar`` (two 5x5 convolutions, LRN, three
fully connected layers; SGD with momentum 0.9 and weight decay 5e-4), at batch 64 and 128.  Each
(mode, batch) is one group holding the two implementations; ``extra_info`` carries GFLOP/s of the
conv and linear layers (3x the forward for a training step).
"""

from __future__ import annotations

import pytest

from bench.cifar import conv_algorithms
from bench.workloads import cifar_case

BATCHES = (64, 128)


@pytest.mark.parametrize("impl", ("cnncore", "torch"))
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("mode", ("train", "inference"))
@pytest.mark.benchmark(min_rounds=5, max_time=1.0, warmup=True, warmup_iterations=1)
def test_cifar_net(benchmark, throughput, request, mode, batch, impl):
    torch = request.getfixturevalue("torch_peer") if impl == "torch" else None
    case = cifar_case(batch, mode, impl, torch)
    benchmark.group = f"cifar_net {case.direction} batch {batch}"
    benchmark(case.run)
    throughput(
        benchmark,
        kernel=case.kernel,
        direction=case.direction,
        config=case.config,
        impl=impl,
        **({"algorithm": conv_algorithms(batch, mode)} if impl == "cnncore" else {}),
        **case.work(),
    )
