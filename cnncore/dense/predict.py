"""``predict``: the scores of every pixel by patch scanning, FCN shift-and-stitch or the d-sparse
network, whole or in tiles; ``block_predictor``: the same computation as a function of one block
with its halo, for engines that map it over chunks (Dask's ``map_overlap``)."""

from __future__ import annotations

import numpy as np

from cnncore import _validate as v
from cnncore.dense.convert import METHODS, Plan, analyze
from cnncore.dense.dsparse import DenseNet, check_images
from cnncore.dense.fcn import FCNNet
from cnncore.dense.patchwise import default_batch_size, scan_patches
from cnncore.dense.tiling import Halo, crop_overlap, overlap_depth, run_tiled, warn_small_tile
from cnncore.nn.module import Module, no_grad


def _is_dask_array(x) -> bool:
    """Duck typing on Dask's collection protocol: ``cnncore.distributed`` (which uses this
    package) is imported only when such an array arrives."""
    return hasattr(x, "__dask_graph__") and hasattr(x, "chunks")


class BlockPredictor:
    """``predictor(block) -> scores``: the scores ``(N, K, h, w)`` of the pixels of a block
    ``(N, C, h + top + bottom, w + left + right)`` that holds its ``halo`` (zeros beyond the image).

    Attributes: ``plan``, ``method``, ``halo`` (``((top, bottom), (left, right))``), ``depth``
    (the symmetric overlap covering the halo) and ``num_classes``.  ``from_overlap(block)`` takes
    a block with ``depth`` rows and columns of overlap on every side instead.  Picklable (a
    network, no closures), so it can be sent to workers once.
    """

    def __init__(self, model: Module, plan: Plan, method: str, batch_size: int | None) -> None:
        self.plan = plan
        self.method = method
        self.halo: Halo = plan.halo(method)
        self.depth = overlap_depth(self.halo)
        self.num_classes = plan.num_classes
        self.batch_size = batch_size
        if method == "dsparse":
            self.net: Module = DenseNet(plan)
        elif method == "fcn":
            self.net = FCNNet(plan)
        else:
            self.net = model

    def __call__(self, block: np.ndarray) -> np.ndarray:
        (top, bottom), (left, right) = self.halo
        if block.ndim != 4:
            raise ValueError(f"block must be (N, C, h, w) with its halo, got shape {block.shape}")
        hw = (int(block.shape[2]) - top - bottom, int(block.shape[3]) - left - right)
        if hw[0] < 1 or hw[1] < 1:
            raise ValueError(
                f"block of shape {tuple(block.shape)} is smaller than its halo {self.halo}"
            )
        with no_grad():
            if self.method == "dsparse":
                return self.net.forward_valid(block)
            if self.method == "fcn":
                return self.net.shift_and_stitch(block, hw)
            bs = self.batch_size or default_batch_size(self.plan, block.dtype.itemsize)
            return scan_patches(self.net, block, hw, self.plan, bs)

    def from_overlap(self, block: np.ndarray) -> np.ndarray:
        """Scores of a block carrying ``depth`` extra rows/columns on every side."""
        return self(crop_overlap(block, self.halo, self.depth))


def block_predictor(
    model: Module,
    patch_size: int | tuple[int, int] | None = None,
    method: str = "dsparse",
    *,
    batch_size: int | None = None,
) -> BlockPredictor:
    """The computation of ``predict`` as a function of one block with its halo (see
    ``BlockPredictor``); the converted network shares ``model``'s Parameters.  ``patch_size``
    defaults to ``model.patch_size``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if batch_size is not None:
        batch_size = v.positive_int(batch_size, "batch_size")
    return BlockPredictor(model, analyze(model, patch_size), method, batch_size)


def predict(
    model: Module,
    images,
    patch_size: int | tuple[int, int] | None = None,
    method: str = "dsparse",
    tile: int | tuple[int, int] | None = None,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Scores of every pixel of ``images`` under the pixel convention (docs: "The pixel
    convention").

    Parameters
    ----------
    model : a patch classifier (``Sequential``) mapping ``(N, C, P, P)`` to ``(N, K)`` scores
    images : array, shape (N, C, H, W), float32 or float64 like the model's Parameters
    patch_size : int or (Ph, Pw), optional
        Defaults to ``model.patch_size`` (the builders of ``cnncore.models`` set it);
        ``ValueError`` when neither is given.
    method : ``"dsparse"`` (one pass of the d-sparse network), ``"fcn"`` (shift and stitch over
        the total stride) or ``"patchwise"`` (patch scanning, ``batch_size`` patches at a time)
    tile : int or (th, tw), optional
        Compute in tiles of at most this many pixels, each with its halo: same scores, memory
        bounded by the tile (plus the freed blocks the kernels keep, at most the limit of
        ``cnncore.memory``).  A ``UserWarning`` suggests a larger tile when the halo holds more
        than 4 times the tile's pixels (most of the work would be repeated).

    Returns
    -------
    scores : array, shape (N, K, H, W)
        A lazy Dask array, chunked like ``images``, when ``images`` is a Dask array chunked over
        H and W (``cnncore.distributed.predict_dask``: each chunk is computed with its halo).
    """
    if _is_dask_array(images):
        from cnncore.distributed import predict_dask  # the optional Dask layer, on demand

        return predict_dask(model, images, patch_size, method, tile, batch_size=batch_size)
    bp = block_predictor(model, patch_size, method, batch_size=batch_size)
    x = check_images(images, bp.plan, model=model)
    t = None if tile is None else v.positive_pair(tile, "tile")
    if t is not None:
        warn_small_tile((int(x.shape[2]), int(x.shape[3])), t, bp.halo)
    return run_tiled(bp, x, bp.halo, bp.num_classes, t)
