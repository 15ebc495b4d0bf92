"""``predict_zarr``: scores of an image in a Zarr store, written to another Zarr store, chunk by
chunk (no machine ever holds the whole image or the whole score map)."""

from __future__ import annotations

from cnncore import _validate as v
from cnncore.distributed._deps import require
from cnncore.distributed.array import predict_dask
from cnncore.nn.module import Module


def predict_zarr(
    model: Module,
    source,
    target,
    patch_size: int | tuple[int, int] | None,
    method: str = "dsparse",
    tile: int | tuple[int, int] | None = None,
    *,
    chunks: tuple[int, int] | None = None,
    source_component: str | None = None,
    target_component: str | None = None,
    overwrite: bool = False,
    batch_size: int | None = None,
    client=None,
    compute: bool = True,
):
    """Predict the image stored in ``source`` and store its scores in ``target``.

    Parameters
    ----------
    source : zarr.Array, or a path/URL/store holding one
        ``(N, C, H, W)`` or one image ``(C, H, W)``, float32/float64 like the model
        (``source_component`` inside a group).
    target : path/URL/store
        For the scores ``(N, K, H, W)`` (``(K, H, W)`` for one image), with the chunks of the
        computation; an existing array there is an error unless ``overwrite``.
    chunks : (h, w), optional
        Pixels per task; default: the chunks of ``source`` over H and W.
    tile, method, batch_size, client
        As in ``predict_dask``.
    compute : bool
        False returns the ``dask.delayed`` store operation instead of running it.

    Notes
    -----
    Each task reads its chunk and the halo from ``source`` and writes one chunk of ``target``.
    With a distributed cluster both stores must be reachable from every worker (a shared file
    system or an object store URL such as ``s3://...``).  Returns the written ``zarr.Array``
    (opened read-only), or the delayed store operation when ``compute=False``.
    """
    da = require("dask.array")
    zarr = require("zarr")
    images = da.from_zarr(source, component=source_component)
    one_image = images.ndim == 3
    if one_image:
        images = images[None]
    if chunks is not None:
        ch = v.positive_pair(chunks, "chunks")
        images = images.rechunk({2: ch[0], 3: ch[1]})
    scores = predict_dask(
        model, images, patch_size, method, tile, batch_size=batch_size, client=client
    )
    if one_image:
        scores = scores[0]
    # one Zarr chunk per task, so no two tasks write into the same stored chunk
    write_chunks = tuple(c[0] for c in scores.chunks)
    regular = all(
        all(s == w for s in c[:-1]) and c[-1] <= w
        for c, w in zip(scores.chunks, write_chunks, strict=True)
    )
    if not regular:
        scores = scores.rechunk(write_chunks)
    out = zarr.create(
        shape=scores.shape,
        chunks=write_chunks,
        dtype=scores.dtype,
        store=target,
        path=target_component,
        overwrite=bool(overwrite),
    )
    stored = da.store(scores, out, lock=False, compute=False)
    if not compute:
        return stored
    if client is not None:
        client.compute(stored).result()
    else:
        stored.compute()
    return zarr.open_array(target, path=target_component or "", mode="r")
