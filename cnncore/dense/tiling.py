"""Blocks with their halo, and the tile loop.

Every method computes the scores of a rectangle of pixels from one *block*: the image rows
``[r0 - top, r1 + bottom)`` and columns ``[c0 - left, c1 + right)``, zeros where that leaves the
image (the pixel convention's zero padding); ``Plan.halo(method)`` gives ``(top, bottom)`` and
``(left, right)``.  ``window`` cuts such a block out of an image, ``window_adjoint`` takes a
gradient back, and ``run_tiled`` maps a block function over tiles.  A block function
``fn(block) -> scores`` of shape ``(N, K, h, w)`` for a block of ``(N, C, h + top + bottom,
w + left + right)`` is all a chunked engine (Dask's ``map_overlap``) needs; ``crop_overlap`` turns a
symmetric overlap (``depth`` each side, as Dask adds) into the exact halo.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

from cnncore_kernels import window as _kw
from cnncore_kernels.arrays import empty

Halo = tuple[tuple[int, int], tuple[int, int]]


def window(x, rows: tuple[int, int], cols: tuple[int, int]):
    """``x[:, :, r0:r1, c0:c1]`` for any ``r0 < r1``, ``c0 < c1`` (negative or past the end), with
    zeros outside the image.  x: (N, C, H, W) -> (N, C, r1 - r0, c1 - c0), C-contiguous, on the
    device ``x`` lives on (a GPU array gives a Numba device array, computed there)."""
    return _kw.window(x, rows, cols)


def window_adjoint(dwin, hw: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]):
    """Adjoint of ``window``: the part of ``dwin`` that lies inside the ``hw`` image, in place.
    dwin: (N, C, r1 - r0, c1 - c0) -> (N, C, H, W) (zeros where the window did not reach)."""
    H, W = hw
    (r0, r1), (c0, c1) = rows, cols
    if (r0, r1, c0, c1) == (0, H, 0, W):
        return dwin
    return _kw.window(dwin, (-r0, H - r0), (-c0, W - c0))  # the image seen from the window


def block_ranges(hw: tuple[int, int], halo: Halo) -> tuple[tuple[int, int], tuple[int, int]]:
    """Image rows and columns of the block that gives the scores of a whole ``hw`` image."""
    (top, bottom), (left, right) = halo
    return (-top, hw[0] + bottom), (-left, hw[1] + right)


def tiles(hw: tuple[int, int], tile: tuple[int, int]) -> Iterator[tuple[int, int, int, int]]:
    """``(r0, r1, c0, c1)`` of the tiles covering an ``hw`` image, row by row; tiles are at most
    ``tile`` and as equal as possible (no sliver at the end)."""
    H, W = hw
    nr, nc = -(-H // tile[0]), -(-W // tile[1])
    rb = [H * t // nr for t in range(nr + 1)]
    cb = [W * t // nc for t in range(nc + 1)]
    for r in range(nr):
        for c in range(nc):
            yield rb[r], rb[r + 1], cb[c], cb[c + 1]


# A tile whose halo holds more than this many times the tile's own pixels is mostly recomputation
# (pixel65 with tile=1 reads a 60x60 block per pixel: 300x slower than one untiled pass).
MAX_HALO_RATIO = 4


def tile_overhead(
    hw: tuple[int, int], tile: tuple[int, int], halo: Halo
) -> tuple[float, int] | None:
    """``(ratio, suggestion)`` when tiling an ``hw`` image by ``tile`` reads a halo of more than
    ``MAX_HALO_RATIO`` times the tile's area, else None (also when one tile covers the image).

    ``ratio`` is the halo's area over the tile's (tiles as ``tiles`` cuts them); ``suggestion`` the
    smallest square tile whose halo is at most its own area, ``t`` with ``(t + eh)(t + ew) = 2t^2``
    for the halo's extents ``eh = top + bottom``, ``ew = left + right``."""
    H, W = hw
    if tile[0] >= H and tile[1] >= W:
        return None
    eh, ew = (max(a + b, 0) for a, b in halo)
    th = -(-H // -(-H // tile[0]))  # the largest tile ``tiles`` cuts
    tw = -(-W // -(-W // tile[1]))
    ratio = ((th + eh) * (tw + ew) - th * tw) / (th * tw)
    if ratio <= MAX_HALO_RATIO:
        return None
    suggestion = math.ceil(((eh + ew) + math.sqrt((eh + ew) ** 2 + 4 * eh * ew)) / 2)
    return ratio, max(suggestion, 1)


def warn_small_tile(hw: tuple[int, int], tile: tuple[int, int], halo: Halo) -> None:
    """``UserWarning`` when ``tile`` is so small that the halo dominates (see ``tile_overhead``)."""
    found = tile_overhead(hw, tile, halo)
    if found is not None:
        ratio, t = found
        warnings.warn(
            f"tile={tile} is small for this model: each tile reads a halo of {ratio:.0f}x its "
            f"own area ({halo}), so most of the work is repeated; use tile={t} or larger",
            UserWarning,
            stacklevel=3,
        )


def run_tiled(
    block_fn: Callable,
    images,
    halo: Halo,
    num_classes: int,
    tile: tuple[int, int] | None,
):
    """Scores ``(N, K, H, W)`` of ``images (N, C, H, W)``, computed tile by tile: each tile's block
    (with its halo, zeros beyond the image) goes through ``block_fn``.  ``tile=None``: one tile.
    GPU images stay on the GPU: blocks are cut and scores assembled there."""
    N, _, H, W = (int(s) for s in images.shape)
    if tile is None or (tile[0] >= H and tile[1] >= W):
        rows, cols = block_ranges((H, W), halo)
        return block_fn(window(images, rows, cols))
    (top, bottom), (left, right) = halo
    out = empty(images, (N, num_classes, H, W))
    for r0, r1, c0, c1 in tiles((H, W), tile):
        block = window(images, (r0 - top, r1 + bottom), (c0 - left, c1 + right))
        scores = block_fn(block)
        want = (N, num_classes, r1 - r0, c1 - c0)
        if tuple(int(s) for s in scores.shape) != want:
            got = tuple(scores.shape)
            raise ValueError(f"block function gave shape {got}, expected {want}")
        _kw.paste(out, scores, r0, c0)
    return out


def crop_overlap(block, halo: Halo, depth: tuple[int, int]):
    """A block with ``depth`` extra rows/columns on every side (what Dask's ``map_overlap`` with a
    zero boundary hands over) cut down to exactly ``halo``.  Needs ``depth >= halo`` each side."""
    (top, bottom), (left, right) = halo
    dh, dw = depth
    if min(dh - top, dh - bottom, dw - left, dw - right) < 0:
        raise ValueError(f"depth {depth} is smaller than the halo {halo}")
    H, W = block.shape[-2], block.shape[-1]
    return block[..., dh - top : H - dh + bottom, dw - left : W - dw + right]


def overlap_depth(halo: Halo) -> tuple[int, int]:
    """The symmetric overlap (rows, columns) that covers ``halo`` on both sides."""
    (top, bottom), (left, right) = halo
    return max(top, bottom, 0), max(left, right, 0)
