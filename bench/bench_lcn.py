"""LCN on (1, 64, 256, 256) and LRN on (8, 96, 55, 55), float32: ours and PyTorch CPU side by side.

LCN peers are PyTorch implementations of exactly SPEC.md's formula (checked against ours on a
small input before timing):
- ``torch-conv2d``: torch7's SpatialContrastiveNormalization recipe, a ``conv2d`` with the full
  ``size x size`` Gaussian over all C input channels (weight ``(1, C, size, size)``), the border
  weight ``E[1]`` computed once per shape outside the timed call (as torch7 caches it);
- ``torch-separable``: the same algebra as ours (channel mean first, then a 1-D ``conv2d`` along
  H and one along W), in PyTorch.
The backward rows time a full gradient from ``(x, dy)``: ours ``local_contrast_norm_backward``
(which recomputes the forward quantities) against PyTorch's forward with autograd plus
``backward``.  LRN: ``torch.nn.functional.local_response_norm`` (forward; forward + autograd).
Bytes are the compulsory traffic (inputs read once, output written once).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnncore.functional import (
    local_contrast_norm,
    local_contrast_norm_backward,
    local_response_norm,
    local_response_norm_backward,
)

LCN_SHAPE = (1, 64, 256, 256)
LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD = 9, 2.0, 1e-4
LRN_SHAPE = (8, 96, 55, 55)
LRN_ARGS = (5, 1e-4, 0.75, 1.0)  # AlexNet's size, alpha, beta, k
IMPLS_LCN = ("cnncore", "torch-conv2d", "torch-separable")
IMPLS_LRN = ("cnncore", "torch")


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32) + rng.random((1, shape[1], 1, 1), np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    return x, dy


def _gauss_1d(size, sigma):
    i = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    return np.exp(-(i * i) / (2.0 * sigma * sigma))


class TorchLCN:
    """SPEC.md's LCN in PyTorch ("mean" divisor), full 2-D or separable Gaussian."""

    def __init__(self, torch, shape, size, sigma, threshold, separable):
        self.torch, self.F = torch, torch.nn.functional
        N, C, H, W = shape
        self.C, self.threshold, self.separable = C, threshold, separable
        pb, pa = (size - 1) // 2, size // 2
        self.pad = (pb, pa, pb, pa)  # (left, right, top, bottom)
        g1 = _gauss_1d(size, sigma)
        if separable:  # E[z] = B(mean_c z): 1-D filters on the one channel-mean plane
            self.gh = torch.tensor(g1 / g1.sum(), dtype=torch.float32).view(1, 1, size, 1)
            self.gw = torch.tensor(g1 / g1.sum(), dtype=torch.float32).view(1, 1, 1, size)
        else:  # torch7: one conv2d over all C channels with g / (C * sum g)
            g2 = np.outer(g1, g1)
            g2 = g2 / (C * g2.sum())
            w = np.broadcast_to(g2, (1, C, size, size)).copy()
            self.g2 = torch.tensor(w, dtype=torch.float32)
        with torch.no_grad():  # the border weight E[1], once per shape (torch7 caches it too)
            self.e1 = self._window_sum(torch.ones((1, C, H, W), dtype=torch.float32))

    def _window_sum(self, z):
        F = self.F
        if self.separable:
            m = F.pad(z.mean(dim=1, keepdim=True), self.pad)
            return F.conv2d(F.conv2d(m, self.gh), self.gw)
        return F.conv2d(F.pad(z, self.pad), self.g2)

    def __call__(self, x):
        t = self.torch
        ex = self._window_sum(x) / self.e1
        v = x - ex
        s = t.sqrt(self._window_sum(v * v) / self.e1)
        c = s.mean(dim=(2, 3), keepdim=True)
        den = t.clamp(t.maximum(s, c), min=self.threshold)
        return v / den


@pytest.fixture(scope="module")
def lcn_data():
    return _inputs(LCN_SHAPE)


@pytest.fixture(scope="module")
def lrn_data():
    return _inputs(LRN_SHAPE, seed=1)


def _torch_lcn(torch, impl, shape):
    peer = TorchLCN(torch, shape, LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD, impl == "torch-separable")
    # the peer computes the same function (a check of the benchmark, not a timing assertion)
    x, _ = _inputs((1, shape[1], 23, 19), seed=5)
    small = TorchLCN(torch, x.shape, LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD, peer.separable)
    ours = local_contrast_norm(x.astype(np.float64), LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD)
    with torch.no_grad():
        theirs = small(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=2e-3, atol=2e-4)
    return peer


@pytest.mark.parametrize("impl", IMPLS_LCN)
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.benchmark(min_rounds=5, max_time=1.0, warmup=True, warmup_iterations=1)
def test_lcn(benchmark, throughput, request, lcn_data, direction, impl):
    x, dy = lcn_data
    benchmark.group = f"lcn {direction} {LCN_SHAPE} size {LCN_SIZE} float32"
    args = (LCN_SIZE, LCN_SIGMA, LCN_THRESHOLD, "mean")
    if impl == "cnncore":
        if direction == "forward":
            benchmark(local_contrast_norm, x, *args)
        else:
            benchmark(local_contrast_norm_backward, dy, x, *args)
    else:
        torch = request.getfixturevalue("torch_peer")
        peer = _torch_lcn(torch, impl, LCN_SHAPE)
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        if direction == "forward":

            def run():
                with torch.no_grad():
                    return peer(xt)

        else:

            def run():
                xg = xt.detach().requires_grad_()
                peer(xg).backward(dyt)
                return xg.grad

        benchmark(run)
    nbytes = x.nbytes * (2 if direction == "forward" else 3)
    throughput(
        benchmark,
        kernel="lcn",
        direction=direction,
        config=f"{LCN_SHAPE} size {LCN_SIZE}",
        impl=impl,
        bytes=nbytes,
    )


@pytest.mark.parametrize("impl", IMPLS_LRN)
@pytest.mark.parametrize("direction", ("forward", "backward"))
@pytest.mark.benchmark(min_rounds=5, max_time=1.0, warmup=True, warmup_iterations=1)
def test_lrn(benchmark, throughput, request, lrn_data, direction, impl):
    x, dy = lrn_data
    benchmark.group = f"lrn {direction} {LRN_SHAPE} size {LRN_ARGS[0]} float32"
    if impl == "cnncore":
        if direction == "forward":
            benchmark(local_response_norm, x, *LRN_ARGS)
        else:
            benchmark(local_response_norm_backward, dy, x, *LRN_ARGS)
    else:
        torch = request.getfixturevalue("torch_peer")
        F = torch.nn.functional
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        if direction == "forward":

            def run():
                with torch.no_grad():
                    return F.local_response_norm(xt, *LRN_ARGS)

        else:

            def run():
                xg = xt.detach().requires_grad_()
                F.local_response_norm(xg, *LRN_ARGS).backward(dyt)
                return xg.grad

        benchmark(run)
    nbytes = x.nbytes * (2 if direction == "forward" else 3)
    throughput(
        benchmark,
        kernel="lrn",
        direction=direction,
        config=f"{LRN_SHAPE} size {LRN_ARGS[0]}",
        impl=impl,
        bytes=nbytes,
    )
