"""``predict_files``: many images (``.npy`` files), one Dask task each."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from cnncore.distributed._deps import require
from cnncore.distributed.array import share
from cnncore.nn.module import Module

SUFFIX = "_scores.npy"


def input_paths(inputs, pattern: str = "*.npy") -> list[Path]:
    """The files of a folder matching ``pattern`` (sorted), or the given list of paths."""
    if isinstance(inputs, (str, os.PathLike)):
        folder = Path(inputs)
        if not folder.is_dir():
            raise ValueError(f"inputs must be a folder or a list of files, got {str(folder)!r}")
        paths = sorted(p for p in folder.glob(pattern) if p.is_file())
        if not paths:
            raise ValueError(f"inputs folder {str(folder)!r} has no file matching {pattern!r}")
        return paths
    try:
        paths = [Path(p) for p in inputs]
    except TypeError:
        raise TypeError(
            f"inputs must be a folder or a list of paths, got {type(inputs).__name__}"
        ) from None
    if not paths:
        raise ValueError("inputs is an empty list")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"inputs: no such file(s): {missing}")
    return paths


def predict_file(
    model: Module,
    source: str,
    target: str,
    patch_size: int | tuple[int, int] | None,
    method: str,
    tile: int | tuple[int, int] | None,
    batch_size: int | None,
) -> str:
    """Scores of the ``(C, H, W)`` or ``(N, C, H, W)`` image in ``source``, saved to ``target``
    as ``(K, H, W)`` or ``(N, K, H, W)``.  Runs on a worker; the file appears whole or not at all
    (written to a temporary name, then renamed), so a retried task never leaves half a file."""
    from cnncore.dense import predict

    x = np.load(source, mmap_mode="r")  # tiles read only what they need
    one_image = x.ndim == 3
    try:
        scores = predict(
            model, x[None] if one_image else x, patch_size, method, tile, batch_size=batch_size
        )
    except (ValueError, TypeError) as err:
        raise type(err)(f"{source}: {err}") from err
    if one_image:
        scores = scores[0]
    tmp = f"{target}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, scores)
    os.replace(tmp, target)
    return target


def predict_files(
    model: Module,
    inputs,
    output_dir: str | os.PathLike,
    patch_size: int | tuple[int, int] | None,
    method: str = "dsparse",
    tile: int | tuple[int, int] | None = None,
    *,
    pattern: str = "*.npy",
    overwrite: bool = False,
    batch_size: int | None = None,
    client=None,
    compute: bool = True,
):
    """Predict every image of a folder (files matching ``pattern``) or a list of ``.npy`` files,
    one Dask task per file, and save the scores to ``output_dir/<name>_scores.npy``.

    Each file holds ``(C, H, W)`` or ``(N, C, H, W)``; its scores are ``predict(model, image,
    patch_size, method, tile)`` (``tile`` bounds each task's memory).  The model is one key of
    the graph, or scattered to every worker with ``client`` (see ``share``), never sent per file.
    Runs on ``client``, else on Dask's current scheduler (a ``Client`` made earlier in this
    process, or local threads).  Returns the output paths in the order of the inputs (with
    ``compute=False``: the list of ``dask.delayed`` tasks).  Existing outputs are an error unless
    ``overwrite``.
    """
    from cnncore.dense import block_predictor

    dask = require("dask")
    paths = input_paths(inputs, pattern)
    block_predictor(model, patch_size, method, batch_size=batch_size)  # refuse bad models here
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = [out_dir / (p.name[: -len(".npy")] if p.suffix == ".npy" else p.name) for p in paths]
    targets = [t.with_name(t.name + SUFFIX) for t in targets]
    if len(set(targets)) != len(targets):
        raise ValueError("inputs: two files have the same name, their scores would collide")
    if not overwrite:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise FileExistsError(f"output_dir already holds {existing} (pass overwrite=True)")
    ref = share(model, client)
    task = dask.delayed(predict_file, pure=False)
    tasks = [
        task(ref, str(p), str(t), patch_size, method, tile, batch_size)
        for p, t in zip(paths, targets, strict=True)
    ]
    if not compute:
        return tasks
    if client is not None:
        done = client.gather(client.compute(tasks))
    else:
        done = dask.compute(*tasks)
    return [Path(p) for p in done]
