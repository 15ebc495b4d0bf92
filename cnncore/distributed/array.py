"""``predict_dask``: dense prediction of a chunked Dask image, chunk by chunk with its halo.

Every output chunk of scores comes from one task that reads its image chunk plus a symmetric
overlap of ``depth = max(top, bottom)`` rows and ``max(left, right)`` columns (zeros beyond the
image: the pixel convention's zero padding), cuts that down to the model's exact, possibly
asymmetric halo (``BlockPredictor.halo``) and runs the single-machine block computation of
``cnncore.dense`` on it.  The network (its weights) is one object in the graph, referenced by key
from every chunk task (see ``share``), so each worker receives it once.
"""

from __future__ import annotations

import sys

import numpy as np

from cnncore import _validate as v
from cnncore.distributed._deps import require
from cnncore.nn.module import Module


def is_dask_array(x) -> bool:
    """Whether ``x`` is a ``dask.array.Array``.  Never imports Dask: if ``dask.array`` was not
    imported yet, nothing can be a Dask array."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def share(obj, client=None):
    """One reference to ``obj`` that many tasks can take as an argument; ``obj`` travels to each
    worker once instead of inside every task.

    - ``client=None``: a ``dask.delayed`` object (``pure=True``: its key is a hash of the
      contents).  The graph holds ``obj`` once, under that key; with a distributed scheduler one
      worker receives it with the graph and the others fetch it from there when their first task
      needs it.  Works with every Dask scheduler.
    - ``client`` (a ``dask.distributed.Client``): ``client.scatter(obj, broadcast=True)``, a
      ``Future`` whose data is copied to every worker up front; the graph holds only the key.
      Better for large networks (the scheduler never stores the weights).
    """
    if client is not None:
        return client.scatter(obj, broadcast=True, hash=True)
    dask = require("dask")
    return dask.delayed(obj, pure=True, traverse=False)


def check_dask_images(images, in_channels: int, model: Module, name: str = "images") -> None:
    """Validate a Dask image ``(N, C, H, W)`` before any graph is built (shape, dtype, channels,
    dtype of the model's Parameters)."""
    if not is_dask_array(images):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(images).__name__}")
    shape = tuple(images.shape)
    if any(isinstance(s, float) and np.isnan(s) for s in shape):
        raise ValueError(
            f"{name} has unknown chunk sizes (shape {shape}): "
            f"call {name}.compute_chunk_sizes() first"
        )
    if np.dtype(images.dtype) not in v.FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {images.dtype}")
    if len(shape) != 4:
        raise ValueError(f"{name} must have 4 dimensions (N, C, H, W), got shape {shape}")
    if min(shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {shape}")
    if shape[1] != in_channels:
        raise ValueError(
            f"{name} must have {in_channels} channels for this classifier, got shape {shape}"
        )
    for pname, p in model.named_parameters():
        if p.dtype != images.dtype:
            raise TypeError(
                f"{name} dtype {images.dtype} does not match parameter {pname!r} dtype {p.dtype} "
                "(convert the model with .double()/.float() or the images with astype)"
            )


def _splits(n: int, t: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering ``n`` in pieces of at most ``t``, as equal as possible."""
    k = -(-n // t)
    b = [n * i // k for i in range(k + 1)]
    return list(zip(b[:-1], b[1:], strict=True))


def predict_block(
    block: np.ndarray,
    predictor,
    tile: tuple[int, int] | None,
    pad: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Scores ``(n, K, h, w)`` of one chunk from ``block (n, C, dh + h + dh, dw + w + dw)``: the
    chunk with ``predictor.depth`` rows/columns of overlap on every side.  Runs on the workers.

    ``pad``: rows/columns of that overlap missing on both sides, added here as zeros (an axis that
    is one chunk shorter than the depth, which Dask's overlap cannot handle).  The overlap is cut
    to the exact halo ``((top, bottom), (left, right))`` (the block of image rows
    ``[r0 - top, r1 + bottom)``), then ``predictor`` (a ``cnncore.dense.BlockPredictor``)
    computes it, in tiles of at most ``tile`` pixels if given.
    """
    if pad != (0, 0):
        block = np.pad(block, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    (top, bottom), (left, right) = predictor.halo
    dh, dw = predictor.depth
    H, W = block.shape[2], block.shape[3]
    h, w = H - 2 * dh, W - 2 * dw
    # rows [dh - top, dh + h + bottom) of the block are image rows [r0 - top, r1 + bottom)
    core = block[:, :, dh - top : dh + h + bottom, dw - left : dw + w + right]
    if tile is None or (tile[0] >= h and tile[1] >= w):
        return predictor(np.ascontiguousarray(core))
    out = np.empty((block.shape[0], predictor.num_classes, h, w), dtype=block.dtype)
    for r0, r1 in _splits(h, tile[0]):
        for c0, c1 in _splits(w, tile[1]):
            part = core[:, :, r0 : r1 + top + bottom, c0 : c1 + left + right]
            out[:, :, r0:r1, c0:c1] = predictor(np.ascontiguousarray(part))
    return out


def predict_dask(
    model: Module,
    images,
    patch_size: int | tuple[int, int] | None = None,
    method: str = "dsparse",
    tile: int | tuple[int, int] | None = None,
    *,
    batch_size: int | None = None,
    client=None,
):
    """Lazy scores ``(N, K, H, W)`` of a Dask image ``(N, C, H, W)`` chunked over H and W.

    Same arguments as ``cnncore.dense.predict`` (which calls this for a Dask array), plus
    ``client``: a ``dask.distributed.Client`` to ``scatter`` the network to all its workers up
    front (see ``share``); without it the network is one key of the graph.

    The scores have the chunks of ``images`` over N, H and W and one chunk of K classes; C is
    merged into one chunk if it was split.  Chunks smaller than the halo depth are merged for the
    computation (as Dask's ``map_overlap`` does) and the scores rechunked back.  ``tile`` bounds
    the memory of each task: every chunk is computed in tiles of at most ``tile`` pixels.

    Each chunk's scores are those of ``predict`` on the whole image: bit for bit where the chunk
    grid equals ``predict``'s tile grid and BLAS runs the same number of threads, otherwise to
    float rounding (BLAS sums in an order that depends on the matrix widths and its threads).
    """
    from cnncore.dense import block_predictor

    da = require("dask.array")
    predictor = block_predictor(model, patch_size, method, batch_size=batch_size)
    check_dask_images(images, predictor.plan.in_channels, model)
    t = None if tile is None else v.positive_pair(tile, "tile")

    x = images if len(images.chunks[1]) == 1 else images.rechunk({1: -1})
    depth, pad = list(predictor.depth), [0, 0]
    for a in (0, 1):
        if x.shape[2 + a] < depth[a]:  # Dask overlaps at most the array: one chunk, zeros in task
            x = x.rechunk({2 + a: -1})
            depth[a], pad[a] = 0, depth[a]
    dh, dw = depth
    g = da.overlap.overlap(
        x,
        depth={0: 0, 1: 0, 2: dh, 3: dw},
        boundary={0: "none", 1: "none", 2: 0, 3: 0},
    )
    # overlap() merges chunks smaller than the depth; the cores are what is left without it
    core_h = tuple(c - 2 * dh for c in g.chunks[2])
    core_w = tuple(c - 2 * dw for c in g.chunks[3])
    ref = share(predictor, client)
    scores = g.map_blocks(
        predict_block,
        ref,
        t,
        tuple(pad),
        chunks=(g.chunks[0], (predictor.num_classes,), core_h, core_w),
        dtype=images.dtype,
        meta=np.empty((0, 0, 0, 0), dtype=images.dtype),
        token=f"cnncore-{method}",
    )
    if (core_h, core_w) != tuple(images.chunks[2:]):
        scores = scores.rechunk({2: images.chunks[2], 3: images.chunks[3]})
    return scores
