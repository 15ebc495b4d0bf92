"""The NumPy CPU twins of the dense-inference families against plain loops: ``window`` (zero
fill past the edges), ``paste`` (strided, offsets anywhere), ``gather_patches`` /
``scatter_scores``, and ``elementwise``.  The GPU twins are compared with these in
``tests/kernels/cuda/test_window.py``."""

from __future__ import annotations

import numpy as np
import pytest

from cnncore_kernels import elementwise, patches, window

RNG = np.random.default_rng(11)


def window_loop(x, rows, cols):
    N, C, H, W = x.shape
    out = np.zeros((N, C, rows[1] - rows[0], cols[1] - cols[0]), x.dtype)
    for i, r in enumerate(range(*rows)):
        for j, c in enumerate(range(*cols)):
            if 0 <= r < H and 0 <= c < W:
                out[:, :, i, j] = x[:, :, r, c]
    return out


def paste_loop(dst, src, r0, c0, step):
    out = dst.copy()
    for i in range(src.shape[2]):
        for j in range(src.shape[3]):
            r, c = r0 + i * step[0], c0 + j * step[1]
            if 0 <= r < dst.shape[2] and 0 <= c < dst.shape[3]:
                out[:, :, r, c] = src[:, :, i, j]
    return out


@pytest.mark.parametrize(
    "rows, cols",
    [((-2, 3), (1, 6)), ((0, 4), (0, 5)), ((2, 7), (-3, 2)), ((5, 6), (6, 8)), ((-9, -5), (0, 2))],
)
def test_window_is_the_zero_filled_rectangle(rows, cols):
    x = RNG.standard_normal((2, 3, 4, 5))
    got = window.window(x, rows, cols)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, window_loop(x, rows, cols))


@pytest.mark.parametrize(
    "r0, c0, step",
    [(0, 0, (1, 1)), (1, 2, (1, 1)), (1, 0, (2, 3)), (3, 4, (1, 1)), (-3, -1, (2, 1)),
     (-5, 0, (1, 1)), (6, 0, (1, 1)), (-2, 5, (3, 2))],
)  # fmt: skip
def test_paste_writes_what_lands_inside(r0, c0, step):
    dst = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    src = RNG.standard_normal((2, 3, 3, 2)).astype(np.float32)
    want = paste_loop(dst, src, r0, c0, step)
    assert window.paste(dst, src, r0, c0, step) is dst
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("use_pixels", [False, True])
def test_gather_patches_and_scatter_scores(use_pixels):
    N, C, h, w, P = 2, 2, 3, 4, (3, 2)
    block = RNG.standard_normal((N, C, h + P[0] - 1, w + P[1] - 1))
    pixels = np.array([23, 0, 5, 11, 12, 7], np.int64) if use_pixels else None
    block, pix = patches.prepare(block, pixels)
    flat = pixels if use_pixels else np.arange(N * h * w)
    start, count = 1, 4
    got = patches.gather_patches(block, (h, w), P, start, count, pix)
    want = []
    for p in flat[start : start + count]:
        n, rest = divmod(int(p), h * w)
        i, j = divmod(rest, w)
        want.append(block[n, :, i : i + P[0], j : j + P[1]])
    np.testing.assert_array_equal(got, np.stack(want))
    K = 3
    s = RNG.standard_normal((count, K))
    out = np.full((N, K, h, w), np.nan)
    want = out.copy()
    assert patches.scatter_scores(s, start, out) is out
    for b, p in enumerate(range(start, start + count)):
        n, rest = divmod(p, h * w)
        want[n, :, rest // w, rest % w] = s[b]
    np.testing.assert_array_equal(out, want)


def test_elementwise():
    a, b = RNG.standard_normal((3, 4)).astype(np.float32), RNG.standard_normal((3, 4))
    np.testing.assert_array_equal(elementwise.add(a, a), a + a)
    got = elementwise.scale(0.1, a)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, a * np.float32(0.1))
    y = b.copy()
    assert elementwise.axpy(0.5, b, y) is y
    np.testing.assert_array_equal(y, b + 0.5 * b)
