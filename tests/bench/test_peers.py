"""The benchmarks' peers and rows compute what they claim, on tiny shapes, in every test run.

``pytest --benchmark-only`` times the PyTorch peers and the Dask rows at full size; the checks
that they compute the same function as ours belong here, where CI runs them (the benchmark
suites are skipped by ``--benchmark-skip``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import bench_distributed, bench_lcn
from cnncore import nn
from cnncore.functional import local_contrast_norm


@pytest.mark.parametrize("separable", [False, True], ids=["torch-conv2d", "torch-separable"])
@pytest.mark.parametrize("shape", [(1, 4, 23, 19), (2, 3, 6, 11)])
def test_lcn_peers_compute_the_spec_formula(separable, shape):
    """Both PyTorch LCN peers against ``local_contrast_norm`` in float64 (the peers run float32;
    images smaller than the 9 x 9 window exercise the border weight)."""
    x, _ = bench_lcn._inputs(shape, seed=5)
    args = (bench_lcn.LCN_SIZE, bench_lcn.LCN_SIGMA, bench_lcn.LCN_THRESHOLD)
    peer = bench_lcn.TorchLCN(torch, x.shape, *args, separable=separable)
    with torch.no_grad():
        theirs = peer(torch.from_numpy(x)).numpy()
    ours = local_contrast_norm(x.astype(np.float64), *args)
    np.testing.assert_allclose(theirs, ours, rtol=2e-3, atol=2e-4)


class _Request:
    """Stands in for pytest's ``request`` in ``bench_distributed._runner``: the ``torch_peer``
    fixture of ``bench/conftest.py`` is PyTorch itself."""

    def getfixturevalue(self, name):
        assert name == "torch_peer", name
        return torch


@pytest.mark.parametrize("impl", ["dask_sync", "torch_dsparse"])
def test_distributed_rows_equal_plain_predict(monkeypatch, impl):
    """The rows of ``bench_distributed`` (Dask's synchronous scheduler; the PyTorch d-sparse
    network on the same tiles) give the scores of the ``plain`` row, on a 40 x 40 image in tiles
    of 24 (uneven: the last tile is 16 wide).  The cluster row is ``predict_dask`` on a
    ``LocalCluster``, tested in ``tests/cnncore/test_distributed.py``."""
    monkeypatch.setattr(bench_distributed, "SIZE", 40)
    monkeypatch.setattr(bench_distributed, "TILE", 24)
    rng = np.random.default_rng(0)
    setup = {"model": _small_pixel_net(), "x": rng.standard_normal((1, 3, 40, 40), np.float32)}
    plain = bench_distributed._runner("plain", setup, _Request())()
    result = bench_distributed._runner(impl, setup, _Request())()
    assert result.shape == plain.shape == (1, 2, 40, 40)
    np.testing.assert_allclose(result, plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())


def _small_pixel_net():
    """``models.pixel65``'s layers and spatial sizes (patch 65, which ``bench_distributed``
    hard-codes) with 4 channels a layer instead of 32 to 256, so the test takes a fraction of a
    second."""
    rng = np.random.default_rng(65)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(4, 4, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 8),
        nn.ReLU(),
        nn.Linear(8, 2),
    )
    for p in m.parameters():
        p.data = rng.standard_normal(p.data.shape).astype(np.float32) * 0.3
    return m.eval()
