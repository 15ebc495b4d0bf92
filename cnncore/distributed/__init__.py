"""Dense pixelwise prediction beyond one machine, on Dask (optional extra ``[distributed]``).

- ``predict_dask(model, images, patch_size, method="dsparse", tile=None)``: lazy scores of a Dask
  image ``(N, C, H, W)`` chunked over H and W; each chunk is computed with its halo by the
  single-machine d-sparse network (``cnncore.dense.predict`` calls it for a Dask array).
- ``predict_zarr(model, source, target, patch_size, ...)``: from one Zarr store to another, chunk
  by chunk, without ever holding the whole image.
- ``predict_files(model, inputs, output_dir, patch_size, ...)``: a folder or list of ``.npy``
  images, one task per file.
- ``share(obj, client=None)``: how the network reaches the workers once (a graph key, or a
  broadcast ``client.scatter``), never with every chunk.

Everything runs on whatever Dask scheduler is current: local threads by default, or a
``dask.distributed.Client`` (``LocalCluster`` or ``Client("tcp://scheduler:8786")`` for any
deployment).  Importing this package imports no Dask; its functions import it when called and
raise ``ImportError`` with the install command if it is missing.
"""

from cnncore.distributed._deps import INSTALL_HINT
from cnncore.distributed.array import is_dask_array, predict_block, predict_dask, share
from cnncore.distributed.files import predict_files
from cnncore.distributed.store import predict_zarr

__all__ = [
    "INSTALL_HINT",
    "is_dask_array",
    "predict_block",
    "predict_dask",
    "predict_files",
    "predict_zarr",
    "share",
]
