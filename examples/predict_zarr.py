"""
Dense prediction of a Zarr image on Dask
========================================

Dense prediction of a large image stored in Zarr, on a Dask cluster, chunk by chunk.

    python examples/predict_zarr.py                      # a two-process LocalCluster
    python examples/predict_zarr.py tcp://scheduler:8786 # an existing cluster (any deployment)

Writes a random 3 x 1024 x 1024 image to ``image.zarr`` (in a temporary folder, or ``--dir``,
which must be reachable from every worker on a real cluster), predicts it with ``pixel65`` in
512 x 512 chunks and stores the (2, 1024, 1024) scores in ``scores.zarr``.  Neither the image nor
the scores are ever held whole by one process.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

# cnncore first: it sets OMP_WAIT_POLICY=PASSIVE before any other library loads OpenMP
import cnncore  # noqa: F401  # isort: skip

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("scheduler", nargs="?", help="address of a running Dask scheduler")
    parser.add_argument("--dir", help="folder for the Zarr stores (shared with the workers)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=512)
    args = parser.parse_args()

    import dask.array as da
    import zarr
    from dask.distributed import Client, LocalCluster

    from cnncore.distributed import predict_zarr
    from cnncore.models import pixel65

    folder = Path(args.dir or tempfile.mkdtemp())
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


if __name__ == "__main__":
    main()
