"""Range checks of device index arrays (simulator): ``first_out_of_range`` against NumPy and its
CPU twin, and the public functions that use it refuse bad GPU indices and targets without copying
them."""

from __future__ import annotations

import numpy as np
import pytest

import cnncore.functional as F
from cnncore_kernels import _checks
from cnncore_kernels.cuda.checks import first_out_of_range
from tests.kernels.cuda.sim import dev
from tests.kernels.test_checks import CASES, reference


@pytest.mark.parametrize("values, bound, groups, ignore", CASES)
def test_first_out_of_range_matches_numpy(launch, values, bound, groups, ignore):
    for dtype in (np.int64, np.int32):
        a = np.array(values, dtype=np.int64)
        if dtype == np.int32 and a.size and np.abs(a).max() >= 2**31:
            continue
        a = a.astype(dtype)
        got = first_out_of_range(dev(a), bound, groups=groups, ignore=ignore)
        assert got == reference(a, bound, groups, ignore)
        a64 = np.ascontiguousarray(a, dtype=np.int64)
        assert got == _checks.first_out_of_range(a64, bound, groups=groups, ignore=ignore)


def test_max_pool_backward_refuses_bad_device_indices(small_launch):
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    y, idx = F.max_pool2d(x, 2)
    dy = np.ones_like(y)
    bad = idx.copy()
    bad[0, 1, 1, 0] = 16
    with pytest.raises(ValueError, match=r"indices out of range: .* \[0, 16\), found 16"):
        F.max_pool2d_backward(dev(dy), dev(bad), x.shape)
    with pytest.raises(TypeError, match="int64"):
        F.max_pool2d_backward(dev(dy), dev(idx.astype(np.int32)), x.shape)
    with pytest.raises(ValueError, match="must have the shape of dy"):
        F.max_pool2d_backward(dev(dy), dev(idx[:, :1]), x.shape)
    F.max_pool2d_backward(dev(dy), dev(idx), x.shape)  # the valid ones pass


def test_channel_max_pool_backward_refuses_an_index_of_another_group(small_launch):
    x = np.random.default_rng(1).standard_normal((1, 4, 2, 3)).astype(np.float32)
    y, idx = F.channel_max_pool(x, 2)
    dy = np.ones_like(y)
    F.channel_max_pool_backward(dev(dy), dev(idx), x.shape)
    bad = idx.copy()
    bad[0, 1, 1, 2] = 1  # group 1 owns channels 2 and 3
    with pytest.raises(ValueError, match=r"group \(k=2\) must lie in \[0, 2\), found -1"):
        F.channel_max_pool_backward(dev(dy), dev(bad), x.shape)


def test_cross_entropy_refuses_bad_device_targets(small_launch):
    logits = np.random.default_rng(2).standard_normal((2, 3, 2, 2)).astype(np.float32)
    t = np.array([[[0, 2], [-100, 1]], [[2, 2], [0, 1]]], np.int64)
    F.cross_entropy(dev(logits), dev(t))
    bad = t.copy()
    bad[1, 0, 1] = 3
    with pytest.raises(
        ValueError, match=r"in \[0, 3\) or equal ignore_index=-100, got 3 at index \(1, 0, 1\)"
    ):
        F.cross_entropy(dev(logits), dev(bad))
    with pytest.raises(ValueError, match="got -100 at index"):
        F.cross_entropy(dev(logits), dev(t), ignore_index=-1)
    with pytest.raises(TypeError, match="int32 or int64"):
        F.cross_entropy(dev(logits), dev(t.astype(np.int16)))
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 2, 2\)"):
        F.cross_entropy(dev(logits), dev(t[:, :1]))
    with pytest.raises(TypeError, match="GPU array like logits"):
        F.cross_entropy(dev(logits), t)
