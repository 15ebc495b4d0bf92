"""The device rectangles of dense prediction (``window``, ``paste``) and of patch scanning
(``gather_patches``, ``scatter_scores``) against NumPy slicing and their CPU twins, under every
launch configuration."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels import window as cpu_window
from cnncore_kernels.cuda import patches, window
from tests.kernels.cuda.sim import dev, host

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    "rows, cols",
    [((-2, 3), (1, 6)), ((0, 4), (0, 5)), ((2, 7), (-3, 2)), ((5, 6), (6, 8)), ((-1, 5), (-1, 6))],
)
def test_window_matches_numpy_zero_fill(launch, rows, cols):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = window.window(dev(x), rows, cols)
    assert got.shape == (2, 3, rows[1] - rows[0], cols[1] - cols[0])
    np.testing.assert_array_equal(host(got), cpu_window.window(x, rows, cols))


def test_window_reads_a_strided_view(small_launch):
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    view = dev(x)[:, :, 1:, 2:]  # not contiguous
    np.testing.assert_array_equal(
        host(window.window(view, (-1, 4), (0, 6))),
        cpu_window.window(x[:, :, 1:, 2:], (-1, 4), (0, 6)),
    )


@pytest.mark.parametrize(
    "r0, c0, step",
    [
        (0, 0, (1, 1)),
        (1, 2, (1, 1)),
        (1, 0, (2, 3)),
        (3, 4, (1, 1)),
        (-3, -1, (2, 1)),
        (-2, 5, (3, 2)),
    ],
)
def test_paste_matches_the_cpu_twin(launch, r0, c0, step):
    dst = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    src = RNG.standard_normal((2, 3, 3, 2)).astype(np.float32)
    d = dev(dst)
    assert window.paste(d, dev(src), r0, c0, step) is d
    want = cpu_window.paste(dst.copy(), src, r0, c0, step)  # the CPU twin
    if r0 >= 0 and c0 >= 0:  # and NumPy's strided assignment, where it applies
        target = dst.copy()[:, :, r0 :: step[0], c0 :: step[1]]
        h, w = min(target.shape[2], 3), min(target.shape[3], 2)
        np.testing.assert_array_equal(want[:, :, r0 :: step[0], c0 :: step[1]][:, :, :h, :w],
                                      src[:, :, :h, :w])  # fmt: skip
    np.testing.assert_array_equal(host(d), want)


def test_paste_refuses_a_non_contiguous_destination_or_other_planes(small_launch):
    d = dev(np.zeros((1, 1, 4, 4), np.float32))[:, :, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        window.paste(d, dev(np.ones((1, 1, 1, 1), np.float32)), 0, 0)
    d = dev(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"src \(1, 3, 1, 1\), dst \(1, 2, 4, 4\)"):
        window.paste(d, dev(np.ones((1, 3, 1, 1), np.float32)), 0, 0)


@pytest.mark.parametrize("use_pixels", [False, True])
def test_gather_patches_and_scatter_scores_match_numpy(launch, use_pixels):
    N, C, h, w, P = 2, 2, 3, 4, (3, 2)
    block = RNG.standard_normal((N, C, h + P[0] - 1, w + P[1] - 1)).astype(np.float32)
    pixels = np.array([23, 0, 5, 11, 12, 7], np.int64) if use_pixels else None
    flat = pixels if use_pixels else np.arange(N * h * w)
    start, count = 1, 4
    got = patches.gather_patches(
        dev(block), (h, w), P, start, count, dev(pixels) if use_pixels else None
    )
    want = []
    for p in flat[start : start + count]:
        n, rest = divmod(int(p), h * w)
        i, j = divmod(rest, w)
        want.append(block[n, :, i : i + P[0], j : j + P[1]])
    np.testing.assert_array_equal(host(got), np.stack(want))
    # the scores of pixels start .. start + count, placed in (N, K, h, w)
    K = 3
    s = RNG.standard_normal((count, K)).astype(np.float32)
    out = np.full((N, K, h, w), np.nan, np.float32)
    d = dev(out)
    patches.scatter_scores(dev(s), start, d)
    for b, p in enumerate(range(start, start + count)):
        n, rest = divmod(p, h * w)
        out[n, :, rest // w, rest % w] = s[b]
    np.testing.assert_array_equal(host(d), out)
