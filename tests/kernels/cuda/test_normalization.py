"""CUDA LRN and LCN (forward and backward) against the Cython twins (simulator).

Same formulas and summation order as the CPU twin; float32 math functions (pow, sqrt) and the C
compiler's contractions may differ in the last bits, hence a few-ulp tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore_kernels import _normalization
from cnncore_kernels.cuda import normalization as G
from tests.kernels.cuda.sim import dev, host


def close(got, expect, scale=1.0):
    np.testing.assert_allclose(host(got), expect, rtol=2e-5, atol=2e-6 * scale)


def data(shape=(2, 3, 5, 6), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(
        np.float32
    )


# (size, alpha, beta, k): beta 0.75 / 0.5 / 1 take the special power paths, 0.6 the general one
@pytest.mark.parametrize(
    "size, alpha, beta, k", [(3, 0.1, 0.75, 2.0), (2, 0.5, 0.5, 1.0), (5, 0.3, 0.6, 1.5),
                             (1, 1e-4, 1.0, 1.0), (4, 0.2, 0.75, 1.0)],
)  # fmt: skip
def test_lrn(launch, size, alpha, beta, k):
    x, dy = data()
    close(G.local_response_norm(dev(x), size, alpha, beta, k),
          _normalization.local_response_norm(x, size, alpha, beta, k))  # fmt: skip
    close(G.local_response_norm_backward(dev(dy), dev(x), size, alpha, beta, k),
          _normalization.local_response_norm_backward(dy, x, size, alpha, beta, k))  # fmt: skip


# (size, sigma, threshold, divisor): odd/even windows larger and smaller than the image, the
# threshold active (large) or not, both divisors
@pytest.mark.parametrize(
    "size, sigma, threshold, divisor",
    [(3, 1.0, 1e-4, "mean"), (4, 2.0, 1e-4, "fixed"), (9, 2.0, 0.8, "mean"), (2, 0.5, 5.0, "mean"),
     (5, 1.5, 0.9, "fixed")],
)  # fmt: skip
def test_lcn(small_launch, size, sigma, threshold, divisor):
    x, dy = data((2, 3, 5, 6), seed=size)
    y = G.local_contrast_norm(dev(x), size, sigma, threshold, divisor)
    close(y, _normalization.local_contrast_norm(x, size, sigma, threshold, divisor))
    dx = G.local_contrast_norm_backward(dev(dy), dev(x), size, sigma, threshold, divisor)
    close(
        dx, _normalization.local_contrast_norm_backward(dy, x, size, sigma, threshold, divisor), 10
    )


@pytest.mark.parametrize("threads, blocks", [(1, 3), (96, 1)])
def test_lcn_launch_configurations(threads, blocks):
    from tests.kernels.cuda.sim import launch_config

    x, dy = data((1, 2, 4, 7), seed=3)
    with launch_config(threads=threads, max_blocks=blocks):
        y = G.local_contrast_norm(dev(x), 3, 1.0, 1e-4, "mean")
        dx = G.local_contrast_norm_backward(dev(dy), dev(x), 3, 1.0, 1e-4, "mean")
    close(y, _normalization.local_contrast_norm(x, 3, 1.0, 1e-4, "mean"))
    close(dx, _normalization.local_contrast_norm_backward(dy, x, 3, 1.0, 1e-4, "mean"), 10)


def test_dispatch_through_cnncore_functional(small_launch):
    x, dy = data((1, 3, 4, 5), seed=4)
    y = F.local_response_norm(dev(x), 3, alpha=0.1)
    assert hasattr(y, "__cuda_ndarray__")
    close(y, F.local_response_norm(x, 3, alpha=0.1))
    close(F.local_contrast_norm(dev(x), 3, 1.0), F.local_contrast_norm(x, 3, 1.0))
    close(F.local_contrast_norm_backward(dev(dy), dev(x), 3, 1.0),
          F.local_contrast_norm_backward(dy, x, 3, 1.0), 10)  # fmt: skip
