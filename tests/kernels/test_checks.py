"""The CPU range check (``cnncore_kernels.checks.first_out_of_range``, Cython ``_checks``) against
NumPy: the first offending flat position and its value, across the parallel blocks."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels.checks import first_out_of_range


def reference(a, bound, groups=(1, 1, 0), ignore=None):
    inner, G, step = groups
    flat = a.reshape(-1).astype(np.int64)
    g = (np.arange(flat.size) // inner) % G
    bad = ((flat - g * step) < 0) | ((flat - g * step) >= bound)
    if ignore is not None:
        bad &= flat != ignore
    pos = np.flatnonzero(bad)
    return None if pos.size == 0 else (int(pos[0]), int(flat[pos[0]]))


CASES = [
    ([0, 3, 2, 1, 3], 4, (1, 1, 0), None),  # all valid
    ([0, 3, 4, 1, -1], 4, (1, 1, 0), None),  # 4 first, -1 later
    ([0, -100, 2, -100], 3, (1, 1, 0), -100),  # ignored entries
    ([0, -100, 7, -5], 3, (1, 1, 0), -100),
    ([0, 1, 2, 3, 4, 5, 6, 7], 2, (2, 2, 2), None),  # groups of 2: [0,2), then [2,4)
    ([0, 1, 0, 3, 4, 5, 6, 7], 2, (2, 2, 2), None),  # position 2 holds 0, not in [2, 4)
    ([2**62, 0], 5, (1, 1, 0), None),
    ([], 5, (1, 1, 0), None),
]


@pytest.mark.parametrize("values, bound, groups, ignore", CASES)
def test_first_out_of_range_matches_numpy(values, bound, groups, ignore):
    a = np.array(values, dtype=np.int64)
    assert first_out_of_range(a, bound, groups=groups, ignore=ignore) == reference(
        a, bound, groups, ignore
    )


@pytest.mark.parametrize("n", [1, 65535, 65536, 200003])
def test_first_offender_over_every_block(n):
    rng = np.random.default_rng(n)
    idx = rng.integers(0, 1000, (1, n)).astype(np.int64)  # any shape: positions are flat
    assert first_out_of_range(idx, 1000) is None
    for positions, value in [((n - 1,), 5000), ((n // 2, n - 1), -1), ((0, n // 2), 2**62)]:
        bad = idx.copy()
        bad[0, list(positions)] = value
        assert first_out_of_range(bad, 1000) == (positions[0], value) == reference(bad, 1000)
    # groups and ignore across blocks: channel-max style offsets, ignored entries skipped
    g = (np.arange(n) // 3) % 4
    grouped = (rng.integers(0, 2, n) + 2 * g).astype(np.int64)
    assert first_out_of_range(grouped, 2, groups=(3, 4, 2)) is None
    grouped[n - 1] = 2 * g[n - 1] + 2
    assert first_out_of_range(grouped, 2, groups=(3, 4, 2)) == reference(grouped, 2, (3, 4, 2))
    ignored = idx.copy()
    ignored[0, n // 2] = -100
    assert first_out_of_range(ignored, 1000, ignore=-100) is None
