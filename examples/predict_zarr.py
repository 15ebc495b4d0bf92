"""
Dense prediction of a Zarr image on Dask
========================================

Dense prediction of a large image stored in Zarr, on a Dask cluster, chunk by chunk.

    python examples/predict_zarr.py                      # a two-process LocalCluster
    python examples/predict_zarr.py tcp://scheduler:8786 # an existing cluster (any deployment)

Writes a random 3 x 1024 x 1024 image to ``image.zarr`` in ``--out`` (default ``examples_out/``,
ignored by git; on a real cluster a folder every worker reaches), predicts it with ``pixel65`` in
512 x 512 chunks and stores the (2, 1024, 1024) scores in ``scores.zarr`` beside it.  Neither the
image nor the scores are ever held whole by one process.  The image store is removed at the end
(``--keep`` keeps it); the scores stay.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("scheduler", nargs="?", help="address of a running Dask scheduler")
    parser.add_argument(
        "--out", default="examples_out", help="folder for the Zarr stores (shared with the workers)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the input image store")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=512)
    args = parser.parse_args()

    from cnncore.distributed import predict_zarr
    from cnncore.models import pixel65

    # isort: split
    import dask.array as da
    import zarr
    from dask.distributed import Client, LocalCluster

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "image.zarr"
    scores = folder / "scores.zarr"
    S, T = args.size, args.chunk

    with contextlib.ExitStack() as stack:
        if args.scheduler:
            client = stack.enter_context(Client(args.scheduler))
        else:
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
            client = stack.enter_context(Client(stack.enter_context(cluster)))
        # the image is made chunk by chunk on the workers, too
        rng = da.random.default_rng(0)
        x = rng.standard_normal((1, 3, S, S), chunks=(1, 3, T, T), dtype=np.float32)
        z = zarr.create(
            x.shape, chunks=(1, 3, T, T), dtype=x.dtype, store=str(image), overwrite=True
        )
        da.store(x, z, lock=False)

        model = pixel65().eval()
        t = time.perf_counter()
        out = predict_zarr(model, str(image), str(scores), 65, overwrite=True, client=client)
        seconds = time.perf_counter() - t
        print(f"scores {out.shape} in {scores} ({out.chunks} chunks)")
        print(f"{S * S / 1e6 / seconds:.3f} megapixels/s on {len(client.nthreads())} workers")
        print("class 1 wins on", float((out[0, 1] > out[0, 0]).mean()), "of the pixels")
    if not args.keep:
        shutil.rmtree(image)


if __name__ == "__main__":
    main()
